"""The job's state machine fed with events, and real child processes: reading, logging, control
lines, crashes, stopping a whole process group."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time

import pytest

from blender_nfsd import job as job_module
from blender_nfsd import process
from blender_nfsd.job import (CANCELLED, DONE, EXPORTING, FAILED, IDLE, RUNNING, STARTING, Job, JobStatus,
                              format_duration, progress_text)
from blender_nfsd.protocol import Event


def event(kind: str, /, **fields) -> Event:
    return Event(kind=kind, time=1.0, fields=fields)


def progress(step: int, total: int = 10) -> Event:
    return event("progress", step=step, total_steps=total, loss=0.5, timestep=700, elapsed_s=step * 2.0,
                 eta_s=(total - step) * 2.0, it_per_s=0.5)


def run(status: JobStatus, events: list[Event]) -> list[str]:
    states = [status.state]
    for item in events:
        status.apply(item)
        states.append(status.state)
    return states


def started() -> JobStatus:
    status = JobStatus()
    status.start("/runs/a")
    return status


def test_a_whole_run():
    status = started()
    states = run(status, [
        event("start", run_dir="/runs/a", total_steps=10, method="nfsd", device="cuda", config={"seed": 1}),
        event("stage", name="load_model", message="Loading"),
        progress(5),
        event("preview", step=5, path="/runs/a/previews/latest.png"),
        event("checkpoint", step=5, path="/runs/a/checkpoints/last.pt"),
        progress(10),
        event("stage", name="export", message="Extracting the mesh"),
        event("done", mesh="/runs/a/mesh/model.glb", obj="/runs/a/mesh/model.obj", elapsed_s=75.0),
    ])
    assert states == [STARTING, RUNNING, RUNNING, RUNNING, RUNNING, RUNNING, RUNNING, EXPORTING, DONE]
    assert (status.step, status.total_steps, status.progress) == (10, 10, 1.0)
    assert status.preview_step == 5 and status.preview_path.endswith("latest.png")
    assert status.checkpoint_path.endswith("last.pt") and status.config == {"seed": 1}
    assert status.mesh_path == "/runs/a/mesh/model.glb" and status.message == "Done in 1 min 15 s"


def test_progress_alone_means_running_and_fills_the_numbers():
    status = started()
    status.apply(progress(3))
    assert status.state == RUNNING
    assert (status.step, status.loss, status.timestep, status.eta_s, status.it_per_s) == (3, 0.5, 700.0, 14.0, 0.5)
    assert progress_text(status) == "Step 3 / 10 · 0.50 it/s · ETA 14 s"


def test_events_before_start_and_after_the_end_change_nothing():
    idle = JobStatus()
    idle.apply(progress(1))
    assert idle.state == IDLE and idle.step == 0
    status = started()
    run(status, [progress(2), event("cancelled", step=2, checkpoint="/c"), progress(3),
                 event("done", mesh="m", obj="o", elapsed_s=1.0)])
    assert status.state == CANCELLED and status.step == 2 and status.mesh_path == ""


def test_an_error_event_fails_with_its_fix():
    status = started()
    status.apply(event("error", kind="out_of_memory", message="Out of GPU memory; turn on Low VRAM."))
    assert status.state == FAILED and status.message == "Out of GPU memory; turn on Low VRAM."
    assert status.fix == ("nfsd.lower_memory", "Use Low-VRAM Settings")
    status = started()
    status.apply(event("error", kind="internal", message="internal error: ..."))
    assert status.fix is None


def test_the_backends_new_error_kinds_say_what_to_do_in_the_panel():
    for kind, fragment in (("disk_full", "free some space"), ("run_in_use", "is using this run folder")):
        status = started()
        backend = f"{kind} sentence naming --resume"
        status.apply(event("error", kind=kind, message=backend))
        assert status.state == FAILED and status.error_kind == kind and fragment in status.message
        assert "\n" not in status.message and "--" not in status.message and status.log_tail == [backend]
    status = started()  # a kind this add-on does not know still shows the backend's sentence
    status.apply(event("error", kind="new_kind", message="Something to do."))
    assert status.message == "Something to do." and status.fix is None


def test_a_warning_is_kept_and_the_run_goes_on():
    status = started()
    status.apply(progress(1))
    status.apply(event("warning", kind="prompt_truncated", message="the prompt was cut"))
    status.apply(progress(2))
    assert status.state == RUNNING and status.warning == "the prompt was cut" and status.step == 2


def test_stop_and_export_requests():
    status = started()
    status.apply(progress(4))
    status.request("export")
    assert status.state == EXPORTING
    status.apply(event("done", mesh="m", obj="o", elapsed_s=2.0))
    assert status.state == DONE
    status = started()
    status.apply(progress(4))
    status.request("stop")
    assert status.state == RUNNING and status.message == "Stopping after this step..."
    status.apply(event("cancelled", step=5, checkpoint="/c"))
    assert (status.state, status.step, status.checkpoint_path) == (CANCELLED, 5, "/c")


@pytest.mark.parametrize("code, requested, state", [
    (3, "", CANCELLED),  # cancelled before it could say so
    (-15, "stop", CANCELLED),  # ended by a signal after the user's stop
    (1, "", FAILED),
    (0, "", FAILED),  # exited "fine" without a result
    (-9, "export", FAILED),
])
def test_exit_without_a_final_event(code, requested, state):
    status = started()
    status.apply(progress(2))
    if requested:
        status.request(requested)
    status.process_exited(code, ["loading", "Traceback (most recent call last):", "KeyError: 'x'", ""])
    assert status.state == state
    if state == FAILED:
        assert status.error_kind == "crashed"
        assert status.message == f"The backend stopped without a result (exit code {code}): KeyError: 'x'"
        assert status.log_tail[-2:] == ["KeyError: 'x'", ""]


def test_exit_after_the_final_event_changes_nothing():
    status = started()
    status.apply(event("done", mesh="m", obj="o", elapsed_s=1.0))
    status.process_exited(1, ["late noise"])
    assert status.state == DONE


def test_durations():
    assert [format_duration(s) for s in (0, 42.4, 185, 3720, -3)] == ["0 s", "42 s", "3 min 05 s", "1 h 02 min", "0 s"]


# --- real processes -------------------------------------------------------------------------

def script_job(tmp_path, source: str) -> Job:
    command = [sys.executable, "-c", textwrap.dedent(source)]
    return Job("generate", command, tmp_path / "run")


EMIT = """
import json, sys, time
def emit(kind, **fields):
    print(json.dumps({"v": 1, "event": kind, "time": time.time(), **fields}), flush=True)
