"""Human-readable view of the event stream for a terminal: a tqdm progress bar with it/s, ETA, loss
and timestep on stderr, and one line per stage, preview, checkpoint and result."""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm import tqdm


class ConsoleProgress:
    """An `EventStream` listener. Nothing goes to stdout: stdout stays clean for pipes."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stderr
        self.bar: tqdm | None = None

    def __call__(self, record: dict[str, Any]) -> None:
        kind = record["event"]
        if kind == "progress":
            self._progress(record)
            return
        if kind in ("stage", "done", "cancelled", "error"):
            self._close_bar()
        text = _describe(record)
        if text:
            if self.bar is not None:
                self.bar.write(text, file=self.stream)
            else:
                print(text, file=self.stream, flush=True)

    def _progress(self, record: dict[str, Any]) -> None:
        if self.bar is None:
            self.bar = tqdm(total=record["total_steps"], file=self.stream, unit="step",
                            dynamic_ncols=True, initial=record["step"] - 1)
        self.bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4g}", t=record.get("timestep"),
                             refresh=False)
        self.bar.update(record["step"] - self.bar.n)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _describe(record: dict[str, Any]) -> str:
    kind = record["event"]
    if kind == "start":
        return f"nfsd: {record['method']} on {record['device']}, {record['total_steps']} steps -> {record['run_dir']}"
    if kind == "stage":
        return f"[{record['name']}] {record.get('message', '')}".rstrip()
    if kind == "checkpoint":
        return f"checkpoint at step {record['step']}: {record['path']}"
    if kind == "done":
        where = record.get("mesh") or record.get("image")
        return f"done in {record['elapsed_s']:.1f} s: {where}"
    if kind == "cancelled":
        return f"cancelled at step {record['step']}; checkpoint {record.get('checkpoint')}"
    if kind == "error":
        return f"error ({record['kind']}): {record['message']}"
    if kind == "warning":
        return f"warning ({record['kind']}): {record['message']}"
    return ""
