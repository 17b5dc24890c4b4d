"""The one seam between guidance and a diffusion model: `Denoiser.predict_eps`."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class Denoiser(Protocol):
    alphas_cumprod: Tensor  # [T] cumulative products of (1 - beta), float32, on the model's device

    def predict_eps(self, z_t: Tensor, t: Tensor, embeddings: Tensor) -> Tensor:
        """z_t [B,C,H,W], t [B] integer timesteps, embeddings [B,...] -> eps [B,C,H,W]."""
        ...


def eps_from_v(v: Tensor, z_t: Tensor, t: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """Noise prediction from a v-prediction: with z = a x0 + b e and v = a e - b x0,
    e = a v + b z (a^2 + b^2 = 1)."""
    abar = alphas_cumprod[t].to(z_t.dtype).reshape(-1, *([1] * (z_t.dim() - 1)))
    return abar.sqrt() * v + (1 - abar).sqrt() * z_t


class UNetDenoiser:
    """A diffusers `UNet2DConditionModel` with its scheduler's noise levels.

    The UNet may run in half precision; inputs and outputs stay in the caller's dtype (float32),
    so the guidance arithmetic is always done in full precision.
    """

    def __init__(self, unet: torch.nn.Module, alphas_cumprod: Tensor, prediction_type: str = "epsilon"):
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"unsupported prediction type {prediction_type!r}: expected epsilon or v_prediction")
        self.unet = unet
        self.prediction_type = prediction_type
        parameter = next(unet.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.alphas_cumprod = alphas_cumprod.to(device=self.device, dtype=torch.float32)

    def predict_eps(self, z_t: Tensor, t: Tensor, embeddings: Tensor) -> Tensor:
        out = self.unet(z_t.to(self.dtype), t.to(self.device),
                        encoder_hidden_states=embeddings.to(self.dtype)).sample.to(z_t.dtype)
        if self.prediction_type == "v_prediction":
            return eps_from_v(out, z_t, t, self.alphas_cumprod)
        return out


def predict_conditions(denoiser: Denoiser, z_t: Tensor, t: Tensor, conditions: list[Tensor],
                       rows: list[Tensor | None] | None = None) -> list[Tensor]:
    """eps of `z_t` under each condition (embeddings with batch 1), all in one denoiser call.

    `rows[i]`, when given, selects the latents condition i is needed for (None = all), so a
    condition needed only for some samples costs only those: one evaluation per condition per
    latent it is applied to. Returns one eps tensor per condition, for its rows.
    """
    rows = rows or [None] * len(conditions)
    t = t.to(z_t.device)  # the rules draw t on the CPU, for the same draws on every device
    picks = [torch.arange(z_t.shape[0], device=z_t.device) if r is None else r.to(z_t.device) for r in rows]
    embeddings = torch.cat([c.expand(len(p), *c.shape[1:]) for c, p in zip(conditions, picks)], dim=0)
    eps = denoiser.predict_eps(torch.cat([z_t[p] for p in picks]), torch.cat([t[p] for p in picks]), embeddings)
    return list(eps.split([len(p) for p in picks], dim=0))


def expand_like(values: Tensor, x: Tensor) -> Tensor:
    """[B] per-sample values shaped to broadcast against x [B,...]."""
    return values.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def standard_normal(shape: torch.Size, generator: torch.Generator | None, like: Tensor) -> Tensor:
    """N(0, I) drawn on the CPU (reproducible across devices), then moved beside `like`."""
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=like.device, dtype=like.dtype)
