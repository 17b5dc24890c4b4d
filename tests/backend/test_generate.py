"""`nfsd generate` end to end on tiny-random: event order, run folder, mesh, resume, control,
bad input. Small sizes keep each run to seconds on a CPU."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy
import pytest
import torch
import trimesh

from nfsd_backend.checkpoint import CHECKPOINT_NAME

from .cli_helpers import run_cli, run_subprocess, start_backend

# A field and renderer small enough for seconds-long runs; the code paths are those of a real run.
SMALL_CONFIG = Path(__file__).resolve().parent / "small_generate_config.json"
SMALL = ["--config", str(SMALL_CONFIG), "--model", "tiny-random", "--device", "cpu", "--render-size", "32",
         "--render-size-late", "48", "--mesh-resolution", "48", "--texture-size", "128", "--preview-every", "10",
         "--checkpoint-every", "10"]


def test_generate_events_files_and_mesh(tmp_path, capsys):
    out = tmp_path / "run"
    code, events = run_cli(["generate", "a red cube", "--out", str(out), "--steps", "20", *SMALL], capsys)
    assert code == 0, events[-1]
    kinds = [e["event"] for e in events]
    train = ["progress"] * 10 + ["preview", "checkpoint"]
    export_stages = [e for e in events if e["event"] == "stage" and e["name"] == "export"]
    assert kinds == ["start", "stage", "stage"] + train * 2 + ["stage"] * len(export_stages) + ["done"]
    assert [e["name"] for e in events if e["event"] == "stage"][:2] == ["load_model", "train"]
    assert len(export_stages) >= 1
    start = events[0]
    assert start["total_steps"] == 20 and start["method"] == "nfsd" and start["device"] == "cpu"
    assert start["config"]["guidance"]["t_anneal_at"] == 0.2  # NFSD's paper schedule
    assert [e["step"] for e in events if e["event"] == "progress"] == list(range(1, 21))
    done = events[-1]
    assert done["mesh"] == str(out / "mesh" / "model.glb") and done["obj"] == str(out / "mesh" / "model.obj")
    for name in ("config.json", "events.jsonl", "nfsd.log", "previews/latest.png", "previews/step_000010.png",
                 "previews/step_000020.png", str(CHECKPOINT_NAME), "mesh/model.glb", "mesh/model.obj",
                 "mesh/model.mtl", "mesh/texture.png"):
        assert (out / name).is_file(), name
    scene = trimesh.load(out / "mesh" / "model.glb")
    mesh = next(iter(scene.geometry.values())) if isinstance(scene, trimesh.Scene) else scene
    assert len(mesh.faces) > 0 and mesh.visual.uv is not None
    written = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert written == events


def test_perp_neg_run_records_it_and_hands_each_camera_its_negatives(tmp_path, capsys, monkeypatch):
    from nfsd_backend.guidance import SDSGuidance

    seen = []
    original = SDSGuidance.direction

    def recording(self, x, prompts, *args, **kwargs):
        seen.append(prompts)
        step = original(self, x, prompts, *args, **kwargs)
        seen.append(step.model_evals)
        return step

    monkeypatch.setattr(SDSGuidance, "direction", recording)
    out = tmp_path / "run"
    code, events = run_cli(["generate", "a red cube", "--out", str(out), "--method", "sds", "--perp-neg",
                            "--view-prompts", "interpolate", "--steps", "3", *SMALL, "--mesh-resolution", "16",
                            "--texture-size", "64"], capsys)
    assert code == 0, events[-1]
    saved = json.loads((out / "config.json").read_text())["guidance"]
    assert (saved["perp_neg"], saved["view_prompts"]) == (True, "interpolate") == \
        (events[0]["config"]["guidance"]["perp_neg"], events[0]["config"]["guidance"]["view_prompts"])
    prompts, evals = seen[0::2], seen[1::2]
    # Elevations up to 45 degrees are never overhead: every camera gets the front and side prompts
    # as negatives, and one latent costs 2 + 2 evaluations.
    assert len(prompts) == 3 and all(len(p.perp_neg) == 2 for p in prompts) and evals == [4, 4, 4]


def parameters(run_dir):
    return torch.load(run_dir / CHECKPOINT_NAME, map_location="cpu", weights_only=False)


COMMON = ["--method", "sds", "--steps", "8", *SMALL, "--checkpoint-every", "4", "--preview-every", "100",
          "--mesh-resolution", "16", "--texture-size", "64"]


def test_stop_then_resume_equals_a_straight_run(tmp_path):
    straight = tmp_path / "straight"
    assert run_subprocess(["generate", "a red cube", "--out", str(straight), *COMMON]).returncode == 0
    # The same run stopped after its first checkpoint (stdin closes after `stop`), then resumed.
    resumed = tmp_path / "resumed"
    process = start_backend(["generate", "a red cube", "--out", str(resumed), *COMMON, "--control", "stdin"],
                            stdin=subprocess.PIPE)
    stopped_at = None
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "checkpoint" and stopped_at is None:
            process.stdin.write("stop\n")
            process.stdin.flush()
            stopped_at = event["step"]
        if event["event"] == "cancelled":
            cancelled = event
    assert process.wait(timeout=300) == 3
    assert cancelled["step"] >= stopped_at and cancelled["step"] < 8
    assert parameters(resumed)["step"] == cancelled["step"]
    first_run = (resumed / "events.jsonl").read_text().splitlines()
    result = run_subprocess(["generate", "--resume", str(resumed), "--events", "jsonl"])
    assert result.returncode == 0, result.stdout[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["step"] for e in events if e["event"] == "progress"][0] == cancelled["step"] + 1
    # The run's event file keeps the first part's events, then the resumed part's.
    assert (resumed / "events.jsonl").read_text().splitlines() == first_run + result.stdout.splitlines()
    a, b = parameters(straight), parameters(resumed)
    assert a["step"] == b["step"] == 8
    for part in ("field", "renderer"):
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=0, atol=0)
    assert torch.equal(a["generator"], b["generator"])
    for index, values in a["optimizer"]["state"].items():
        for key, value in values.items():
            torch.testing.assert_close(value, b["optimizer"]["state"][index][key], rtol=0, atol=0)
    # So the meshes are the same too.
    meshes = [trimesh.load(run / "mesh" / "model.glb", force="mesh") for run in (straight, resumed)]
    assert numpy.array_equal(meshes[0].vertices, meshes[1].vertices)
    assert numpy.array_equal(meshes[0].faces, meshes[1].faces)


def test_export_request_stops_training_and_exports(tmp_path):
    out = tmp_path / "run"
    process = start_backend(["generate", "a red cube", "--out", str(out), "--steps", "400", *SMALL,
                             "--control", "stdin"], stdin=subprocess.PIPE)
    kinds = []
    for line in process.stdout:
        event = json.loads(line)
        kinds.append(event["event"])
        if event["event"] == "progress" and event["step"] == 3:
            process.stdin.write("export\n")
            process.stdin.flush()
    assert process.wait(timeout=300) == 0
    assert kinds[-1] == "done" and "cancelled" not in kinds
    assert kinds.count("progress") < 400
    assert (out / "mesh" / "model.glb").is_file() and (out / CHECKPOINT_NAME).is_file()


def test_closed_stdin_means_stop(tmp_path):
    out = tmp_path / "run"
    result = run_subprocess(["generate", "a red cube", "--out", str(out), "--steps", "400", *SMALL,
                             "--events", "jsonl", "--control", "stdin"], stdin="")
    assert result.returncode == 3
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "cancelled" and events[-1]["checkpoint"] == str(out / CHECKPOINT_NAME)
    assert not (out / "mesh").exists()


def test_sigterm_means_stop(tmp_path):
    out = tmp_path / "run"
    process = start_backend(["generate", "a red cube", "--out", str(out), "--steps", "400", *SMALL])
    for line in process.stdout:
        if json.loads(line)["event"] == "progress":
            process.terminate()
            break
    rest = [json.loads(line)["event"] for line in process.stdout]
    assert process.wait(timeout=300) == 3 and rest[-1] == "cancelled"


def test_ctrl_c_means_stop(tmp_path):
    out = tmp_path / "run"
    process = start_backend(["generate", "a red cube", "--out", str(out), "--steps", "400", *SMALL])
    for line in process.stdout:
        if json.loads(line)["event"] == "progress":
            process.send_signal(signal.SIGINT)
            break
    rest = [json.loads(line) for line in process.stdout]
    assert process.wait(timeout=300) == 3 and rest[-1]["event"] == "cancelled"
    assert Path(rest[-1]["checkpoint"]).is_file() and "done" not in [e["event"] for e in rest]


def test_an_interrupt_is_one_line_and_keeps_the_checkpoint(tmp_path, capsys, monkeypatch):
    from nfsd_backend.train import Trainer

    real_step = Trainer.train_step

    def interrupted_after_a_checkpoint(self):  # as a second Ctrl-C raises (see control.py)
        if self.step == 4:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted_after_a_checkpoint)
    out = tmp_path / "run"
    code, events = run_cli(["generate", "a red cube", "--out", str(out), *COMMON], capsys)
    assert code == 3 and events[-1]["event"] == "error" and events[-1]["kind"] == "interrupted"
    assert "\n" not in events[-1]["message"] and parameters(out)["step"] == 4


def test_a_bug_is_one_line_with_its_traceback_in_the_log(tmp_path, capsys, monkeypatch):
    from nfsd_backend.train import Trainer

    def broken_step(self):
        raise ValueError("boom")

    monkeypatch.setattr(Trainer, "train_step", broken_step)
    out = tmp_path / "run"
    code, events = run_cli(["generate", "a red cube", "--out", str(out), *COMMON], capsys)
    assert code == 1 and events[-1]["event"] == "error" and events[-1]["kind"] == "internal"
    message = events[-1]["message"]
    assert "\n" not in message and "ValueError: boom" in message and str(out / "nfsd.log") in message
    log = (out / "nfsd.log").read_text()
    assert "Traceback" in log and "ValueError: boom" in log


def test_out_of_memory_while_training_names_what_to_lower(tmp_path, capsys, monkeypatch):
    from nfsd_backend.train import Trainer

    def out_of_memory(self):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(Trainer, "train_step", out_of_memory)
    code, events = run_cli(["generate", "a red cube", "--out", str(tmp_path / "run"), *COMMON], capsys)
    assert code == 1 and events[-1]["kind"] == "out_of_memory"
    assert "--low-vram" in events[-1]["message"] and "--resume" in events[-1]["message"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_no_gpu_for_device_cuda_is_a_user_mistake(tmp_path, capsys):
    out = tmp_path / "run"
    code, events = run_cli(["generate", "a red cube", "--out", str(out), *COMMON, "--device", "cuda"], capsys)
    assert code == 2 and [e["event"] for e in events] == ["error"] and events[0]["kind"] == "cuda_unavailable"
    assert not (out / "config.json").exists()


def test_reexport_from_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["generate", "a red cube", "--out", str(out), *COMMON], capsys)[0] == 0
    first = (out / "mesh" / "model.glb").stat().st_mtime_ns
    time.sleep(0.01)
    code, events = run_cli(["export", str(out), "--mesh-resolution", "24", "--texture-size", "64"], capsys)
    assert code == 0 and events[-1]["event"] == "done" and events[0]["name"] == "export"
    assert (out / "mesh" / "model.glb").stat().st_mtime_ns > first
    code, events = run_cli(["export", str(out), "--threshold", "1e9"], capsys)
    assert code == 1 and events[-1]["kind"] == "empty_geometry"
    assert (out / "mesh" / "model.glb").is_file()  # the earlier result survives


def test_reexport_refuses_what_it_cannot_do_and_keeps_the_mesh(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert run_cli(["generate", "a red cube", "--out", str(out), *COMMON], capsys)[0] == 0
    mesh = (out / "mesh" / "model.glb").read_bytes()
    settings = tmp_path / "settings.json"

    def export(config: dict) -> tuple[int, list[dict]]:
        settings.write_text(json.dumps(config))
        return run_cli(["export", str(out), "--config", str(settings)], capsys)

    code, events = export({"export": {"mesh_res": 32}})
    assert code == 2 and "unknown setting config.export.mesh_res" in events[-1]["message"]
    code, events = export({"export": {"texture_size": "big"}})
    assert code == 2 and "config.export.texture_size must be a whole number" in events[-1]["message"]
    code, events = export({"prompt": "a blue sphere"})
    assert code == 2 and "changes only export settings and model.device" in events[-1]["message"]
    saved = json.loads((out / "config.json").read_text())
    code, events = export(saved)  # the run's own settings are fine
    assert code == 0 and events[-1]["event"] == "done"

    # A field built from other settings than the checkpoint's: one line, not a traceback.
    changed = json.loads(json.dumps(saved))
    changed["train"]["field"]["mlp_width"] = 16
    (out / "config.json").write_text(json.dumps(changed))
    code, events = run_cli(["export", str(out)], capsys)
    assert code == 2 and events[-1]["kind"] == "bad_config" and "does not fit" in events[-1]["message"]
    (out / "config.json").write_text(json.dumps(saved))

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    mesh_files = {p.name: p.read_bytes() for p in (out / "mesh").iterdir()}
    monkeypatch.setattr("nfsd_backend.reexport.export_field", out_of_memory)
    code, events = run_cli(["export", str(out)], capsys)
    assert code == 1 and events[-1]["kind"] == "out_of_memory" and "--mesh-resolution" in events[-1]["message"]
    assert {p.name: p.read_bytes() for p in (out / "mesh").iterdir()} == mesh_files
    monkeypatch.undo()

    # A failure while the files are written (the .obj files are ready, the .glb fails): the old
    # result stays whole, and no staging folder is left.
    def failing_glb(*args):
        raise OSError("disk full")

    monkeypatch.setattr("nfsd_backend.export.files.glb_bytes", failing_glb)
    code, events = run_cli(["export", str(out), "--mesh-resolution", "24"], capsys)
    assert code == 1 and events[-1]["kind"] == "internal" and "disk full" in events[-1]["message"]
    assert {p.name: p.read_bytes() for p in (out / "mesh").iterdir()} == mesh_files


@pytest.mark.parametrize("case", ["unwritable_out", "corrupt_checkpoint", "missing_out", "resume_not_a_run"])
def test_bad_generate_input(tmp_path, capsys, case):
    if case == "unwritable_out":
        blocker = tmp_path / "file"
        blocker.write_text("x")
        argv, fragment = ["generate", "a cube", "--out", str(blocker / "run"), *SMALL], "cannot write to the output"
    elif case == "corrupt_checkpoint":
        run = tmp_path / "run"
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"prompt": "a cube", "model": {"name": "tiny-random"}}))
        (run / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
        argv, fragment = ["generate", "--resume", str(run)], "corrupt"
    elif case == "missing_out":
        argv, fragment = ["generate", "a cube", *SMALL], "--out"
    else:
        argv, fragment = ["generate", "--resume", str(tmp_path)], "not a run folder"
    code, events = run_cli(argv, capsys)
    assert code == 2 and events[-1]["kind"] == "bad_config" and fragment in events[-1]["message"]
    if case == "corrupt_checkpoint":
        assert (tmp_path / "run" / CHECKPOINT_NAME).read_bytes() == b"not a checkpoint"



def test_non_finite_loss_is_reported_and_never_checkpointed(tmp_path, capsys, monkeypatch):
    from nfsd_backend.diffusion.loading import DiffusionModel

    real_encode = DiffusionModel.encode_images
    calls = []

    def poisoned(self, rgb):  # the third render goes bad, after a checkpoint at step 2
        calls.append(1)
        x = real_encode(self, rgb)
        return x * float("nan") if len(calls) == 3 else x

    monkeypatch.setattr(DiffusionModel, "encode_images", poisoned)
    out = tmp_path / "run"
    code, events = run_cli(["generate", "a red cube", "--out", str(out), "--steps", "6", *SMALL,
                            "--checkpoint-every", "2"], capsys)
    assert code == 1 and events[-1]["event"] == "error" and events[-1]["kind"] == "non_finite"
    assert "step 3" in events[-1]["message"]
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2]
    state = torch.load(out / CHECKPOINT_NAME, map_location="cpu", weights_only=False)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["field"].values())
