"""A backend child process: started in its own process group, read by daemon threads, stopped
politely and then firmly. No bpy here.

One thread per output stream, each doing one thing: stdout lines go into a queue that Blender's
main thread drains; stderr goes into a log file (a pipe nobody reads would fill up and block the
backend). The last lines written to the log are kept for error reports.
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

TAIL_LINES = 20  # log lines kept in memory for reporting a crash
STOP_GRACE_S = 3.0  # after `stop`: time to finish the step and save a checkpoint
TERMINATE_GRACE_S = 2.0  # after SIGTERM / CTRL_BREAK: time to exit before being killed


class BackendProcess:
    """A running backend command. `lines` receives each stdout line, then None at end of output."""

    def __init__(self, popen: subprocess.Popen[str], log_path: Path, log_stdout: bool):
        self.popen = popen
        self.log_path = log_path
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._log_lock = threading.Lock()
        self._log = open(log_path, "a", encoding="utf-8")
        assert popen.stdout is not None
        self._readers = [threading.Thread(target=self._read_stdout, args=(popen.stdout, log_stdout),
                                          name="nfsd-stdout", daemon=True)]
        if popen.stderr is not None:
            self._readers.append(threading.Thread(target=self._read_stderr, args=(popen.stderr,),
                                                  name="nfsd-stderr", daemon=True))
        for reader in self._readers:
            reader.start()

    @classmethod
    def start(cls, command: Sequence[str], *, env: dict[str, str], cwd: str | Path, log_path: Path,
              merge_stderr: bool = False) -> BackendProcess:
        """Start `command` in a new process group (so Blender's Ctrl-C does not reach it and the
        whole group can be stopped). Raises OSError when it cannot start (missing interpreter)."""
        if sys.platform == "win32":
            group = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
        else:
            group = {"start_new_session": True}
        popen = subprocess.Popen(
            list(command), cwd=str(cwd), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", bufsize=1, **group)  # type: ignore[call-overload]
        return cls(popen, Path(log_path), log_stdout=merge_stderr)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has ended, else None."""
        return self.popen.poll()

    def _read_stdout(self, stream: IO[str], log_stdout: bool) -> None:
        for line in stream:
            self.lines.put(line)
            if log_stdout:
                self.log(line.rstrip("\r\n"))
        stream.close()
        self.lines.put(None)

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self.log(line.rstrip("\r\n"))
        stream.close()

    def log(self, text: str) -> None:
        """Append one line to the log file (thread-safe) and to the remembered tail."""
        with self._log_lock:
            self._tail.append(text)
            if not self._log.closed:
                self._log.write(text + "\n")
                self._log.flush()

    def tail(self, count: int = TAIL_LINES) -> list[str]:
        """The last `count` non-empty lines written to the log."""
        with self._log_lock:
            lines = [line for line in self._tail if line.strip()]
        return lines[-count:]

    def send(self, line: str) -> bool:
        """Write a control line to stdin; False when the backend no longer listens."""
        stdin = self.popen.stdin
        if stdin is None or stdin.closed:
            return False
        try:
            stdin.write(line)
            stdin.flush()
        except (OSError, ValueError):  # broken pipe: the process has gone
            return False
        return True

    def close_stdin(self) -> None:
        """Closed stdin means `stop` to the backend."""
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except OSError:
                pass

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def finish_reading(self, timeout: float = 1.0) -> None:
        """Wait for the reader threads to reach the end of the output, then close the log."""
        for reader in self._readers:
            reader.join(timeout)
        with self._log_lock:
            self._log.close()

    def stop(self, control: str | None) -> int:
        """End the process for good: the `control` line (or just closing stdin), then SIGTERM to
        the group (CTRL_BREAK on Windows), then a kill. Returns the exit code."""
        if control is not None:
            self.send(control)
        self.close_stdin()
        code = self.wait(STOP_GRACE_S)
        if code is None:
            self._signal_group(polite=True)
            code = self.wait(TERMINATE_GRACE_S)
        if code is None:
            self._signal_group(polite=False)
            code = self.popen.wait()
        self.finish_reading()
        return code

    def _signal_group(self, polite: bool) -> None:
        try:
            if sys.platform == "win32":
                if polite:
                    os.kill(self.popen.pid, signal.CTRL_BREAK_EVENT)
                else:
                    self.popen.kill()
            else:
                os.killpg(self.popen.pid, signal.SIGTERM if polite else signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # already gone
            pass


@dataclass(frozen=True)
class Step:
    """One command of a `CommandSequence`, with the title the panel shows while it runs."""

    title: str
    command: list[str]


class CommandSequence:
    """Runs commands one after the other in the background (install, doctor): the main thread
    calls `poll()`, which reads their output and starts the next command when one succeeds."""

    def __init__(self, steps: Sequence[Step], *, env: dict[str, str], cwd: str | Path, log_path: Path,
                 merge_stderr: bool):
        self.steps = list(steps)
        self.env, self.cwd, self.log_path, self.merge_stderr = env, cwd, Path(log_path), merge_stderr
        self.state = "idle"  # idle | running | done | failed
        self.index = -1  # the step running now
        self.message = ""  # the last line of output, or why it failed
        self.output: list[str] = []  # stdout lines of the last step (doctor's JSON)
        self.process: BackendProcess | None = None
        self._output_ended = False

    @property
    def active(self) -> bool:
        return self.state == "running"

    def start(self) -> None:
        self.state = "running"
        self._next()

    def _next(self) -> None:
        self.index += 1
        if self.index == len(self.steps):
            self.state, self.process = "done", None
            return
        step = self.steps[self.index]
        self.message, self.output, self._output_ended = step.title, [], False
        try:
            self.process = BackendProcess.start(step.command, env=self.env, cwd=self.cwd,
                                                log_path=self.log_path, merge_stderr=self.merge_stderr)
        except OSError as exc:
            self.process = None
            self.state = "failed"
            self.message = f"{step.title} failed: cannot run {step.command[0]}: {exc.strerror or exc}"

    def poll(self) -> None:
        process = self.process
        if self.state != "running" or process is None:
            return
        while not self._output_ended:
            try:
                line = process.lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._output_ended = True
            else:
                self.output.append(line)
                self.message = line.strip() or self.message
        code = process.returncode
        if not self._output_ended or code is None:
            return
        process.finish_reading()
        if code == 0:
            self._next()
            return
        last = process.tail(1)
        self.state = "failed"
        self.message = f"{self.steps[self.index].title} failed (exit code {code})" + (f": {last[0]}" if last else "")

    def shutdown(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.stop(None)
        if self.state == "running":
            self.state, self.message = "failed", "Stopped"
