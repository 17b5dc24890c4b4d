"""Section 1: what one guidance step costs, per method, timestep and precision.

The timestep is pinned (SDS/NFSD: t_min = t_max = t/T; SDI: sdi_t_hi = sdi_t_lo = t/T), because
the cost depends on it: NFSD adds the negative prompt from t = 200, SDI inverts along about
t/100 + 1 DDIM steps. A denoiser wrapper books the time spent inside the UNet, so the table also
says how much of a step is anything else (the guidance's own arithmetic, noise, batching).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from harness import OWN_CPU_NOTE, Table, Timing, log, ratio, seconds, synchronize, time_runs
from model_sources import PROMPT, ModelSource
from nfsd_backend.config import NFSD_NEGATIVE_PROMPT
from nfsd_backend.guidance import Prompts, make_guidance

METHODS = ("sds", "nfsd", "sdi")


class TimedDenoiser:
    """A `Denoiser` that books the wall time of every `predict_eps` call."""

    def __init__(self, inner, device: torch.device):
        self.inner = inner
        self.device = device
        self.alphas_cumprod = inner.alphas_cumprod
        self.seconds = 0.0

    def predict_eps(self, z_t: Tensor, t: Tensor, embeddings: Tensor) -> Tensor:
        synchronize(self.device)
        start = time.perf_counter()
        eps = self.inner.predict_eps(z_t, t, embeddings)
        synchronize(self.device)
        self.seconds += time.perf_counter() - start
        return eps


def pinned_settings(method: str, t: int, num_train_timesteps: int) -> dict[str, float]:
    fraction = t / num_train_timesteps
    if method == "sdi":
        return {"sdi_t_hi": fraction, "sdi_t_lo": fraction}
    return {"t_min": fraction, "t_max": fraction}


def encode_prompts(model) -> Prompts:
    return Prompts(*(e[None] for e in model.encode_prompts([PROMPT, "", NFSD_NEGATIVE_PROMPT])))


@dataclass
class GuidanceFigure:
    precision: str
    method: str
    t: int
    evals: int
    timing: Timing
    unet_share: float  # fraction of the step's wall time spent inside the UNet


def measure_method(model, method: str, t: int, repeats: int, device: torch.device) -> tuple[Timing, int, float]:
    """(timing, model evaluations, UNet share) of `method`'s direction at timestep t."""
    denoiser = TimedDenoiser(model.denoiser, device)
    T = denoiser.alphas_cumprod.shape[0]
    guidance = make_guidance(method, denoiser, **pinned_settings(method, t, T))
    prompts = encode_prompts(model)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, model.latent_channels, model.latent_size, model.latent_size, generator=generator)
    x = x.to(device)
    steps = []

    def step() -> None:
        steps.append(guidance.direction(x, prompts, 0, 1, generator))

    if method != "sdi":  # SDI's batch-2 calls are the shapes SDS has just warmed up
        step()  # warm-up, outside both the timing and the UNet's booked time
        synchronize(device)
        denoiser.seconds = 0.0
    timing = time_runs(step, repeats, device, warmup=0)
    if int(steps[-1].timestep[0]) != t:
        raise RuntimeError(f"{method}: pinned t={t} but the rule used {int(steps[-1].timestep[0])}")
    return timing, steps[-1].model_evals, denoiser.seconds / sum(timing.runs)


def run(source: ModelSource, precisions: list[str], timesteps: list[int], repeats: dict[str, int],
        device: torch.device) -> tuple[list[Table], list[GuidanceFigure]]:
    figures: list[GuidanceFigure] = []
    for precision in precisions:
        model = source.build(precision)
        for t in timesteps:
            for method in METHODS:
                log(f"guidance {method} t={t} {precision}: {repeats[method]} runs")
                timing, evals, share = measure_method(model, method, t, repeats[method], device)
                figures.append(GuidanceFigure(precision, method, t, evals, timing, share))
                log(f"  -> {timing.cell()} s, {evals} evals")
        del model
    return tables(figures, source, device, repeats), figures


def tables(figures: list[GuidanceFigure], source: ModelSource, device: torch.device,
           repeats: dict[str, int]) -> list[Table]:
    cost = Table(f"Guidance step cost ({source.name}, latent batch 1, {device.type})",
                 ["precision", "method", "t", "model evals", "s / step: median (min-max)", "runs",
                  "s / eval", "UNet share", "own CPU"])
    for f in figures:
        cost.add(f.precision, f.method.upper(), f.t, f.evals, f.timing.cell(), len(f.timing.runs),
                 seconds(f.timing.median / f.evals), f"{100 * f.unet_share:.0f}%", f.timing.cpu_share())
    cost.notes += [
        "model evals = one UNet evaluation per condition per latent; the conditions of one call are batched "
        "(SDS: 1 call of batch 2; NFSD: batch 2 below t=200, 3 from it; SDI: one batch-2 call per inversion "
        "step plus one for the guided prediction).",
        f"runs per figure: {', '.join(f'{m.upper()} {n}' for m, n in repeats.items())}; SDS and NFSD after one "
        "warm-up run, SDI without one (its UNet calls have the shape SDS's runs at the same t just warmed up; "
        "at full scale on a CPU an SDI step at t=900 takes minutes).",
        "UNet share = time inside the UNet / wall time of the step; the rest is the rule's own arithmetic.",
        OWN_CPU_NOTE,
    ]
    by_key = {(f.precision, f.method, f.t): f.timing.median for f in figures}
    ratios = Table("Cost relative to SDS (median s / median s)", ["precision", "t", "NFSD / SDS", "SDI / SDS"])
    for precision, method, t in by_key:
        if method == "sds":
            sds = by_key[(precision, "sds", t)]
            ratios.add(precision, t, ratio(by_key[(precision, "nfsd", t)], sds), ratio(by_key[(precision, "sdi", t)], sds))
    return [cost, ratios]
