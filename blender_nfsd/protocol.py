"""The backend's event stream (one JSON object per stdout line) and its stdin control lines.

No bpy here: the add-on's glue and the tests use these directly. The event kinds and their fields
are the backend's contract (DESIGN.md, "Event stream"); a line that breaks it is reported as
`MalformedEvent` so the job can log it and carry on instead of failing on a stray print.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, TypeGuard

EVENT_VERSION = 1

# Control lines the backend reads from stdin (`--control stdin`). Closing stdin also means stop.
CONTROL_STOP = "stop"  # finish the step, save a checkpoint, emit `cancelled`, exit
CONTROL_EXPORT = "export"  # stop training now, export the mesh from the current state, emit `done`

# event kind -> the fields it must carry, and which of those are numbers.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "start": ("run_dir", "total_steps", "method", "device"),
    "stage": ("name", "message"),
    "progress": ("step", "total_steps", "loss", "timestep", "elapsed_s", "eta_s", "it_per_s"),
    "preview": ("step", "path"),
    "checkpoint": ("step", "path"),
    "done": ("mesh", "obj", "elapsed_s"),
    "cancelled": ("step", "checkpoint"),
    "error": ("kind", "message"),
    "warning": ("kind", "message"),  # the run goes on; e.g. kind prompt_truncated (docs/events.md)
}
NUMBER_FIELDS = frozenset({"total_steps", "step", "loss", "timestep", "elapsed_s", "eta_s", "it_per_s"})


class MalformedEvent(ValueError):
    """A stdout line that is not a valid event; the message says what is wrong with it."""


@dataclass(frozen=True)
class Event:
    """One event from the backend: its kind, its time (unix seconds) and every field it carried."""

    kind: str
    time: float
    fields: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


def parse_line(line: str) -> Event | None:
    """The event on one stdout line; None for a blank line. Raises MalformedEvent for anything
    else that is not a complete event of this protocol version (partial lines included)."""
    text = line.strip()
    if not text:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedEvent(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise MalformedEvent(f"a JSON {type(record).__name__}, not an object")
    version = record.get("v")
    if version != EVENT_VERSION:
        raise MalformedEvent(f"event version {version!r}; this add-on reads version {EVENT_VERSION}")
    kind = record.get("event")
    if kind not in REQUIRED_FIELDS:
        raise MalformedEvent(f"unknown event kind {kind!r}")
    time = record.get("time")
    if not _is_number(time) or not math.isfinite(time):
        raise MalformedEvent(f"{kind} event without a numeric time")
    missing = [name for name in REQUIRED_FIELDS[kind] if name not in record]
    if missing:
        raise MalformedEvent(f"{kind} event without {', '.join(missing)}")
    for name in REQUIRED_FIELDS[kind]:
        if name in NUMBER_FIELDS and not _is_number(record[name]):
            raise MalformedEvent(f"{kind} event: {name} is {record[name]!r}, not a number")
    fields = {key: value for key, value in record.items() if key not in ("v", "event", "time")}
    return Event(kind=kind, time=float(time), fields=fields)


def _is_number(value: Any) -> TypeGuard[float]:
    # NaN passes: a diverged loss is still a progress report (the backend reports it as an error).
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def control_line(command: str) -> str:
    """The stdin line for a control command."""
    if command not in (CONTROL_STOP, CONTROL_EXPORT):
        raise ValueError(f"unknown control command {command!r}")
    return command + "\n"
