"""Reading `nfsd doctor --json`: what the backend's machine offers, in a few lines for the panel.
No bpy here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

BUILTIN_MODELS = ("toy-shapes", "tiny-random")


@dataclass
class GpuInfo:
    name: str
    vram_total_gb: float
    vram_free_gb: float


@dataclass
class DoctorReport:
    """The fields of `nfsd doctor --json` the add-on shows."""

    python: str
    torch: str
    cuda: str | None  # the CUDA version torch was built with; None for a CPU build
    cuda_available: bool
    gpus: list[GpuInfo] = field(default_factory=list)
    tinycudann: str = ""
    nerfacc: str = ""
    cached_models: list[str] = field(default_factory=list)
    builtin_models: list[str] = field(default_factory=list)


class DoctorOutputError(ValueError):
    """`nfsd doctor --json` printed no usable report."""


def parse_doctor_output(lines: Sequence[str]) -> DoctorReport:
    """The report in the doctor's stdout: the last line that is a JSON object."""
    for line in reversed(lines):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            return _report(data)
    raise DoctorOutputError("the backend's doctor printed no JSON report")


def _report(data: dict[str, Any]) -> DoctorReport:
    try:
        gpus = [GpuInfo(str(g["name"]), float(g["vram_total_gb"]), float(g["vram_free_gb"]))
                for g in data.get("gpus", [])]
        return DoctorReport(
            python=str(data["python"]), torch=str(data["torch"]),
            cuda=None if data.get("cuda") is None else str(data["cuda"]),
            cuda_available=bool(data["cuda_available"]), gpus=gpus,
            tinycudann=str(data.get("tinycudann", "")), nerfacc=str(data.get("nerfacc", "")),
            cached_models=[str(m) for m in data.get("cached_models", [])],
            builtin_models=[str(m) for m in data.get("builtin_models", BUILTIN_MODELS)])
    except (KeyError, TypeError, ValueError) as exc:
        raise DoctorOutputError(f"the backend's doctor report is incomplete ({exc!r})") from None


def model_status(report: DoctorReport, model: str) -> str:
    """Whether `model` can run without a download."""
    if model in report.builtin_models:
        return f"Model {model}: built in"
    if model in report.cached_models:
        return f"Model {model}: downloaded"
    if "/" in model and not model.startswith((".", "/", "~")) and "\\" not in model:
        return f"Model {model}: not downloaded yet (the first Generate downloads it)"
    return f"Model {model}: a local path (checked when Generate starts)"


def summary_lines(report: DoctorReport, model: str) -> list[str]:
    """A few lines for the preferences: Python and torch, each GPU with its free memory, the
    accelerators, and whether the chosen model is available."""
    build = f"CUDA {report.cuda}" if report.cuda else "CPU"
    lines = [f"Python {report.python}, torch {report.torch} ({build} build)"]
    if report.gpus:
        lines += [f"GPU: {gpu.name}, {gpu.vram_free_gb:.1f} of {gpu.vram_total_gb:.1f} GB free"
                  for gpu in report.gpus]
    elif report.cuda:
        lines.append("No usable CUDA GPU: check the NVIDIA driver (generation would run on the CPU)")
    else:
        lines.append("No CUDA GPU: generation runs on the CPU (slow; use a draft preset)")
    for name, state in (("tiny-cuda-nn", report.tinycudann), ("nerfacc", report.nerfacc)):
        lines.append(f"{name}: {'in use' if state == 'ok' else 'not used (pure PyTorch instead)'}")
    lines.append(model_status(report, model))
    return lines
