"""Score Distillation Sampling (Poole et al. 2022), the baseline:
g = w(t) (eps_s(z, t) - e),  z = a_t x + b_t e."""

from __future__ import annotations

import torch
from torch import Tensor

from ..diffusion.denoiser import predict_conditions, standard_normal
from .base import Guidance, GuidanceStep, Prompts


class SDSGuidance(Guidance):
    def direction(self, x: Tensor, prompts: Prompts, step: int, total_steps: int,
                  generator: torch.Generator | None = None) -> GuidanceStep:
        t = self.sample_timesteps(x.shape[0], step, total_steps, generator)
        noise = standard_normal(x.shape, generator, x)
        a, b = self.coefficients(t, x)
        z = a * x.detach() + b * noise
        eps_uncond, eps_cond = predict_conditions(self.denoiser, z, t, [prompts.uncond, prompts.cond])
        eps_guided = eps_uncond + self.settings.guidance_scale * (eps_cond - eps_uncond)
        grad = self.weight(t, x) * (eps_guided - noise)
        return GuidanceStep(self.finish(grad), t, model_evals=2 * x.shape[0])
