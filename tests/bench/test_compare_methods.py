"""bench/compare_methods.py's evaluations per step, computed from a run's timesteps, are the
rules' own counts (with and without Perp-Neg on interpolated views)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from compare_methods import METHOD_SETS, evaluations_per_step  # noqa: E402

from nfsd_backend.config import GuidanceConfig  # noqa: E402
from nfsd_backend.guidance import Prompts, make_guidance  # noqa: E402
from nfsd_backend.guidance.views import ViewPrompts  # noqa: E402

from ..backend.analytic import GaussianDenoiser  # noqa: E402


def camera_prompts(flags: list[str]) -> Prompts:
    """A draft camera's prompts (azimuth 120, elevation 20) under the run's view settings."""
    mu = {s: torch.full((1, 4, 2, 2), float(i), dtype=torch.float64) for i, s in enumerate(
        (", front view", ", side view", ", back view", ", overhead view"))}
    settings = GuidanceConfig(perp_neg="--perp-neg" in flags,
                              view_prompts="interpolate" if "interpolate" in flags else "switch")
    return ViewPrompts(mu, uncond=torch.zeros(1, 4, 2, 2, dtype=torch.float64),
                       neg=torch.ones(1, 4, 2, 2, dtype=torch.float64), settings=settings).for_camera(120.0, 20.0)


@pytest.mark.parametrize("label, flags", METHOD_SETS["perp-neg"])
def test_computed_evaluations_are_the_rules_counts(label, flags):
    method = flags[flags.index("--method") + 1]
    x = torch.zeros(1, 4, 2, 2, dtype=torch.float64)
    for step, t_frac in ((0, 0.15), (5, 0.45), (9, 0.9)):
        settings = {"t_min": t_frac, "t_max": t_frac} if method != "sdi" else {}
        rule = make_guidance(method, GaussianDenoiser(), **settings)
        out = rule.direction(x, camera_prompts(flags), step, 10, torch.Generator().manual_seed(0))
        assert evaluations_per_step(flags, [int(out.timestep[0])]) == out.model_evals, (label, step)
