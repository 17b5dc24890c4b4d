"""What a user can do to a run folder while it matters: start a second process into it, fill the
disk under it, cut its checkpoint short. Each ends as one `error` event with a kind, and the
files already there survive byte for byte."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from nfsd_backend.checkpoint import CHECKPOINT_NAME
from nfsd_backend.cli import main
from nfsd_backend.rundir import LOCK_NAME

from .cli_helpers import run_cli, start_backend
from .test_generate import COMMON


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny run (checkpoint at steps 4 and 8, a mesh); tests copy it before changing it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["generate", "a red cube", "--out", str(out), *COMMON]) == 0
    return out


@pytest.fixture
def run_dir(finished_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (the lock file aside: it holds nothing) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


# --- a second process into a folder in use ----------------------------------------------------

@pytest.mark.parametrize("command", ["generate", "resume", "export", "image"])
def test_a_folder_held_by_another_process_is_refused_and_untouched(run_dir, capsys, command):
    argv = {"generate": ["generate", "a red cube", "--out", str(run_dir.parent / "new"), *COMMON],
            "resume": ["generate", "--resume", str(run_dir), "--steps", "12"],
            "export": ["export", str(run_dir), "--mesh-resolution", "24"],
            "image": ["image", "a red cube", "--out", str(run_dir.parent / "new"), "--model", "tiny-random",
                      "--device", "cpu", "--steps", "1"]}[command]
    target = run_dir if command in ("resume", "export") else run_dir.parent / "new"
    target.mkdir(exist_ok=True)
    before = snapshot(target)
    # Another process's lock: flock locks of two open files conflict within one process too.
    with FileLock(target / LOCK_NAME, timeout=0):
        code, events = run_cli(argv, capsys)
    assert code == 2 and [e["event"] for e in events] == ["error"]
    assert events[0]["kind"] == "run_in_use" and str(target) in events[0]["message"]
    assert "another nfsd process" in events[0]["message"] and "\n" not in events[0]["message"]
    assert snapshot(target) == before  # not even a line in its log or its events


def test_the_lock_is_released_when_a_command_ends(run_dir, capsys):
    for _ in range(2):  # the same process, twice: the first export let go of the folder
        code, events = run_cli(["export", str(run_dir), "--mesh-resolution", "24"], capsys)
        assert code == 0, events[-1]
    with FileLock(run_dir / LOCK_NAME, timeout=0):  # and nothing holds it now
        pass


def test_a_second_run_while_one_trains_is_refused_and_a_killed_run_leaves_no_stale_lock(tmp_path, capsys):
    out = tmp_path / "run"
    first = start_backend(["generate", "a red cube", "--out", str(out), *COMMON, "--steps", "400",
                           "--control", "stdin"], stdin=subprocess.PIPE)
    try:
        for line in first.stdout:  # wait until it has written its first checkpoint
            if json.loads(line)["event"] == "checkpoint":
                break
        log_before = (out / "nfsd.log").read_text()
        for argv in (["generate", "a blue sphere", "--out", str(out), *COMMON],
                     ["generate", "--resume", str(out)],
                     ["export", str(out)]):
            code, events = run_cli(argv, capsys)
            assert code == 2 and events[-1]["kind"] == "run_in_use", (argv, events)
        assert (out / "nfsd.log").read_text().startswith(log_before)
        assert "run_in_use" not in (out / "nfsd.log").read_text()
        assert json.loads((out / "config.json").read_text())["prompt"] == "a red cube"
        first.kill()  # SIGKILL: no handler runs, nothing is cleaned up
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
        first.stdout.close()
        first.stdin.close()
    assert first.returncode == -signal.SIGKILL
    assert (out / LOCK_NAME).exists()  # the file stays, but the lock died with the process
    code, events = run_cli(["export", str(out), "--mesh-resolution", "24", "--texture-size", "64"], capsys)
    assert code == 0 and events[-1]["event"] == "done"


# --- the disk filling up ----------------------------------------------------------------------

def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(run_dir, capsys, monkeypatch):
    from nfsd_backend import rundir

    before = (run_dir / CHECKPOINT_NAME).read_bytes()
    real_fdopen = os.fdopen

    class FillingFile:
        """The temporary file of an atomic write: a large one (the checkpoint; the resumed run's
        config.json, a few kB, still fits) gets half its bytes, then the disk is full."""

        def __init__(self, fd, mode):
            self.handle = real_fdopen(fd, mode)

        def write(self, data):
            if len(data) < 100_000:
                return self.handle.write(data)
            self.handle.write(data[:len(data) // 2])
            no_space()

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(rundir.os, "fdopen", FillingFile)
    # The next checkpoint is step 10's (no preview before it: those are at 100 and the last step).
    code, events = run_cli(["generate", "--resume", str(run_dir), "--steps", "12", "--checkpoint-every", "2"],
                           capsys)
    assert code == 1 and events[-1]["event"] == "error" and events[-1]["kind"] == "disk_full"
    message = events[-1]["message"]
    assert "No space left on device" in message and "step 10 was not written and the previous one is kept" in message
    assert f"--resume {run_dir}" in message and "\n" not in message
    assert (run_dir / CHECKPOINT_NAME).read_bytes() == before
    assert [p.name for p in (run_dir / CHECKPOINT_NAME).parent.iterdir()] == ["last.pt"]  # no temporary left
    assert torch.load(run_dir / CHECKPOINT_NAME, map_location="cpu", weights_only=True)["step"] == 8


def test_a_full_disk_while_exporting_keeps_the_previous_mesh(run_dir, capsys, monkeypatch):
    before = snapshot(run_dir / "mesh")
    writes = []

    def filling_write_bytes(self, data):  # the OBJ files go in, then the disk is full at the .glb
        writes.append(self.name)
        if self.name == "model.glb":
            no_space()
        return real_write_bytes(self, data)

    real_write_bytes = Path.write_bytes
    monkeypatch.setattr(Path, "write_bytes", filling_write_bytes)
    code, events = run_cli(["export", str(run_dir), "--mesh-resolution", "24"], capsys)
    monkeypatch.undo()
    assert code == 1 and events[-1]["kind"] == "disk_full"
    assert sorted(writes) == ["model.glb", "model.mtl", "model.obj", "texture.png"]
    assert f"nfsd export {run_dir}" in events[-1]["message"]
    assert snapshot(run_dir / "mesh") == before  # whole, and no staging folder left


def test_a_full_disk_elsewhere_is_one_line_too(run_dir, capsys, monkeypatch):
    # A preview: no step names what to do, the command line's fallback does.
    monkeypatch.setattr("nfsd_backend.train.write_png", no_space)
    code, events = run_cli(["generate", "--resume", str(run_dir), "--steps", "12", "--preview-every", "1"], capsys)
    assert code == 1 and events[-1]["kind"] == "disk_full" and "files written before are kept" in events[-1]["message"]


def test_the_error_still_reaches_the_add_on_when_the_events_file_cannot_grow(run_dir, capsys, monkeypatch):
    from nfsd_backend import events as events_module

    real_open = open

    class FullFile:
        def __init__(self, *args, **kwargs):
            self.handle = real_open(*args, **kwargs)

        def write(self, text):
            return len(text)

        def flush(self):
            no_space()

        def close(self):
            self.handle.close()

    monkeypatch.setattr(events_module, "open", FullFile, raising=False)
    code, events = run_cli(["generate", "--resume", str(run_dir), "--steps", "12"], capsys)
    assert code == 1 and events[0]["event"] == "start" and events[-1]["kind"] == "disk_full"


# --- a truncated checkpoint -------------------------------------------------------------------

@pytest.mark.parametrize("command", ["resume", "export"])
def test_a_truncated_checkpoint_is_one_line_and_stays_as_it_is(run_dir, capsys, command):
    checkpoint = run_dir / CHECKPOINT_NAME
    checkpoint.write_bytes(checkpoint.read_bytes()[:checkpoint.stat().st_size // 2])  # a copy cut short
    before = snapshot(run_dir)
    argv = ["generate", "--resume", str(run_dir), "--steps", "12"] if command == "resume" else ["export", str(run_dir)]
    code, events = run_cli(argv, capsys)
    assert code == 2 and [e["event"] for e in events] == ["error"] and events[0]["kind"] == "bad_config"
    assert f"the checkpoint {checkpoint} is corrupt or unreadable" in events[0]["message"]
    after = snapshot(run_dir)
    log = after.pop("nfsd.log").decode()
    assert after == {name: data for name, data in before.items() if name != "nfsd.log"}
    assert log.startswith(before["nfsd.log"].decode()) and "corrupt" in log  # only the log grew


def test_a_truncated_config_of_a_run_is_one_line(run_dir, capsys):
    config = run_dir / "config.json"
    config.write_text(config.read_text()[:40])
    for argv in (["generate", "--resume", str(run_dir)], ["export", str(run_dir)]):
        code, events = run_cli(argv, capsys)
        assert code == 2 and events[-1]["kind"] == "bad_config" and "not valid JSON" in events[-1]["message"]


def test_a_log_line_the_full_disk_refuses_is_dropped_without_a_traceback(tmp_path, capsys, monkeypatch):
    from nfsd_backend.rundir import RunLogHandler, attach_log, detach_logs, logger

    attach_log(tmp_path)
    monkeypatch.setattr(RunLogHandler, "flush", no_space)
    try:
        logger.error("disk_full: the disk is full")
    finally:
        monkeypatch.undo()
        detach_logs()
    assert "Traceback" not in capsys.readouterr().err
