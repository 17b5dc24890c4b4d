"""The run directory: creating it safely, its log file, atomic writes of images and JSON."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import BadConfig

LOG_NAME = "nfsd.log"
logger = logging.getLogger("nfsd")


def prepare_run_dir(out: Path, *, fresh: bool = True) -> Path:
    """Create `out` (and `previews/`); a fresh run refuses a folder that already holds a run, so a
    finished result is never overwritten by accident."""
    out = Path(out).expanduser().resolve()
    if fresh and (out / "config.json").exists():
        raise BadConfig(f"{out} already holds a run; choose another --out, or continue it with --resume {out}.")
    try:
        (out / "previews").mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BadConfig(f"cannot write to the output folder {out}: {exc.strerror or exc}; "
                        "choose a writable --out.") from None
    return out


def attach_log(out: Path) -> Path | None:
    """Send the `nfsd` logger to `out/nfsd.log` (appending). Returns None when `out` is unusable,
    as for a bad --out: the error is still reported on the console."""
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        path = Path(out) / LOG_NAME
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return path


def detach_logs() -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def write_png(path: Path, image: Any) -> None:
    """Save an RGB image (PIL image, or HxWx3 array in [0,1] or uint8) as PNG, atomically."""
    import io

    import numpy as np
    from PIL import Image

    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8:
            array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        image = Image.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
