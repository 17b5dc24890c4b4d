"""Bad input: exit code 2, one `error` event with kind bad_config, nothing written but the log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .cli_helpers import run_cli, run_subprocess

BASE = ["--model", "tiny-random", "--device", "cpu", "--steps", "2"]


@pytest.mark.parametrize("argv, fragment", [
    (["image", "   "], "prompt is empty"),
    (["image", "a cube", "--method", "vsd"], "unknown method 'vsd'"),
    (["image", "a cube", "--guidance-scale", "5000"], "outside the sane range"),
    (["image", "a cube", "--steps", "0"], "steps must be at least 1"),
    (["image", "a cube", "--nfsd-threshold", "-5"], "nfsd_threshold"),
    (["image", "a cube", "--model", "./no/such/model"], "does not exist"),
    (["image", "a cube", "--compare", "sds,foo"], "unknown method in --compare 'foo'"),
])
def test_bad_settings(tmp_path, capsys, argv, fragment):
    out = tmp_path / "run"
    code, events = run_cli([*argv[:2], "--out", str(out), *BASE, *argv[2:]], capsys)
    assert code == 2
    assert [e["event"] for e in events] == ["error"]
    assert events[0]["kind"] == "bad_config" and fragment in events[0]["message"]
    assert "\n" not in events[0]["message"]
    assert [p.name for p in out.iterdir()] == ["nfsd.log"]
    assert fragment in (out / "nfsd.log").read_text()


# Sizes that cannot finish or fit: refused before the model loads, naming the limit.
@pytest.mark.parametrize("argv, fragment", [
    (["--steps", "1e9"], "steps 1,000,000,000 is more than a run can finish: at most 100,000"),
    (["--steps", "100001"], "at most 100,000"),
    (["--mesh-resolution", "100000"], "mesh_resolution must be in 16..1024, got 100000"),
    (["--texture-size", "1e6"], "texture_size must be in 64..8192, got 1000000"),
    (["--render-size", "65536"], "render_size must be in 16..2048 pixels, got 65536"),
    (["--render-size-late", "1e5"], "render_size_late must be in 16..2048 pixels"),
    (["--inversion-steps", "1e9"], "inversion_steps must be in 1..1000, got 1000000000"),
    (["--seed", "1e30"], "seed must be in 0..18446744073709551615"),
    (["--seed", "-1"], "seed must be in 0..18446744073709551615 (2^64 - 1), got -1"),
    (["--config", "huge-grid"], "log2_table_size in 4..24"),
    (["--config", "huge-render"], "samples_per_ray must be in 1..1024"),
    (["--config", "huge-occupancy"], "occupancy_resolution must be in 1..512, got 4096"),
    (["--config", "huge-faces"], "max_faces must be in 100..1,000,000"),
])
def test_absurd_sizes_are_refused_naming_the_limit(tmp_path, capsys, argv, fragment):
    configs = {"huge-grid": {"train": {"field": {"encoding": {"log2_table_size": 30}}}},
               "huge-render": {"train": {"render": {"samples_per_ray": 10**6}}},
               "huge-occupancy": {"train": {"render": {"occupancy_resolution": 4096}}},
               "huge-faces": {"export": {"max_faces": 10**9}}}
    if argv[0] == "--config":
        path = tmp_path / "settings.json"
        path.write_text(json.dumps(configs[argv[1]]))
        argv = ["--config", str(path)]
    out = tmp_path / "run"
    code, events = run_cli(["generate", "a cube", "--out", str(out), *BASE, *argv], capsys)
    assert code == 2 and [e["event"] for e in events] == ["error"]
    assert events[0]["kind"] == "bad_config" and fragment in events[0]["message"], events[0]["message"]
    assert [p.name for p in out.iterdir()] == ["nfsd.log"]


def test_image_steps_have_the_same_limit(tmp_path, capsys):
    code, events = run_cli(["image", "a cube", "--out", str(tmp_path / "r"), *BASE, "--steps", "1e9"], capsys)
    assert code == 2 and "at most 100,000" in events[0]["message"]


@pytest.mark.parametrize("value", ["1.5", "1e400", "nan", "ten"])
def test_a_count_flag_takes_only_whole_numbers(capsys, value):
    code, events = run_cli(["generate", "a cube", "--steps", value], capsys)
    assert code == 2 and f"argument --steps: invalid whole number: '{value}'" in events[0]["message"]


def test_out_naming_an_existing_file(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    for command in ("generate", "image"):
        code, events = run_cli([command, "a cube", "--out", str(blocker), *BASE], capsys)
        assert code == 2 and [e["event"] for e in events] == ["error"] and events[0]["kind"] == "bad_config"
        assert f"--out {blocker} is a file, not a folder" in events[0]["message"]
    assert blocker.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_out_in_an_unwritable_place(tmp_path, capsys, monkeypatch):
    # Denied by the file system whoever runs the test (root writes anywhere, so chmod cannot).
    import errno
    real_mkdir = Path.mkdir

    def denying_mkdir(self, *args, **kwargs):
        if tmp_path / "locked" in (self, *self.parents):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", denying_mkdir)
    out = tmp_path / "locked" / "run"
    code, events = run_cli(["generate", "a cube", "--out", str(out), *BASE], capsys)
    assert code == 2 and [e["event"] for e in events] == ["error"] and events[0]["kind"] == "bad_config"
    assert f"cannot write to the output folder {out}: Permission denied" in events[0]["message"]
    assert not (tmp_path / "locked").exists()


def test_bad_config_file(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"prompt": "a cube", "guidance": {"scale": 3}}))
    code, events = run_cli(["image", "--config", str(config), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and events[0]["kind"] == "bad_config" and "guidance.scale" in events[0]["message"]
    config.write_text("{not json")
    code, events = run_cli(["image", "--config", str(config), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "not valid JSON" in events[0]["message"]


def test_unreadable_model_path(tmp_path, capsys, monkeypatch):
    # Denied by the file system whoever runs the test (root reads any file, so chmod cannot).
    import builtins
    import errno

    model = tmp_path / "model.safetensors"
    model.write_bytes(b"x")

    def denying_open(path, *args, **kwargs):
        if Path(path) == model:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr("nfsd_backend.config.open", denying_open, raising=False)
    code, events = run_cli(["image", "a cube", "--out", str(tmp_path / "r"), *BASE, "--model", str(model)], capsys)
    assert code == 2 and events[0]["kind"] == "bad_config"
    assert "cannot read the model" in events[0]["message"] and "Permission denied" in events[0]["message"]


def test_a_model_file_that_is_not_a_model(tmp_path, capsys):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"x")
    code, events = run_cli(["image", "a cube", "--out", str(tmp_path / "r"), *BASE, "--model", str(model)], capsys)
    assert code == 2 and events[-1]["kind"] == "model_not_found" and str(model) in events[-1]["message"]


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    code, events = run_cli(["image", "a cube", "--out", str(out), *BASE], capsys)
    assert code == 2 and "already holds a run" in events[0]["message"]
    assert (out / "config.json").read_text() == "{}"


def test_missing_model_offline_subprocess(tmp_path):
    result = run_subprocess(["image", "a cube", "--out", str(tmp_path / "r"), "--model", "someone/missing-model",
                             "--steps", "1", "--device", "cpu", "--events", "jsonl"])
    assert result.returncode == 2
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "model_not_found"
    assert "someone/missing-model" in events[-1]["message"] and "Traceback" not in result.stderr


def test_human_mode_error_is_one_line_without_traceback(tmp_path):
    result = run_subprocess(["image", "", "--out", str(tmp_path / "r")])
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and "prompt is empty" in result.stderr


@pytest.mark.parametrize("argv, fragment", [
    (["generate", "a cube", "--steps", "abc"], "argument --steps: invalid whole number: 'abc'"),
    (["image", "a cube", "--out", "unused", "--preset", "draft"], "unrecognized arguments: --preset draft"),
    (["generate", "a cube", "--method"], "argument --method: expected one argument"),
    (["export"], "the following arguments are required: run_dir"),
])
def test_usage_errors_are_one_error_event(capsys, argv, fragment):
    code, events = run_cli(argv, capsys)
    assert code == 2 and [e["event"] for e in events] == ["error"]
    assert events[0]["kind"] == "bad_config" and fragment in events[0]["message"]
    assert "--help" in events[0]["message"] and "\n" not in events[0]["message"]
    assert capsys.readouterr().err == ""  # no usage text besides the event


@pytest.mark.parametrize("command", ["generate", "image"])
def test_a_failed_start_leaves_the_folder_reusable(tmp_path, capsys, command):
    out = tmp_path / "run"
    code, events = run_cli([command, "a cube", "--out", str(out), *BASE, "--model", "someone/missing-model"], capsys)
    assert code == 2 and events[-1]["kind"] == "model_not_found"
    assert not (out / "config.json").exists()
    code, events = run_cli(["image", "a cube", "--out", str(out), *BASE], capsys)
    assert code == 0 and events[-1]["event"] == "done"
    assert json.loads((out / "config.json").read_text())["model"]["name"] == "tiny-random"
