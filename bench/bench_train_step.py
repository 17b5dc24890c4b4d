"""Section 2: one training step split into render, VAE encode, guidance and backward, with peak
memory, for the default and the low-vram settings.

The model side of the step (the phases after the render) is measured here directly, with the
backend's own pieces: `DiffusionModel.encode_images` (resize to the model's resolution, VAE
encode), the NFSD rule, and `distillation_loss(...).backward()` through the encoder into the
rendered image. The render and the renderer's share of the backward need the NeRF trainer; see
`run` for which one a table row comes from.
"""

from __future__ import annotations

import statistics

import torch

from bench_guidance import encode_prompts
from harness import PeakMemory, PhaseClock, Table, log, memory_kind, seconds
from model_sources import ModelSource
from nfsd_backend.guidance import distillation_loss, make_guidance

PHASES = ("render", "encode", "guidance", "backward")
SETTINGS = ("default", "low-vram")
# The step's timestep: NFSD at t >= 200 evaluates three conditions, its usual case (t ~ U[20, 980]).
STEP_T = 500
PRECISION_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def model_side_step(model, guidance, prompts, size: int, device: torch.device, generator: torch.Generator,
                    timings: dict[str, float]) -> None:
    """Encode a rendered-image stand-in of size x size, take the guidance step, back-propagate
    into the image; books "encode", "guidance" and "backward" seconds into `timings`."""
    rgb = torch.rand(1, 3, size, size, generator=generator).to(device).requires_grad_()
    clock = PhaseClock(device, timings)
    x = model.encode_images(rgb)
    clock.lap("encode")
    step = guidance.direction(x, prompts, 0, 1, generator)
    clock.lap("guidance")
    distillation_loss(x, step.grad).backward()
    clock.lap("backward")


def run(source: ModelSource, sizes: list[int], repeats: int, device: torch.device) -> list[Table]:
    memory = memory_kind(device)
    table = Table(f"Training step, model side ({source.name}, NFSD at t={STEP_T}, {device.type})",
                  ["setting", "precision", "render size", *[f"{p} s" for p in PHASES], "total s", "it/s", memory])
    for setting in SETTINGS:
        low_vram = setting == "low-vram"
        model = source.build("auto", low_vram=low_vram)
        T = model.denoiser.alphas_cumprod.shape[0]
        guidance = make_guidance("nfsd", model.denoiser, t_min=STEP_T / T, t_max=STEP_T / T)
        prompts = encode_prompts(model)
        precision = PRECISION_NAMES[model.dtype]
        for size in sizes:
            log(f"train step {setting} {size}x{size}: {repeats} runs")
            generator = torch.Generator().manual_seed(0)
            model_side_step(model, guidance, prompts, size, device, generator, {})  # warm-up
            runs: list[dict[str, float]] = []
            with PeakMemory(device) as peak:
                for _ in range(repeats):
                    runs.append({})
                    model_side_step(model, guidance, prompts, size, device, generator, runs[-1])
            median = {p: statistics.median(r[p] for r in runs) for p in PHASES if p in runs[0]}
            total = statistics.median(sum(r.values()) for r in runs)
            table.add(setting, precision, size, *[seconds(median[p]) if p in median else "—" for p in PHASES],
                      seconds(total), f"{1 / total:.3g}", peak.cell())
            log(f"  -> {total:.3g} s, peak {peak.cell()} GiB")
        del model, guidance
    table.notes += [
        f"median of {repeats} runs after one warm-up; the renders are random images of the given size (no "
        "renderer yet: the render column and the renderer's part of the backward are not included).",
        "encode = resize to the model's resolution (512 for SD) + VAE encode; backward = the distillation "
        "loss's gradient back through the VAE encoder into the image.",
        f"memory: {memory}, including the weights of the UNet, the VAE and everything else alive in the process.",
        "low-vram: on CUDA fp16 weights + channels-last; on the CPU the same precision as default (fp32) "
        "with channels-last.",
    ]
    return [table]
