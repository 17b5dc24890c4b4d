"""What every guidance rule shares: settings, timesteps, the weighting w(t), the safety of the
direction, and the loss whose gradient is the direction."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import GuidanceConfig
from ..diffusion.denoiser import Denoiser, expand_like


@dataclass
class Prompts:
    """Text embeddings, each with batch dimension 1, for one camera. Guidance never looks inside them."""

    cond: Tensor  # the prompt (the camera's view prompt in 3-D)
    uncond: Tensor  # the empty prompt
    neg: Tensor | None = None  # the negative prompt (NFSD needs it)
    # Perp-Neg's negatives: (embedding, weight >= 0) pairs, the other views' prompts (perp_neg.py);
    # empty = plain classifier-free guidance.
    perp_neg: tuple[tuple[Tensor, float], ...] = ()


@dataclass
class GuidanceStep:
    grad: Tensor  # same shape as x: the update direction g of ALGORITHMS.md
    timestep: Tensor  # [B] the t used (integer index into alphas_cumprod)
    model_evals: int  # denoiser evaluations spent (one per condition per latent)


class Guidance:
    """Base class: `direction(x, prompts, step, total_steps, generator)` -> GuidanceStep.

    `step` is the 0-based index of the step being taken out of `total_steps`. All randomness is
    drawn on the CPU from `generator`, so one seed gives every method the same draws on any device.
    """

    def __init__(self, denoiser: Denoiser, settings: GuidanceConfig):
        self.denoiser = denoiser
        self.settings = settings
        self.num_train_timesteps = denoiser.alphas_cumprod.shape[0]

    def direction(self, x: Tensor, prompts: Prompts, step: int, total_steps: int,
                  generator: torch.Generator | None = None) -> GuidanceStep:
        raise NotImplementedError

    # --- shared pieces -------------------------------------------------------------------------

    def coefficients(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """a_t = sqrt(abar_t) and b_t = sqrt(1 - abar_t), shaped to broadcast against x."""
        abar = expand_like(self.denoiser.alphas_cumprod[t.to(self.denoiser.alphas_cumprod.device)], x)
        return abar.sqrt().to(x.device), (1 - abar).sqrt().to(x.device)

    def weight(self, t: Tensor, x: Tensor) -> Tensor:
        a, b = self.coefficients(t, x)
        kind = self.settings.weighting
        if kind == "sds":
            return b**2
        if kind == "uniform":
            return torch.ones_like(a)
        if kind == "fantasia3d":
            return a * b**2
        if kind == "x0":
            return b / a
        raise ValueError(f"unknown weighting {kind!r}")

    def sample_timesteps(self, batch: int, step: int, total_steps: int,
                         generator: torch.Generator | None) -> Tensor:
        """t ~ U{t_min T, .., t_max T}, with t_max lowered to t_max_annealed from t_anneal_at on.

        One uniform draw per sample is scaled to the current range, so the same seed gives the
        same draws whatever the range."""
        s = self.settings
        T = self.num_train_timesteps
        t_max = s.t_max
        if s.t_anneal_at is not None and step >= s.t_anneal_at * total_steps:
            t_max = s.t_max_annealed
        lo, hi = round(s.t_min * T), min(round(t_max * T), T - 1)
        hi = max(hi, lo)
        u = torch.rand(batch, generator=generator)
        return (lo + torch.floor(u * (hi - lo + 1))).long().clamp(max=hi)

    def finish(self, g: Tensor) -> Tensor:
        """Zero non-finite values, then clamp when a bound is set."""
        g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
        if self.settings.grad_clip is not None:
            g = g.clamp(-self.settings.grad_clip, self.settings.grad_clip)
        return g


def distillation_loss(x: Tensor, grad: Tensor) -> Tensor:
    """0.5 * |x - (x - g)|^2 / batch, whose gradient with respect to x is g / batch (g for a batch
    of one): autograd carries the direction into whatever produced x (a renderer, a latent)."""
    target = (x - grad).detach()
    return 0.5 * ((x - target) ** 2).sum() / x.shape[0]

