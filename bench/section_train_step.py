"""Section 2: one training step of `nfsd generate` (the backend's own `Trainer.train_step`) split
into render, VAE encode, guidance and backward, with peak memory, for the default and the
low-vram settings at two render sizes.

The step's randomness is pinned where it changes the cost: NFSD at t = 500 (three conditions,
its usual case: t ~ U[20, 980] is below 200 only 18% of the time) and diffuse shading (the
renderer then also computes normals, as in 80% of training steps). Everything else is the run's
own configuration for the model (the preset's field, renderer and, for low-vram, ray chunks).
"""

from __future__ import annotations

import statistics
import time

import torch

from harness import OWN_CPU_NOTE, PeakMemory, Table, cpu_share, log, memory_kind, seconds
from model_sources import PROMPT, ModelSource
from nfsd_backend.config import merge, resolve_generate
from nfsd_backend.train import Trainer

PHASES = ("render", "encode", "guidance", "backward")
SETTINGS = ("default", "low-vram")
STEP_T = 500
PRECISION_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def make_trainer(model, size: int, low_vram: bool, extra_settings: dict | None = None) -> Trainer:
    """The trainer of one pinned step; `extra_settings` (config keys) go under the pinned ones."""
    t = STEP_T / model.denoiser.alphas_cumprod.shape[0]
    config = resolve_generate(merge(extra_settings or {}, {
        "prompt": PROMPT,
        "model": {"name": model.name, "device": model.device.type, "low_vram": low_vram},
        "guidance": {"method": "nfsd", "t_min": t, "t_max": t, "t_max_annealed": t},
        "train": {"render_size": size, "render_size_late": None,
                  "render": {"albedo_probability": 0.0, "diffuse_probability": 1.0, "textureless_probability": 0.0}},
    }))
    return Trainer(config, model)


def run(source: ModelSource, sizes: list[int], repeats: int, device: torch.device) -> list[Table]:
    memory = memory_kind(device)
    table = Table(f"Training step ({source.name}, NFSD at t={STEP_T}, diffuse shading, {device.type})",
                  ["setting", "precision", "render size", *[f"{p} s" for p in PHASES], "total s", "it/s", memory,
                   "own CPU"])
    for setting in SETTINGS:
        low_vram = setting == "low-vram"
        model = source.build("auto", low_vram=low_vram)
        for size in sizes:
            trainer = make_trainer(model, size, low_vram)
            log(f"train step {setting} {size}x{size}: {repeats} runs")
            trainer.train_step()  # warm-up; step 0 also fills the occupancy grid, as a run's first step does
            runs: list[dict[str, float]] = []
            start_cpu = time.process_time()
            with PeakMemory(device) as peak:
                for _ in range(repeats):
                    runs.append({})
                    trainer.train_step(timings=runs[-1])
            cpu = time.process_time() - start_cpu
            median = {p: statistics.median(r[p] for r in runs) for p in PHASES}
            total = statistics.median(sum(r.values()) for r in runs)
            table.add(setting, PRECISION_NAMES[model.dtype], size, *[seconds(median[p]) for p in PHASES],
                      seconds(total), f"{1 / total:.3g}", peak.cell(),
                      cpu_share(cpu, sum(sum(r.values()) for r in runs)))
            log(f"  -> {total:.3g} s, peak {peak.cell()} GiB")
            del trainer
        del model
    table.notes += [
        f"median of {repeats} steps after one warm-up step, `Trainer.train_step(timings=...)` of `nfsd generate`.",
        "render = occupancy update (every 16th step) + rendering one camera; encode = resize to the model's "
        "resolution (512 px for SD: a 64 px render is upsampled first) + VAE encode; backward = the loss's "
        "gradient through the VAE encoder and the renderer into the field, plus the AdamW step.",
        f"memory: {memory}, including the weights and everything else alive in the process.",
        OWN_CPU_NOTE,
        "low-vram: on CUDA fp16 weights and channels-last, on the CPU the default precision (fp32) and "
        "channels-last; with Stable Diffusion also rays in chunks of 4096 (the preset's setting).",
    ]
    return [table]
