"""`nfsd generate` on `device`, end to end on the tiny random model: a checkpoint written there
exports on the CPU and resumes there, `stop` then `--resume` equals a straight run exactly,
`--low-vram` runs the model in half precision, and running out of memory under a cap ends as one
`out_of_memory` error with the checkpoint kept.

The runs go through `cli.main` in this process (a few seconds each on the CPU): stdout is tapped
for the events as they come, so a test can act during a run (send `stop`, cap the memory).
The cpu twins run the same commands with `--device cpu`; where a setting has no CPU meaning the
twin says what stands in for it (fp16 on the CPU for `--low-vram`'s half precision, an allocation
that fails like CUDA's caching allocator for the memory cap).
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch

from nfsd_backend import train
from nfsd_backend.checkpoint import CHECKPOINT_NAME, load_checkpoint
from nfsd_backend.cli import main
from nfsd_backend.errors import EXIT_CANCELLED, EXIT_OK
from nfsd_backend.nerf.field import NerfField

from .conftest import DEVICES

pytestmark = pytest.mark.gpu

SMALL_CONFIG = Path(__file__).resolve().parents[1] / "backend" / "small_generate_config.json"


def small(device: str, steps: int) -> list[str]:
    """A tiny field and renderer (the CPU tests' own) at 32 px: seconds per run on a CPU."""
    return ["--config", str(SMALL_CONFIG), "--model", "tiny-random", "--device", device, "--steps", str(steps),
            "--render-size", "32", "--render-size-late", "32", "--checkpoint-every", "2", "--preview-every", "100",
            "--mesh-resolution", "16", "--texture-size", "64", "--method", "sds"]


class EventTap(io.TextIOBase):
    """Stands in for stdout under `--events jsonl`: parses each event line as it is written and
    hands it to `on_event` (which may act on the run: write `stop`, cap the memory)."""

    def __init__(self, on_event: Callable[[dict], None] | None = None):
        self.events: list[dict] = []
        self.on_event = on_event
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self.events.append(json.loads(line))
            if self.on_event is not None:
                self.on_event(self.events[-1])
        return len(text)


def nfsd(argv: list[str], monkeypatch, on_event=None, stdin=None) -> tuple[int, list[dict]]:
    """`nfsd ARGV --events jsonl` through `cli.main`; returns the exit code and the events."""
    tap = EventTap(on_event)
    monkeypatch.setattr(sys, "stdout", tap)
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", stdin)
    try:
        code = main([*argv, "--events", "jsonl"])
    finally:
        monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    return code, tap.events


def kinds(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]


@pytest.mark.parametrize("device", DEVICES)
def test_a_checkpoint_written_on_the_device_exports_on_the_cpu_and_resumes_on_the_device(tmp_path, monkeypatch,
                                                                                        device):
    run = tmp_path / "run"
    code, events = nfsd(["generate", "a red cube", "--out", str(run), *small(device, 4)], monkeypatch)
    assert code == EXIT_OK and events[0]["device"].startswith(device), events[-1]
    (run / "mesh" / "model.glb").unlink()
    code, events = nfsd(["export", str(run), "--device", "cpu", "--mesh-resolution", "24"], monkeypatch)
    assert code == EXIT_OK and kinds(events)[-1] == "done", events[-1]
    assert (run / "mesh" / "model.glb").is_file()
    code, events = nfsd(["generate", "--resume", str(run), "--steps", "6"], monkeypatch)
    assert code == EXIT_OK, events[-1]
    assert events[0]["device"].startswith(device)
    assert [e["step"] for e in events if e["event"] == "progress"] == [5, 6]
    assert load_checkpoint(run)["step"] == 6


def checkpoint_state(run: Path) -> dict:
    return torch.load(run / CHECKPOINT_NAME, map_location="cpu", weights_only=False)


def largest_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two checkpoints' field, renderer and optimiser tensors."""
    worst = 0.0
    for part in ("field", "renderer"):
        for key, value in a[part].items():
            worst = max(worst, float((value.double() - b[part][key].double()).abs().max()))
    for index, values in a["optimizer"]["state"].items():
        for key, value in values.items():
            other = b["optimizer"]["state"][index][key]
            worst = max(worst, float((value.double() - other.double()).abs().max()))
    return worst


@pytest.mark.parametrize("device", DEVICES)
def test_a_run_stopped_on_the_device_resumes_exactly(tmp_path, monkeypatch, device):
    straight = [tmp_path / "straight-1", tmp_path / "straight-2"]
    for run in straight:
        assert nfsd(["generate", "a red cube", "--out", str(run), *small(device, 8)], monkeypatch)[0] == EXIT_OK
    # The same run with `stop` sent on stdin at its first checkpoint, then continued with --resume.
    read_end, write_end = os.pipe()
    control_in, control_out = os.fdopen(read_end, "r"), os.fdopen(write_end, "w")

    def stop_at_first_checkpoint(event: dict) -> None:
        if event["event"] == "checkpoint" and not control_out.closed:
            control_out.write("stop\n")
            control_out.close()

    resumed = tmp_path / "resumed"
    code, events = nfsd(["generate", "a red cube", "--out", str(resumed), *small(device, 8), "--control", "stdin"],
                        monkeypatch, on_event=stop_at_first_checkpoint, stdin=control_in)
    assert code == EXIT_CANCELLED and kinds(events)[-1] == "cancelled", events[-1]
    stopped_at = events[-1]["step"]
    assert 2 <= stopped_at < 8 and checkpoint_state(resumed)["step"] == stopped_at
    code, events = nfsd(["generate", "--resume", str(resumed)], monkeypatch)
    assert code == EXIT_OK and [e["step"] for e in events if e["event"] == "progress"][0] == stopped_at + 1
    first, second, continued = (checkpoint_state(run) for run in (*straight, resumed))
    assert first["step"] == second["step"] == continued["step"] == 8
    # Two straight runs that differ say the device's arithmetic is not repeatable (atomic adds on
    # CUDA sum in a varying order); a resumed run can then be no closer than they are.
    assert largest_difference(first, second) == 0.0, \
        f"two straight runs on {device} differ by up to {largest_difference(first, second):.3g}"
    assert largest_difference(first, continued) == 0.0
    assert torch.equal(first["generator"], continued["generator"])


@pytest.mark.parametrize("device", DEVICES)
def test_low_vram_runs_the_model_in_half_precision(tmp_path, monkeypatch, device):
    loaded = []
    real_load = train.load_model
    monkeypatch.setattr(train, "load_model", lambda config: loaded.append(real_load(config)) or loaded[-1])
    # --low-vram means fp16 on CUDA whatever --precision says; on the CPU fp16 must be asked for.
    precision = ["--precision", "fp16"] if device == "cpu" else []
    run = tmp_path / "run"
    code, events = nfsd(["generate", "a red cube", "--out", str(run), *small(device, 4), "--low-vram", *precision],
                        monkeypatch)
    assert code == EXIT_OK, events[-1]
    (model,) = loaded
    assert model.dtype == torch.float16 and model.unet.dtype == torch.float16
    assert model.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert next(model.text_encoder.parameters()).device.type == "cpu"  # offloaded once the prompts are encoded
    assert events[0]["config"]["model"]["low_vram"] is True
    assert all(torch.isfinite(value).all() for value in load_checkpoint(run)["field"].values())
    assert all(e["loss"] == e["loss"] for e in events if e["event"] == "progress")  # no NaN loss


class MemoryCap:
    """Caps the memory the run may take from now on. On CUDA: the caching allocator's share of the
    card (`set_per_process_memory_fraction`) is set to what is in use plus 1 MiB, and the cache is
    emptied, so the next larger step cannot allocate. The cpu twin has no allocator cap: its next
    field query raises the error CUDA's allocator raises."""

    def __init__(self, device: str, monkeypatch):
        self.device, self.monkeypatch = device, monkeypatch

    def apply(self) -> None:
        if self.device == "cuda":
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_allocated() + 2**20) / total)
            torch.cuda.empty_cache()
        else:
            def no_memory(field, points):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 MiB (capped)")

            self.monkeypatch.setattr(NerfField, "density_and_albedo", no_memory)

    def release(self) -> None:
        if self.device == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0)


