"""bench/sdi_fixed_point.py's own pieces: the power iteration finds a known eigenvalue, and the
probed steps land on the label timesteps the report names."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from sdi_fixed_point import TOTAL_STEPS, dominant_eigenvalue, step_for  # noqa: E402

from nfsd_backend.config import GuidanceConfig, resolve_guidance  # noqa: E402
from nfsd_backend.guidance import make_guidance  # noqa: E402


@pytest.mark.parametrize("eigenvalues", [(4.0, -2.0, 0.5, 1.0), (-6.0, 3.0, 0.2, -1.0)])
def test_power_iteration_finds_the_dominant_eigenvalue_of_a_non_symmetric_map(eigenvalues):
    basis = torch.tensor([[1.0, 0.3, 0.0, 0.2], [0.0, 1.0, 0.5, 0.0], [0.4, 0.0, 1.0, 0.1], [0.0, 0.2, 0.0, 1.0]],
                         dtype=torch.float64)
    matrix = basis @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ torch.linalg.inv(basis)

    def affine(x: torch.Tensor) -> torch.Tensor:
        return (matrix @ x.reshape(-1) + 1.0).reshape(x.shape)

    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    rayleigh, gain = dominant_eigenvalue(affine, x, iterations=80)
    assert rayleigh == pytest.approx(eigenvalues[0], rel=1e-6)
    assert gain == pytest.approx(abs(eigenvalues[0]), rel=1e-6)


class ScheduleOnly:
    """SDI's schedule needs only the length of the noise schedule."""

    alphas_cumprod = torch.linspace(0.9999, 0.005, 1000)


@pytest.mark.parametrize("t", [980, 900, 600, 300, 251])
def test_step_for_lands_on_the_label_timestep(t):
    settings = resolve_guidance(GuidanceConfig(method="sdi"))
    guidance = make_guidance("sdi", ScheduleOnly(), **settings.settings())
    assert guidance.timestep(step_for(t, settings, 1000), TOTAL_STEPS) == t
