"""Shared test set-up: offline, the backend's tools importable, and Blender's user folders kept
out of the home directory."""

import os
import sys
from pathlib import Path

# backend/tools (the toy model's data, training and judge scripts) is a folder, not a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend" / "tools"))

# No test may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
