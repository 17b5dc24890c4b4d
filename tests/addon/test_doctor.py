"""Reading `nfsd doctor --json`: the real backend's output, and the panel's summary of it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from blender_nfsd.doctor import (DoctorOutputError, DoctorReport, GpuInfo, model_status, parse_doctor_output,
                                 summary_lines)
from blender_nfsd.command import doctor_command


def test_the_real_backends_report_parses():
    result = subprocess.run(doctor_command(sys.executable), capture_output=True, text=True, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    report = parse_doctor_output(result.stdout.splitlines())
    import torch

    assert report.python == platform.python_version()
    assert report.torch == torch.__version__
    assert report.cuda_available == torch.cuda.is_available()
    assert report.builtin_models == ["toy-shapes", "tiny-random"]


def test_noise_before_the_report_is_skipped():
    report = parse_doctor_output(["Some warning", json.dumps({
        "python": "3.11.9", "torch": "2.5.1+cu124", "cuda": "12.4", "cuda_available": True,
        "gpus": [{"index": 0, "name": "RTX 4070", "vram_total_gb": 11.99, "vram_free_gb": 10.2}],
        "tinycudann": "ok", "nerfacc": "unavailable: no module", "cached_models": ["sd2-community/x"],
        "builtin_models": ["toy-shapes", "tiny-random"]}), ""])
    assert report.gpus == [GpuInfo("RTX 4070", 11.99, 10.2)]
    assert summary_lines(report, "sd2-community/x") == [
        "Python 3.11.9, torch 2.5.1+cu124 (CUDA 12.4 build)",
        "GPU: RTX 4070, 10.2 of 12.0 GB free",
        "tiny-cuda-nn: in use",
        "nerfacc: not used (pure PyTorch instead)",
        "Model sd2-community/x: downloaded",
    ]


@pytest.mark.parametrize("lines, problem", [
    ([], "printed no JSON report"),
    (["Traceback ...", "ImportError: torch"], "printed no JSON report"),
    ([json.dumps({"python": "3.11"})], "incomplete"),
])
def test_unusable_output(lines, problem):
    with pytest.raises(DoctorOutputError, match=problem):
        parse_doctor_output(lines)


def cpu_report(cuda: str | None = None) -> DoctorReport:
    return DoctorReport(python="3.11.9", torch="2.5.1", cuda=cuda, cuda_available=False,
                        builtin_models=["toy-shapes", "tiny-random"], cached_models=["a/cached"])


def test_summary_without_a_gpu():
    assert summary_lines(cpu_report(), "toy-shapes")[:2] == [
        "Python 3.11.9, torch 2.5.1 (CPU build)", "No CUDA GPU: generation runs on the CPU (slow; use a draft preset)"]
    assert summary_lines(cpu_report("12.4"), "toy-shapes")[1] == \
        "No usable CUDA GPU: check the NVIDIA driver (generation would run on the CPU)"


@pytest.mark.parametrize("model, status", [
    ("toy-shapes", "built in"),
    ("a/cached", "downloaded"),
    ("someone/new-model", "not downloaded yet (the first Generate downloads it)"),
    ("/models/sd15", "a local path (checked when Generate starts)"),
    ("C:\\models\\sd.safetensors", "a local path (checked when Generate starts)"),
])
def test_model_status(model, status):
    assert model_status(cpu_report(), model) == f"Model {model}: {status}"
