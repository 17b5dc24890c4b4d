"""`checkpoints/last.pt`: everything needed to continue a run exactly (model state, optimiser,
occupancy grid, random generator, step) and to re-export its mesh. Written atomically, so a crash
while saving leaves the previous checkpoint intact."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from .errors import BadConfig
from .rundir import atomic_write_bytes

CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = Path("checkpoints") / "last.pt"


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    path = Path(run_dir) / CHECKPOINT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The run's last checkpoint, on the CPU; a clear error when it is missing or unreadable."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise BadConfig(f"{run_dir} has no checkpoint ({CHECKPOINT_NAME}); is it a run folder of `nfsd generate`?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated, not a torch file, ...
        raise BadConfig(f"the checkpoint {path} is corrupt or unreadable ({type(exc).__name__}); "
                        "start a new run, or restore the file.") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BadConfig(f"the checkpoint {path} has an unknown format; it was written by another version.")
    return state
