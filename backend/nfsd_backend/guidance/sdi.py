"""Score Distillation via Inversion (Lukoianov et al., NeurIPS 2024).

SDS with its random noise replaced by the noise DDIM inversion of x infers, conditioned on the
prompt, and a deterministic, linearly decaying timestep:
    t   = round(T (t_lo + (t_hi - t_lo)(1 - step / total_steps)))
    z_t = DDIM inversion of x along [0] + [grid points below t] + [t_end],
          t_end = min(t + d, T - 1), d ~ U{0, .., T / n_inv - 1}, CFG scale s_inv (-7.5), eta noise
    k   = (z_t - a_t x) / b_t
    g   = w(t) (eps_s(z_t, t) - k)
With Perp-Neg, both the forward pass's eps_s and every inversion step's eps_{s_inv} use d_C with
the other views' perpendicular parts removed (perp_neg.py), as the SDI authors' code does.
Evaluations per step: (inversion steps + 1) (2 + K) per latent, K = the number of Perp-Neg
negatives (0 without); inversion steps = len(path) - 1, about ceil(t / 100) + 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..diffusion.ddim import ddim_timesteps, ddim_walk_with
from .base import Guidance, GuidanceStep, Prompts
from .perp_neg import guided_prediction


class SDIGuidance(Guidance):
    def timestep(self, step: int, total_steps: int) -> int:
        s = self.settings
        T = self.num_train_timesteps
        t = round(T * (s.sdi_t_lo + (s.sdi_t_hi - s.sdi_t_lo) * (1 - step / total_steps)))
        return min(max(t, 1), T - 1)

    def inversion_path(self, t: int, generator: torch.Generator | None) -> list[int]:
        T = self.num_train_timesteps
        n_inv = self.settings.inversion_steps
        span = T // n_inv
        d = min(int(torch.rand(1, generator=generator).item() * span), span - 1)
        t_end = min(t + d, T - 1)
        return [0] + [k for k in ddim_timesteps(n_inv, T) if k < t] + [t_end]

    def direction(self, x: Tensor, prompts: Prompts, step: int, total_steps: int,
                  generator: torch.Generator | None = None) -> GuidanceStep:
        s = self.settings
        t_label = self.timestep(step, total_steps)
        path = self.inversion_path(t_label, generator)
        x = x.detach()
        z_t, evals = ddim_walk_with(
            self.denoiser.alphas_cumprod, x, path,
            lambda z, t: guided_prediction(self.denoiser, z, t, prompts, s.inversion_guidance_scale),
            eta=s.inversion_eta, generator=generator)
        t = torch.full((x.shape[0],), t_label, dtype=torch.long)  # on the CPU, as the other rules' t
        a, b = self.coefficients(t, x)
        inferred_noise = (z_t - a * x) / b
        eps_guided, forward_evals = guided_prediction(self.denoiser, z_t, t, prompts, s.guidance_scale)
        grad = self.weight(t, x) * (eps_guided - inferred_noise)
        return GuidanceStep(self.finish(grad), t, model_evals=evals + forward_evals)
