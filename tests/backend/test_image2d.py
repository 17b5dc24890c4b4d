"""`nfsd image` end to end on tiny-random: files, event sequence, determinism, comparison grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from toy_shapes_check import classify

from .cli_helpers import run_cli, run_subprocess

ARGS = ["--model", "tiny-random", "--device", "cpu", "--steps", "6", "--preview-every", "3"]


def test_image_run_writes_files_and_events_in_order(tmp_path, capsys):
    out = tmp_path / "run"
    code, events = run_cli(["image", "a red cube", "--out", str(out), "--seed", "3", *ARGS], capsys)
    assert code == 0
    kinds = [e["event"] for e in events]
    assert kinds == (["start", "stage", "stage"] + ["progress"] * 3 + ["preview"] + ["progress"] * 3
                     + ["preview", "done"])
    assert [e["name"] for e in events if e["event"] == "stage"] == ["load_model", "train"]
    assert events[2]["message"] == "nfsd: 6 steps, lr 0.05"  # tiny-random has a VAE: the latent default
    assert all(e["v"] == 1 and isinstance(e["time"], float) for e in events)
    progress = [e for e in events if e["event"] == "progress"]
    assert [p["step"] for p in progress] == list(range(1, 7))
    assert all(p["total_steps"] == 6 and 20 <= p["timestep"] <= 980 for p in progress)
    assert {"loss", "elapsed_s", "eta_s", "it_per_s"} <= set(progress[0])
    assert events[-1]["image"] == str(out / "final.png")
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["latest.png", "step_000003.png", "step_000006.png"]
    config = json.loads((out / "config.json").read_text())
    assert config["prompt"] == "a red cube" and config["guidance"]["guidance_scale"] == 7.5
    assert config["guidance"]["method"] == "nfsd" and config["seed"] == 3 and config["lr"] is None
    written = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert written == events
    assert Image.open(out / "final.png").size == (64, 64)


def test_same_seed_same_image_and_config_reproduces(tmp_path, capsys):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert run_cli(["image", "a red cube", "--out", str(a), "--seed", "1", *ARGS], capsys)[0] == 0
    assert run_cli(["image", "a red cube", "--out", str(b), "--seed", "1", *ARGS], capsys)[0] == 0
    assert run_cli(["image", "--config", str(a / "config.json"), "--out", str(c)], capsys)[0] == 0
    first = np.asarray(Image.open(a / "final.png"))
    assert np.array_equal(first, np.asarray(Image.open(b / "final.png")))
    assert np.array_equal(first, np.asarray(Image.open(c / "final.png")))
    other = tmp_path / "d"
    assert run_cli(["image", "a red cube", "--out", str(other), "--seed", "2", *ARGS], capsys)[0] == 0
    assert not np.array_equal(first, np.asarray(Image.open(other / "final.png")))


def test_compare_runs_each_method_and_writes_a_grid(tmp_path, capsys):
    out = tmp_path / "cmp"
    code, events = run_cli(["image", "a blue sphere", "--out", str(out), "--compare", "sds,nfsd,sdi", *ARGS], capsys)
    assert code == 0
    assert [e["message"].split(":")[0] for e in events if e["event"] == "stage"][1:] == ["sds", "nfsd", "sdi"]
    assert [e["step"] for e in events if e["event"] == "progress"] == list(range(1, 19))
    grid = Image.open(out / "compare.png")
    finals = [Image.open(out / f"final_{m}.png") for m in ("sds", "nfsd", "sdi")]
    assert grid.width == 3 * 256 and grid.height > 256  # three upscaled tiles and a caption strip
    assert events[-1]["image"] == str(out / "compare.png")
    tile = np.asarray(grid)[:256, 256:512]
    assert np.array_equal(tile[::4, ::4], np.asarray(finals[1]))  # nearest-neighbour x4: nfsd in the middle


def test_jsonl_mode_prints_only_events_and_progress_bar_mode_prints_none(tmp_path):
    result = run_subprocess(["image", "a red cube", "--out", str(tmp_path / "j"), "--events", "jsonl", *ARGS])
    assert result.returncode == 0, result.stderr
    kinds = [json.loads(line)["event"] for line in result.stdout.splitlines()]
    assert kinds[0] == "start" and kinds[-1] == "done"
    human = run_subprocess(["image", "a red cube", "--out", str(tmp_path / "h"), *ARGS])
    assert human.returncode == 0 and human.stdout == ""
    assert "step" in human.stderr and "done in" in human.stderr


def test_pixel_space_model_takes_the_pixel_step_unless_lr_is_given(tmp_path, capsys):
    # One Adam step moves every value by lr (its first update is lr * g / |g|). toy-shapes works on
    # pixels in [-1, 1] from a grey start (0), so the final PNG holds 255 * (1 -+ lr) / 2, rounded.
    def one_step(name, *extra):
        out = tmp_path / name
        code, events = run_cli(["image", "a red cube", "--out", str(out), "--model", "toy-shapes", "--device", "cpu",
                                "--steps", "1", *extra], capsys)
        assert code == 0
        return events[2]["message"], np.unique(np.asarray(Image.open(out / "final.png")))

    message, values = one_step("default")
    assert message == "nfsd: 1 steps, lr 0.002"
    assert set(values) == {127, 128}  # 127.5 -+ 0.255
    message, values = one_step("given", "--lr", "0.1")
    assert message == "nfsd: 1 steps, lr 0.1"
    assert set(values) == {115, 140}  # 127.5 -+ 12.75


@pytest.mark.parametrize("colour, shape", [("red", "cube"), ("blue", "sphere")])
def test_toy_shapes_image_shows_the_prompted_object(tmp_path, capsys, colour, shape):
    # The 2-D mode at its defaults (docs/methods.md): the judge of the model's own samples must name the
    # prompt's colour and silhouette in the distilled picture.
    out = tmp_path / "run"
    code, _ = run_cli(["image", f"a {colour} {shape}, front view", "--out", str(out), "--model", "toy-shapes",
                       "--device", "cpu", "--method", "nfsd"], capsys)
    assert code == 0
    image = torch.from_numpy(np.asarray(Image.open(out / "final.png").convert("RGB"))).permute(2, 0, 1) / 255
    assert classify(image) == (colour, shape)
