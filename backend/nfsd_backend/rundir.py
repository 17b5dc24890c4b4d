"""The run directory: creating it safely, its lock, its log file, atomic writes of images and JSON."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import BadConfig, RunInUse

LOG_NAME = "nfsd.log"
LOCK_NAME = ".nfsd.lock"  # locked while a process trains into or exports from the folder
logger = logging.getLogger("nfsd")
_held_locks: list[Any] = []  # the run folders this process holds (filelock.FileLock), see lock_run_dir


def prepare_run_dir(out: Path, *, fresh: bool = True) -> Path:
    """Create `out` (and `previews/`); a fresh run refuses a folder that already holds a run, so a
    finished result is never overwritten by accident."""
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise BadConfig(f"--out {out} is a file, not a folder; give the name of a new folder.")
    try:
        (out / "previews").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadConfig(f"cannot write to the output folder {out}: {exc.strerror or exc}; "
                        "choose a writable --out.") from None
    # The lock (whose file is also the test that the folder is writable) before the check: a run
    # started into the same folder a moment earlier holds it, but writes config.json only once its
    # model has loaded.
    lock_run_dir(out)
    if fresh and (out / "config.json").exists():
        raise BadConfig(f"{out} already holds a run; choose another --out, or continue it with --resume {out}.")
    return out


def lock_run_dir(run_dir: Path) -> None:
    """Hold `run_dir`'s lock until `release_run_dirs()` (the command line's end) or the process's
    end: one process trains into or exports from a run folder at a time, and a second is refused
    (RunInUse) without touching it. The lock is the operating system's (flock / LockFileEx, through
    filelock) on LOCK_NAME, so it ends with the process: a crash or kill -9 leaves no stale lock,
    and the file left behind means nothing by itself."""
    from filelock import FileLock, Timeout

    path = Path(run_dir) / LOCK_NAME
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:  # also what filelock says when it cannot create the file: tell the two apart
        try:
            with open(path, "a"):
                pass
        except OSError as exc:
            raise BadConfig(f"cannot write to the output folder {run_dir}: {exc.strerror or exc}; "
                            "choose a writable folder.") from None
        raise RunInUse(f"{run_dir} is in use by another nfsd process (a run training into it, or an export); "
                       "wait until it ends or stop it, or choose another folder.") from None
    _held_locks.append(lock)


def release_run_dirs() -> None:
    while _held_locks:
        _held_locks.pop().release()


class RunLogHandler(logging.FileHandler):
    """The run's log file. A line it cannot write (a full disk) is dropped without logging's
    traceback on stderr: the error event already says what happened."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def attach_log(out: Path) -> Path | None:
    """Send the `nfsd` logger to `out/nfsd.log` (appending). Returns None when `out` is unusable,
    as for a bad --out: the error is still reported on the console."""
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        path = Path(out) / LOG_NAME
        handler = RunLogHandler(path, encoding="utf-8")
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
    """Write to a temporary file beside `path`, flush it to the disk, then rename: readers never
    see half a file, and a full disk (which may only show at the flush) or a crash leaves the
    previous file whole."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
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
