"""Score Distillation Sampling (Poole et al. 2022), the baseline:
g = w(t) (eps_s(z, t) - e),  z = a_t x + b_t e,  eps_s = eps(z,t,0) + s d_C
(d_C = eps(z,t,y) - eps(z,t,0), less Perp-Neg's negatives when the prompts carry any: perp_neg.py).
Evaluations per step: (2 + K) per latent, K = the number of Perp-Neg negatives (0 without)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..diffusion.denoiser import standard_normal
from .base import Guidance, GuidanceStep, Prompts
from .perp_neg import predict_guided_terms


class SDSGuidance(Guidance):
    def direction(self, x: Tensor, prompts: Prompts, step: int, total_steps: int,
                  generator: torch.Generator | None = None) -> GuidanceStep:
        t = self.sample_timesteps(x.shape[0], step, total_steps, generator)
        noise = standard_normal(x.shape, generator, x)
        a, b = self.coefficients(t, x)
        z = a * x.detach() + b * noise
        terms = predict_guided_terms(self.denoiser, z, t, prompts)
        eps_guided = terms.eps_uncond + self.settings.guidance_scale * terms.delta
        grad = self.weight(t, x) * (eps_guided - noise)
        return GuidanceStep(self.finish(grad), t, model_evals=terms.evals)
