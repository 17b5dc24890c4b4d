"""Analytic fields for the renderer tests: density and albedo given as formulas."""

import pytest
import torch

from nfsd_backend.nerf.field import density_normals


class AnalyticField:
    """A field from two formulas; normals by the same finite differences as NerfField."""

    def __init__(self, density_fn, albedo_fn, normal_eps: float = 1e-3):
        self.density_fn, self.albedo_fn, self.normal_eps = density_fn, albedo_fn, normal_eps
        self.queried_points = 0

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return self.density_fn(points)

    def density_and_albedo(self, points: torch.Tensor):
        self.queried_points += points.shape[0]
        return self.density_fn(points), self.albedo_fn(points)

    def normals(self, points: torch.Tensor, density=None) -> torch.Tensor:
        return density_normals(self.density_fn, points, self.normal_eps, density)


def smooth_ball(center, radius: float, peak: float, softness: float):
    """Density `peak` inside the ball, falling to 0 across a shell of width ~`softness`."""
    center = torch.tensor(center)

    def density(points: torch.Tensor) -> torch.Tensor:
        distance = (points - center).norm(dim=-1)
        return peak * torch.sigmoid((radius - distance) / softness)

    return density


@pytest.fixture
def analytic_field():
    return AnalyticField


@pytest.fixture
def ball_density():
    return smooth_ball
