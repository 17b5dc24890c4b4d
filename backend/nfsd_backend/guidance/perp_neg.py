"""The guided condition term every rule uses, with Perp-Neg's negatives (Armandpour et al. 2023,
"Re-imagine the Negative Prompt Algorithm"; docs/methods.md, "Perp-Neg and view prompts").

With y the camera's view prompt, 0 the empty prompt and n_i the negatives (the other views'
prompts) with weights w_i >= 0 (set by the camera's azimuth, see `views.py`):
    d_y       = eps(z,t,y) - eps(z,t,0)                     the positive delta
    d_i       = eps(z,t,n_i) - eps(z,t,0)                   each negative's delta
    perp(d_i) = d_i - (<d_i, d_y> / <d_y, d_y>) d_y         per sample; <.,.> sums over C, H, W
    d_C       = d_y - sum_i w_i perp(d_i)
so each negative only removes what is perpendicular to the positive delta: it cannot cancel the
prompt itself. The rules use d_C where plain CFG has d_y:
    SDS:  eps_s = eps(z,t,0) + s d_C,            g = w(t) (eps_s - e)
    NFSD: g = w(t) (d_D + s d_C)                 (the domain term d_D is unchanged)
    SDI:  eps_s = eps(z,t,0) + s d_C on the forward pass, and eps(z,t,0) + s_inv d_C on every
          inversion step (as the SDI authors' code does: its inversion calls the same prediction)
Without negatives (or with every weight 0) d_C = d_y: plain classifier-free guidance, the same
calls and the same numbers as without Perp-Neg.

Cost: one evaluation per negative per latent, in the same denoiser call as the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..diffusion.denoiser import Denoiser, predict_conditions
from .base import Prompts


def perpendicular(u: Tensor, v: Tensor) -> Tensor:
    """The part of each sample of u perpendicular to the same sample of v (u where v is 0)."""
    dims = tuple(range(1, u.dim()))
    along = (u * v).sum(dims, keepdim=True) / (v * v).sum(dims, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
    return u - along * v


@dataclass
class GuidedTerms:
    """The denoiser's answers one guided prediction needs."""

    eps_uncond: Tensor  # eps(z,t,0)
    delta: Tensor  # d_C: the positive delta less the negatives' perpendicular parts
    extra: list[Tensor]  # eps of the extra conditions asked for, for their rows
    evals: int  # denoiser evaluations spent (one per condition per latent)


def predict_guided_terms(denoiser: Denoiser, z: Tensor, t: Tensor, prompts: Prompts,
                         extra: tuple[Tensor, ...] = (), extra_rows: tuple[Tensor | None, ...] = ()) -> GuidedTerms:
    """eps(z,t,0) and d_C of the module docstring, plus eps under each `extra` condition (for the
    rows `extra_rows` picks, None = all), all in one denoiser call. Negatives of weight 0 are not
    evaluated."""
    negatives = [(embedding, weight) for embedding, weight in prompts.perp_neg if weight != 0]
    conditions = [prompts.uncond, prompts.cond, *(embedding for embedding, _ in negatives), *extra]
    rows = [None] * (2 + len(negatives)) + list(extra_rows or [None] * len(extra))
    eps = predict_conditions(denoiser, z, t, conditions, rows=rows)
    eps_uncond, eps_cond = eps[0], eps[1]
    positive = eps_cond - eps_uncond
    delta = positive
    for (_, weight), eps_negative in zip(negatives, eps[2:2 + len(negatives)]):
        delta = delta - weight * perpendicular(eps_negative - eps_uncond, positive)
    return GuidedTerms(eps_uncond, delta, eps[2 + len(negatives):], evals=sum(len(e) for e in eps))


def guided_prediction(denoiser: Denoiser, z: Tensor, t: Tensor, prompts: Prompts,
                      guidance_scale: float) -> tuple[Tensor, int]:
    """eps(z,t,0) + s d_C and the evaluations it cost."""
    terms = predict_guided_terms(denoiser, z, t, prompts)
    return terms.eps_uncond + guidance_scale * terms.delta, terms.evals