"""


def finish(drive, job: Job) -> None:
    drive(lambda: job.exited, job.poll, "the process to end")


def test_events_are_read_and_other_lines_logged(tmp_path, drive):
    job = script_job(tmp_path, EMIT + """
print("some library talking", flush=True)
emit("start", run_dir="r", total_steps=2, method="nfsd", device="cpu")
sys.stdout.write('{"v": 1, "event": "progr\\n'); sys.stdout.flush()
print("to stderr", file=sys.stderr, flush=True)
emit("done", mesh="m.glb", obj="m.obj", elapsed_s=1.5)
sys.stdout.write('{"v": 1, "ev')  # cut off by the exit
""")
    assert job.start(dict(os.environ))
    seen = []
    drive(lambda: job.exited, lambda: seen.extend(e.kind for e in job.poll()), "the process to end")
    assert seen == ["start", "done"]
    assert job.status.state == DONE and job.status.mesh_path == "m.glb"
    log = (tmp_path / "run" / job_module.LOG_NAME).read_text().splitlines()
    assert "to stderr" in log
    assert any(line.startswith("[add-on] ignored stdout line (not JSON") and "some library talking" in line
               for line in log)
    assert sum("ignored stdout line" in line for line in log) == 3


def test_a_crash_is_reported_with_the_end_of_its_log(tmp_path, drive):
    job = script_job(tmp_path, EMIT + """
