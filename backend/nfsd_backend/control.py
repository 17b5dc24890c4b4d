"""Stopping a run from outside: `stop` / `export` lines on stdin (`--control stdin`), a closed
stdin, SIGTERM and Ctrl-C. The loop polls `requested` between steps, so a step is never cut in
half: it finishes, a checkpoint is written, then the run ends as asked. Works the same on
Windows, Linux and macOS (a thread reading stdin, no select() on pipes)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import IO, Iterator

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

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[None]:
        """While inside: SIGTERM (SIGBREAK on Windows) and the first Ctrl-C ask for `stop`; a second Ctrl-C interrupts
        at once. The previous handlers come back on exit (signals are only settable from the
        main thread; elsewhere, as in an embedding host, they are left alone)."""

        def on_signal(signum, frame) -> None:
            if signum == signal.SIGINT and self._requested is not None:
                raise KeyboardInterrupt
            self.request(STOP)

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        # SIGBREAK: Windows' CTRL_BREAK_EVENT, what a parent sends a child's process group there.
        names = [name for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name)]
        previous = {name: signal.signal(getattr(signal, name), on_signal) for name in names}
        try:
            yield
        finally:
            for name, handler in previous.items():
                signal.signal(getattr(signal, name), handler)
