"""A denoiser whose answer is known in closed form, for checking guidance rules exactly.

Data under condition c is Gaussian, x0 ~ N(mu_c, sigma^2 I), and the "embedding" of c is mu_c
itself (guidance treats embeddings as opaque, so this is legitimate). Then
    eps(z, t, c) = b_t (z - a_t mu_c) / (a_t^2 sigma^2 + b_t^2).
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler


def sd_alphas_cumprod() -> torch.Tensor:
    """Stable Diffusion's noise schedule (scaled_linear betas 0.00085..0.012, T = 1000)."""
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    return scheduler.alphas_cumprod.to(torch.float64)


class GaussianDenoiser:
    def __init__(self, sigma: float = 0.5, dtype: torch.dtype = torch.float64):
        self.sigma = sigma
        self.alphas_cumprod = sd_alphas_cumprod().to(dtype)
        self.rows_evaluated = 0
        self.calls = 0

    def eps(self, z: torch.Tensor, t: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        abar = self.alphas_cumprod[t].reshape(-1, *([1] * (z.dim() - 1))).to(z.dtype)
        a, b = abar.sqrt(), (1 - abar).sqrt()
        return b * (z - a * mu) / (a**2 * self.sigma**2 + b**2)

    def predict_eps(self, z_t, t, embeddings):
        assert z_t.shape[0] == t.shape[0] == embeddings.shape[0]
        self.calls += 1
        self.rows_evaluated += z_t.shape[0]
        return self.eps(z_t, t, embeddings)
