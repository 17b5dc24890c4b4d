"""The JSON-lines event stream between the backend and whoever watches it (the Blender add-on, a
terminal, a test). One object per line, every one with `v`, `event` and `time`; the kinds and
their fields are listed in docs/events.md."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import IO, Any, Callable

EVENT_VERSION = 1
EVENT_KINDS = ("start", "stage", "progress", "preview", "checkpoint", "done", "cancelled", "error", "warning")

Listener = Callable[[dict[str, Any]], None]


class EventStream:
    """Writes events to `events.jsonl` of the run directory (once attached), to `stdout` as JSON
    lines when `jsonl` is set, and hands each event to the listeners (the console progress bar)."""

    def __init__(self, jsonl: IO[str] | None = None, listeners: list[Listener] | None = None):
        self.jsonl = jsonl
        self.listeners = list(listeners or [])
        self._run_file: IO[str] | None = None

    def attach_run_dir(self, run_dir: Path) -> None:
        """Start appending to `run_dir/events.jsonl` (append: a resumed run keeps its history)."""
        self.detach()
        self._run_file = open(run_dir / "events.jsonl", "a", encoding="utf-8")

    def detach(self) -> None:
        if self._run_file is not None:
            self._run_file.close()
            self._run_file = None

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        if event not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {event!r}")
        record = {"v": EVENT_VERSION, "event": event, "time": round(time.time(), 3), **fields}
        line = json.dumps(record, default=_jsonable)
        if self.jsonl is not None:
            self.jsonl.write(line + "\n")
            self.jsonl.flush()
        for listener in self.listeners:
            listener(record)
        if self._run_file is not None:
            try:
                self._run_file.write(line + "\n")
                self._run_file.flush()
            except OSError:  # a full disk: the run's copy stops here; the error that reports it still goes out
                run_file, self._run_file = self._run_file, None
                with contextlib.suppress(OSError):
                    run_file.close()
                if event != "error":
                    raise
        return record


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} into an event")



class StepTimer:
    """Elapsed time, speed and ETA for `progress` events; a resumed run counts from its first step."""

    def __init__(self, total_steps: int, first_step: int = 1):
        self.total_steps = total_steps
        self.first_step = first_step
        self.start = time.perf_counter()

    def fields(self, step: int) -> dict[str, float]:
        elapsed = time.perf_counter() - self.start
        done = step - self.first_step + 1
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total_steps - step) / rate if rate > 0 else 0.0
        return {"elapsed_s": round(elapsed, 3), "eta_s": round(eta, 3), "it_per_s": round(rate, 4)}