emit("start", run_dir="r", total_steps=9, method="nfsd", device="cpu")
for i in range(30):
    print(f"log line {i}", file=sys.stderr)
sys.exit(7)
""")
    assert job.start(dict(os.environ))
    finish(drive, job)
    assert job.status.state == FAILED and job.status.error_kind == "crashed"
    assert job.status.message == "The backend stopped without a result (exit code 7): log line 29"
    assert job.status.log_tail == [f"log line {i}" for i in range(24, 30)]


def test_a_missing_interpreter_fails_the_job_without_raising(tmp_path):
    job = Job("generate", [str(tmp_path / "no" / "python"), "-m", "nfsd_backend"], tmp_path / "run")
    assert job.start(dict(os.environ)) is False
    assert job.status.state == FAILED and job.status.error_kind == "backend_missing"
    assert str(tmp_path / "no" / "python") in job.status.message
    assert job.status.fix == ("nfsd.install_backend", "Install Backend")
    assert job.poll() == [] and job.exited


CONTROLLED = EMIT + """
emit("start", run_dir="r", total_steps=100, method="nfsd", device="cpu")
emit("progress", step=1, total_steps=100, loss=1.0, timestep=1, elapsed_s=0, eta_s=0, it_per_s=0)
line = sys.stdin.readline().strip() or "closed"
if line == "export":
    emit("stage", name="export", message="exporting")
    emit("done", mesh="m.glb", obj="m.obj", elapsed_s=1.0)
    sys.exit(0)
emit("cancelled", step=1, checkpoint=line)  # says which control it got
sys.exit(3)
"""


@pytest.mark.parametrize("action, state, heard", [("cancel", CANCELLED, "stop"), ("stop_and_export", DONE, "")])
def test_control_lines_reach_the_backend(tmp_path, drive, action, state, heard):
    job = script_job(tmp_path, CONTROLLED)
    assert job.start(dict(os.environ))
    drive(lambda: job.status.step == 1, job.poll, "the first step")
    getattr(job, action)()
    finish(drive, job)
    assert job.status.state == state
    assert job.status.checkpoint_path == heard
    assert job.process is not None and job.process.returncode == (3 if state == CANCELLED else 0)


def test_shutdown_closes_stdin_and_the_backend_stops(tmp_path, drive):
    job = script_job(tmp_path, CONTROLLED)
    assert job.start(dict(os.environ))
    drive(lambda: job.status.step == 1, job.poll, "the first step")
    job.shutdown()
    assert job.status.state == CANCELLED and job.status.checkpoint_path == "stop"
    assert job.process is not None and job.process.returncode == 3


def test_a_deaf_backend_and_its_children_are_killed(tmp_path, drive, alive, monkeypatch):
    monkeypatch.setattr(process, "STOP_GRACE_S", 0.3)
    monkeypatch.setattr(process, "TERMINATE_GRACE_S", 0.3)
    job = script_job(tmp_path, EMIT + """
import signal, subprocess
signal.signal(signal.SIGTERM, signal.SIG_IGN)
deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", deaf])
emit("stage", name=str(child.pid), message="child started")
sys.stdin.close()
time.sleep(600)
""")
    assert job.start(dict(os.environ))
    drive(lambda: job.status.stage != "", job.poll, "the child to start")
    child = int(job.status.stage)
    assert job.process is not None and os.getpgid(child) == job.process.pid  # its own process group
    job.shutdown()
    assert job.process.returncode == -9
    drive(lambda: not alive(child) or _reaped_zombie(child), lambda: None, "the child to die")
    assert job.status.state == CANCELLED


def _reaped_zombie(pid: int) -> bool:
    """An orphan killed with its group may linger as a zombie until init reaps it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_the_backend_runs_in_its_own_process_group(tmp_path, drive):
    job = script_job(tmp_path, EMIT + """
import os
emit("preview", step=os.getpgid(0), path=str(os.getpid()))
""")
    assert job.start(dict(os.environ))
    finish(drive, job)
    assert job.status.preview_step == int(job.status.preview_path) != os.getpgid(0)
