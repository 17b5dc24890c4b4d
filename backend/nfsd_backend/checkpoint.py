"""`checkpoints/last.pt`: everything needed to continue a run exactly (model state, optimiser,
occupancy grid, random generator, step) and to re-export its mesh. Written atomically, so a crash
while saving leaves the previous checkpoint intact."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
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
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, ...
        raise BadConfig(f"the checkpoint {path} is corrupt or unreadable ({type(exc).__name__}); "
                        "start a new run, or restore the file.") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BadConfig(f"the checkpoint {path} has an unknown format; it was written by another version.")
    return state


@contextmanager
def checkpoint_fits(run_dir: Path) -> Iterator[None]:
    """Loading a checkpoint into modules built from the run's settings: a mismatch (the field's
    settings changed, or a hash grid written by the other implementation) is one clear line."""
    try:
        yield
    except (RuntimeError, KeyError) as exc:  # load_state_dict: missing, unexpected or mis-sized entries
        detail = str(exc).strip().splitlines()[0][:200]
        raise BadConfig(f"the checkpoint of {run_dir} does not fit the run's settings ({detail}); keep the run's "
                        "train.field and train.render settings, and use the kind of device it was trained on "
                        "(tinycudann's hash grid on CUDA, plain PyTorch elsewhere).") from None
