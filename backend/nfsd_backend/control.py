"""Stopping a run from outside: `stop` / `export` lines on stdin (`--control stdin`), a closed
stdin, SIGTERM and Ctrl-C. The loop polls `requested` between steps, so a step is never cut in
half: it finishes, a checkpoint is written, then the run ends as asked. Works the same on
Windows, Linux and macOS (a thread reading stdin, no select() on pipes)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import IO

STOP = "stop"  # save a checkpoint, emit `cancelled`, exit
EXPORT = "export"  # stop training now, export the mesh from the current state, emit `done`


class RunControl:
    def __init__(self) -> None:
        self._requested: str | None = None
        self._lock = threading.Lock()

    @property
    def requested(self) -> str | None:
        return self._requested

    def request(self, what: str) -> None:
        with self._lock:
            if self._requested is None:  # the first request wins: `stop` then `export` stays `stop`
                self._requested = what

    def watch_stream(self, stream: IO[str] | None = None) -> threading.Thread:
        """Read control lines in a daemon thread; end of stream means `stop`."""
        stream = stream or sys.stdin

        def read() -> None:
            for line in stream:
                command = line.strip().lower()
                if command in (STOP, EXPORT):
                    self.request(command)
            self.request(STOP)

        thread = threading.Thread(target=read, name="nfsd-control", daemon=True)
        thread.start()
        return thread

    def install_signal_handlers(self) -> None:
        """SIGTERM and the first Ctrl-C ask for `stop`; a second Ctrl-C interrupts at once."""

        def on_signal(signum, frame) -> None:
            if signum == signal.SIGINT and self._requested is not None:
                raise KeyboardInterrupt
            self.request(STOP)

        signal.signal(signal.SIGINT, on_signal)
        if hasattr(signal, "SIGTERM"):
            signal.signal(signal.SIGTERM, on_signal)
