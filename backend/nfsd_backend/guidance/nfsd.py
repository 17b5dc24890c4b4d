"""Noise-Free Score Distillation (Katzir et al., ICLR 2024).

The score splits into a domain term d_D, a condition term d_C and noise; NFSD distils only
d_D + s d_C, never the noise:
    d_C = eps(z,t,y) - eps(z,t,0)
    d_D = eps(z,t,0)                       if t < threshold (200)
          eps(z,t,0) - eps(z,t,neg)        otherwise
    g   = w(t) (d_D + s d_C)
The negative prompt is evaluated only for the samples whose t is at or above the threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..diffusion.denoiser import predict_conditions, standard_normal
from .base import Guidance, GuidanceStep, Prompts


class NFSDGuidance(Guidance):
    def direction(self, x: Tensor, prompts: Prompts, step: int, total_steps: int,
                  generator: torch.Generator | None = None) -> GuidanceStep:
        if prompts.neg is None:
            raise ValueError("NFSD needs the negative prompt's embedding in Prompts.neg")
        t = self.sample_timesteps(x.shape[0], step, total_steps, generator)
        noise = standard_normal(x.shape, generator, x)
        a, b = self.coefficients(t, x)
        z = a * x.detach() + b * noise
        high = torch.nonzero(t >= self.settings.nfsd_threshold).flatten()
        eps_uncond, eps_cond, eps_neg = predict_conditions(
            self.denoiser, z, t, [prompts.uncond, prompts.cond, prompts.neg], rows=[None, None, high])
        delta_c = eps_cond - eps_uncond
        delta_d = eps_uncond.clone()
        delta_d[high.to(x.device)] = eps_uncond[high.to(x.device)] - eps_neg
        grad = self.weight(t, x) * (delta_d + self.settings.guidance_scale * delta_c)
        return GuidanceStep(self.finish(grad), t, model_evals=2 * x.shape[0] + len(high))
