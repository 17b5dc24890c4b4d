"""One backend run (generate or export) and its state machine. No bpy here.

    idle -> starting -> running -> exporting -> done
                 \\          \\          \\---> cancelled | failed
                  \\          \\--------------> cancelled | failed
                   \\-------------------------> failed

`JobStatus` is the pure state machine fed with events; `Job` joins it to a `BackendProcess`, and
its `poll()` is what Blender's timer calls on the main thread.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .process import BackendProcess
from .protocol import CONTROL_EXPORT, CONTROL_STOP, Event, MalformedEvent, control_line, parse_line

IDLE = "idle"
STARTING = "starting"
RUNNING = "running"
EXPORTING = "exporting"
DONE = "done"
CANCELLED = "cancelled"
FAILED = "failed"
STATES = (IDLE, STARTING, RUNNING, EXPORTING, DONE, CANCELLED, FAILED)
ACTIVE = frozenset({STARTING, RUNNING, EXPORTING})
FINISHED = frozenset({DONE, CANCELLED, FAILED})

EXIT_CANCELLED = 3  # the backend's exit code after `cancelled` (stop, SIGTERM, Ctrl-C)
LOG_NAME = "blender-backend.log"  # the backend's stderr, in the run directory
CRASH_LOG_LINES = 6  # log lines shown with a crash report
EVENTS_PER_POLL = 500  # bound on the work of one timer tick

# Error kinds (the backend's, plus the add-on's own `backend_missing`) -> the operator that fixes
# it and its button label.
FIXES: dict[str, tuple[str, str]] = {
    "backend_missing": ("nfsd.install_backend", "Install Backend"),
    "model_not_found": ("nfsd.pick_model", "Choose a Model Folder"),
    "out_of_memory": ("nfsd.lower_memory", "Use Low-VRAM Settings"),
    "cuda_unavailable": ("nfsd.use_cpu", "Run on the CPU"),
}
# Error kinds whose backend sentence speaks of command-line flags: the panel says what to do in the
# add-on instead, and keeps the backend's sentence on the line below.
PANEL_MESSAGES: dict[str, str] = {
    "disk_full": "The disk is full: free some space (or choose another Output Folder in the preferences), "
                 "then Generate again or Re-export; the files written before are kept.",
    "run_in_use": "Another backend (a run in a terminal, or an export) is using this run folder: wait for it "
                  "to finish or stop it, then try again.",
}


@dataclass
class JobStatus:
    """What the panel shows about a run, updated from its events."""

    state: str = IDLE
    stage: str = ""  # name of the current stage (load_model, train, export, ...)
    message: str = ""  # one line for the status bar of the panel
    step: int = 0
    total_steps: int = 0
    loss: float = 0.0
    timestep: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float = 0.0
    it_per_s: float = 0.0
    run_dir: str = ""
    preview_path: str = ""
    preview_step: int = -1  # step of the newest preview; -1 before the first
    checkpoint_path: str = ""
    mesh_path: str = ""
    obj_path: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # the resolved settings from `start`
    requested: str = ""  # "", CONTROL_STOP or CONTROL_EXPORT: what the user asked the run to do
    error_kind: str = ""
    error_message: str = ""
    warning: str = ""  # the newest `warning` event's message (the run goes on)
    log_tail: list[str] = field(default_factory=list)  # last log lines, for a crash

    @property
    def fix(self) -> tuple[str, str] | None:
        """(operator id, label) of the button that fixes the error, if there is one."""
        return FIXES.get(self.error_kind)

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps > 0 else 0.0

    def start(self, run_dir: str) -> None:
        self._expect(IDLE)
        self.state, self.run_dir, self.message = STARTING, run_dir, "Starting the backend..."

    def apply(self, event: Event) -> None:
        """Advance on one event. Events after the run has finished change nothing."""
        if self.state in FINISHED or self.state == IDLE:
            return
        handler = getattr(self, "_on_" + event.kind)
        handler(event)

    def _on_start(self, event: Event) -> None:
        self.state = RUNNING if self.state == STARTING else self.state
        self.run_dir = str(event["run_dir"])
        self.total_steps = int(event["total_steps"])
        self.config = dict(event.get("config") or {})
        self.message = f"Started: {event['method']} on {event['device']}"

    def _on_stage(self, event: Event) -> None:
        self.stage = str(event["name"])
        self.message = str(event["message"])
        if self.stage == "export":
            self.state = EXPORTING
        elif self.state == STARTING:
            self.state = RUNNING

    def _on_progress(self, event: Event) -> None:
        if self.state == STARTING:
            self.state = RUNNING
        self.step = int(event["step"])
        self.total_steps = int(event["total_steps"])
        for name in ("loss", "timestep", "elapsed_s", "eta_s", "it_per_s"):
            setattr(self, name, float(event[name]))

    def _on_preview(self, event: Event) -> None:
        self.preview_step = int(event["step"])
        self.preview_path = str(event["path"])

    def _on_checkpoint(self, event: Event) -> None:
        self.checkpoint_path = str(event["path"])

    def _on_done(self, event: Event) -> None:
        self.state = DONE
        self.mesh_path = str(event["mesh"])
        self.obj_path = str(event["obj"])
        self.elapsed_s = float(event["elapsed_s"])
        self.message = f"Done in {format_duration(self.elapsed_s)}"

    def _on_cancelled(self, event: Event) -> None:
        self.state = CANCELLED
        self.step = int(event["step"])
        self.checkpoint_path = str(event.get("checkpoint") or "")
        self.message = f"Cancelled at step {self.step}"

    def _on_error(self, event: Event) -> None:
        kind, message = str(event["kind"]), str(event["message"])
        if kind in PANEL_MESSAGES:
            self.fail(kind, PANEL_MESSAGES[kind], [message])
        else:
            self.fail(kind, message)

    def _on_warning(self, event: Event) -> None:
        self.warning = str(event["message"])

    def request(self, control: str) -> None:
        """The user asked to stop (`stop`) or to stop and export (`export`)."""
        self.requested = control
        if control == CONTROL_EXPORT:
            self.state = EXPORTING
            self.message = "Stopping training and exporting the mesh..."
        else:
            self.message = "Stopping after this step..."

    def fail(self, kind: str, message: str, log_tail: Sequence[str] = ()) -> None:
        self.state = FAILED
        self.error_kind, self.error_message = kind, message
        self.log_tail = list(log_tail)
        self.message = message

    def process_exited(self, code: int, log_tail: Sequence[str]) -> None:
        """The process ended; if no event finished the run, decide how it ended from the code."""
        if self.state not in ACTIVE:
            return
        if code == EXIT_CANCELLED or (self.requested == CONTROL_STOP and code != 0):
            self.state = CANCELLED
            self.message = "Cancelled"
            return
        last = next((line.strip() for line in reversed(log_tail) if line.strip()), "no output")
        self.fail("crashed", f"The backend stopped without a result (exit code {code}): {last}",
                  log_tail[-CRASH_LOG_LINES:])

    def _expect(self, state: str) -> None:
        if self.state != state:
            raise RuntimeError(f"job is {self.state}, expected {state}")


class Job:
    """A backend command and its status. Only the main thread calls its methods."""

    def __init__(self, kind: str, command: Sequence[str], run_dir: Path):
        self.kind = kind  # "generate" | "export"
        self.command = list(command)
        self.run_dir = Path(run_dir)
        self.status = JobStatus()
        self.process: BackendProcess | None = None
        self._output_ended = False
        self._reaped = False

    @property
    def active(self) -> bool:
        return self.status.state in ACTIVE

    def start(self, env: dict[str, str]) -> bool:
        """Start the backend. A failure to start fails the job (with `backend_missing` when the
        interpreter cannot be run) instead of raising."""
        self.status.start(str(self.run_dir))
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.process = BackendProcess.start(self.command, env=env, cwd=self.run_dir,
                                                log_path=self.run_dir / LOG_NAME)
        except FileNotFoundError as exc:
            missing = exc.filename or self.command[0]
            self.status.fail("backend_missing", f"Cannot start the backend: {missing} does not exist. "
                             "Install the backend or set its interpreter in the preferences.")
            return False
        except OSError as exc:
            self.status.fail("backend_missing", f"Cannot start the backend {self.command[0]}: "
                             f"{exc.strerror or exc}. Install the backend or choose another interpreter.")
            return False
        return True

    def poll(self) -> list[Event]:
        """Apply the events that arrived since the last call; notice the end of the process."""
        events: list[Event] = []
        if self.process is None:
            return events
        while len(events) < EVENTS_PER_POLL:
            try:
                line = self.process.lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._output_ended = True
                continue
            try:
                event = parse_line(line)
            except MalformedEvent as exc:  # a stray print or a cut-off line: keep it in the log
                self.process.log(f"[add-on] ignored stdout line ({exc}): {line.rstrip()}")
                continue
            if event is not None:
                self.status.apply(event)
                events.append(event)
        if self._output_ended and not self._reaped and self.process.returncode is not None:
            self._reaped = True
            self.process.finish_reading()
            self.status.process_exited(self.process.returncode, self.process.tail())
        return events

    @property
    def exited(self) -> bool:
        """The process has ended and all of its output has been read."""
        return self.process is None or self._reaped

    def cancel(self) -> None:
        self._request(CONTROL_STOP)

    def stop_and_export(self) -> None:
        self._request(CONTROL_EXPORT)

    def _request(self, control: str) -> None:
        if not self.active or self.process is None:
            return
        self.status.request(control)
        if not self.process.send(control_line(control)):
            self.process.stop(None)

    def shutdown(self) -> None:
        """Blender is quitting or the add-on is being disabled: the process must end now."""
        if self.process is not None and self.process.returncode is None:
            self.status.request(CONTROL_STOP)
            self.process.stop(control_line(CONTROL_STOP))
        self.poll()


def format_duration(seconds: float) -> str:
    """1 h 02 min / 3 min 05 s / 42 s."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def progress_text(status: JobStatus) -> str:
    """The text on the panel's progress bar: step / total, speed and time left."""
    if status.total_steps <= 0:
        return status.message
    text = f"Step {status.step} / {status.total_steps}"
    if status.it_per_s > 0:
        text += f" · {status.it_per_s:.2f} it/s · ETA {format_duration(status.eta_s)}"
    return text