@pytest.mark.parametrize("device", DEVICES)
def test_running_out_of_memory_under_a_cap_is_one_error_and_keeps_the_checkpoint(tmp_path, monkeypatch, device):
    cap = MemoryCap(device, monkeypatch)

    def cap_after_the_first_checkpoint(event: dict) -> None:
        if event["event"] == "checkpoint" and event["step"] == 2:
            cap.apply()

    run = tmp_path / "run"
    settings = tmp_path / "late-switch.json"
    # 32 px up to the checkpoint at step 2, then 256 px: 64x the rays, which the cap cannot hold.
    settings.write_text(json.dumps({**json.loads(SMALL_CONFIG.read_text()),
                                    "train": {**json.loads(SMALL_CONFIG.read_text())["train"],
                                              "render_size_switch_at": 0.5}}))
    argv = [*small(device, 6), "--config", str(settings), "--render-size-late", "256"]
    try:
        code, events = nfsd(["generate", "a red cube", "--out", str(run), *argv], monkeypatch,
                            on_event=cap_after_the_first_checkpoint)
    finally:
        cap.release()
    errors = [e for e in events if e["event"] == "error"]
    assert code == 1 and len(errors) == 1 and events[-1] is errors[0], kinds(events)
    assert errors[0]["kind"] == "out_of_memory" and "\n" not in errors[0]["message"]
    assert "--low-vram" in errors[0]["message"] and "--resume" in errors[0]["message"]
    assert load_checkpoint(run)["step"] == 2 and (run / "config.json").is_file()
    assert not (run / "mesh").exists()
