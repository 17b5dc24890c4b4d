"""mypy over the add-on against Blender 5.0's API stubs (fake-bpy-module-5-0): wrong property
names and API misuse fail here. `valid-type` is off because bpy's `name: StringProperty(...)`
annotations are not types to mypy. Checked for Linux and for Windows (the process-group code
differs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_mypy_passes(platform, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--disable-error-code", "valid-type", "--python-version", "3.11",
         "--platform", platform, "--cache-dir", str(tmp_path / "cache"), "blender_nfsd"],
        cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
