"""Errors a user can act on. Each has an event `kind` and a process exit code; the CLI turns them
into one line (or one `error` event) instead of a traceback."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

import torch

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug or a failure the user cannot fix by changing the command: see the log
EXIT_USER = 2  # a mistake in the command, the settings or the model path
EXIT_CANCELLED = 3  # stopped by `stop` on stdin, SIGTERM or Ctrl-C; the checkpoint is kept


class NfsdError(Exception):
    """Base for errors shown to the user as one sentence."""

    kind = "internal"
    exit_code = EXIT_INTERNAL
    touches_run_dir = True  # the error is logged in the run folder's nfsd.log

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadConfig(NfsdError):
    kind = "bad_config"
    exit_code = EXIT_USER


class ModelNotFound(NfsdError):
    kind = "model_not_found"
    exit_code = EXIT_USER


class CudaUnavailable(NfsdError):
    kind = "cuda_unavailable"
    exit_code = EXIT_USER


class OutOfMemory(NfsdError):
    kind = "out_of_memory"


class EmptyGeometry(NfsdError):
    kind = "empty_geometry"


class NonFinite(NfsdError):
    kind = "non_finite"


class RunInUse(NfsdError):
    """Another nfsd process holds the run folder's lock (a run training into it, or an export)."""

    kind = "run_in_use"
    exit_code = EXIT_USER
    touches_run_dir = False  # the folder is another process's: not even its log is written to


class DiskFull(NfsdError):
    kind = "disk_full"


# errno values that mean "no space left": the disk, or the user's quota on it.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextmanager
def disk_full_means(what_is_kept: str) -> Iterator[None]:
    """Running out of disk space inside the block becomes a DiskFull that says what survived
    (writes are atomic, so the previous file is whole) and what to do."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        raise DiskFull(f"the disk is full ({exc.strerror or 'no space left'}{where}); {what_is_kept}") from None


@contextmanager
def out_of_memory_means(advice: str) -> Iterator[None]:
    """A CUDA out-of-memory error inside the block becomes an OutOfMemory that says what to do."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise OutOfMemory(f"the GPU ran out of memory; {advice}") from None
