"""DDIM stepping in both directions: sampling (noise -> data) and inversion (data -> noise).

One step from level k to level k' (either direction), with abar = alphas_cumprod:
    x0_hat = (z - b_k e_hat) / a_k
    z'     = a_k' x0_hat + b_k' e_hat + eta * sigma(k, k') * N(0, I)
    sigma(k, k')^2 = (1 - abar_k) / (1 - abar_k') * (1 - abar_k' / abar_k)
(ALGORITHMS.md, SDI). `e_hat` is the (optionally classifier-free guided) noise prediction.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .denoiser import Denoiser, predict_conditions, standard_normal


def ddim_timesteps(num_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """Stable Diffusion's "leading" DDIM grid, ascending: 1, 101, ..., 901 for 10 steps of 1000."""
    if num_steps < 1:
        raise ValueError("num_steps must be at least 1")
    stride = num_train_timesteps // num_steps
    return [i * stride + 1 for i in range(num_steps) if i * stride + 1 < num_train_timesteps]


def eta_sigma(abar_from: Tensor, abar_to: Tensor) -> Tensor:
    """DDIM's noise scale from a level to a noisier one (before multiplying by eta)."""
    return ((1 - abar_from) / (1 - abar_to) * (1 - abar_to / abar_from)).sqrt()


def guided_eps(denoiser: Denoiser, z: Tensor, t: Tensor, cond: Tensor, uncond: Tensor | None,
               guidance_scale: float) -> Tensor:
    """eps(z,t,0) + s (eps(z,t,y) - eps(z,t,0)) in one batched call; the conditional eps alone
    (one evaluation) when `uncond` is None."""
    if uncond is None:
        return predict_conditions(denoiser, z, t, [cond])[0]
    eps_uncond, eps_cond = predict_conditions(denoiser, z, t, [uncond, cond])
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def ddim_walk(denoiser: Denoiser, z: Tensor, path: list[int], cond: Tensor, uncond: Tensor | None = None,
              guidance_scale: float = 1.0, eta: float = 0.0,
              generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """DDIM steps along `path` (ascending = inversion, descending = sampling), each predicting
    with `guided_eps` of cond / uncond at `guidance_scale`.

    Returns the latent at `path[-1]` and the number of denoiser evaluations spent (one per
    condition per latent). The eta noise (SDI's entropy term) is defined for inversion only; it is
    drawn on the CPU from `generator`, so a seed fixes it on every device.
    """
    per_step = z.shape[0] * (1 if uncond is None else 2)

    def predict(z: Tensor, t: Tensor) -> tuple[Tensor, int]:
        return guided_eps(denoiser, z, t, cond, uncond, guidance_scale), per_step

    return ddim_walk_with(denoiser.alphas_cumprod, z, path, predict, eta, generator)


# (z, t) -> (the noise prediction a DDIM step uses, the denoiser evaluations it cost)
Prediction = Callable[[Tensor, Tensor], tuple[Tensor, int]]


def ddim_walk_with(alphas_cumprod: Tensor, z: Tensor, path: list[int], predict: Prediction, eta: float = 0.0,
                   generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """`ddim_walk` with any noise prediction (SDI's inversion with Perp-Neg, guidance/perp_neg.py)."""
    if eta > 0 and any(b < a for a, b in zip(path[:-1], path[1:])):
        raise ValueError("eta noise is defined for inversion (an ascending path) only")
    abar = alphas_cumprod
    evals = 0
    batch = z.shape[0]
    for k, k_next in zip(path[:-1], path[1:]):
        t = torch.full((batch,), k, dtype=torch.long, device=z.device)
        e_hat, spent = predict(z, t)
        evals += spent
        a_k, a_next = abar[k].to(z.dtype), abar[k_next].to(z.dtype)
        x0_hat = (z - (1 - a_k).sqrt() * e_hat) / a_k.sqrt()
        z = a_next.sqrt() * x0_hat + (1 - a_next).sqrt() * e_hat
        if eta > 0:
            z = z + eta * eta_sigma(a_k, a_next) * standard_normal(z.shape, generator, z)
    return z, evals
