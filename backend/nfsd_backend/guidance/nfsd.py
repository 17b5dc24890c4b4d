"""Noise-Free Score Distillation (Katzir et al., ICLR 2024).

The score splits into a domain term d_D, a condition term d_C and noise; NFSD distils only
d_D + s d_C, never the noise:
    d_C = eps(z,t,y) - eps(z,t,0)
    d_D = eps(z,t,0)                       if t < threshold (200)
          eps(z,t,0) - eps(z,t,neg)        otherwise
    g   = w(t) (d_D + s d_C)
The negative prompt is evaluated only for the samples whose t is at or above the threshold.
With Perp-Neg, d_C loses the other views' perpendicular parts (perp_neg.py); d_D is unchanged.
Evaluations per step: (2 + K) per latent plus one per latent at or above the threshold, K = the
number of Perp-Neg negatives (0 without).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..diffusion.denoiser import standard_normal
from .base import Guidance, GuidanceStep, Prompts
from .perp_neg import predict_guided_terms


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
        terms = predict_guided_terms(self.denoiser, z, t, prompts, extra=(prompts.neg,), extra_rows=(high,))
        (eps_neg,) = terms.extra
        delta_d = terms.eps_uncond.clone()
        delta_d[high.to(x.device)] = terms.eps_uncond[high.to(x.device)] - eps_neg
        grad = self.weight(t, x) * (delta_d + self.settings.guidance_scale * terms.delta)
        return GuidanceStep(self.finish(grad), t, model_evals=terms.evals)
