"""Analytic fields whose surface and colours are known exactly: the exporter's tests and benchmark,
and any check that wants a ground truth, use them in place of a trained NeRF.

Each shape is a signed distance (negative inside) turned into a NeRF-like density: `peak_density`
deep inside, ~0 outside, with a smooth step `softness` wide across the surface, so the surface is
the level set at half the peak.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class AnalyticField:
    """Base class: subclasses give `signed_distance`, `albedo`, `sample_surface` and `bounds`."""

    def __init__(self, peak_density: float = 50.0, softness: float = 0.01):
        self.peak_density = peak_density  # density deep inside, in the renderer's units (1/length)
        self.softness = softness  # width of the density step across the surface, field units

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return self.peak_density * torch.sigmoid(-self.signed_distance(points) / self.softness)

    def signed_distance(self, points: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample_surface(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """[count,3] points exactly on the surface."""
        raise NotImplementedError

    def bounds(self) -> np.ndarray:
        """[2,3] the exact axis-aligned bounding box of the surface (min row, max row)."""
        raise NotImplementedError


def _unit_vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    """Directions uniform on the sphere."""
    v = rng.normal(size=(count, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class Sphere(AnalyticField):
    """A sphere whose colour turns smoothly with the direction from its centre, so every UV seam
    crosses a colour gradient."""

    def __init__(self, radius: float = 0.6, center: tuple[float, float, float] = (0.0, 0.0, 0.05), **kwargs):
        super().__init__(**kwargs)
        self.radius = radius
        self.center = np.asarray(center, dtype=np.float64)

    def signed_distance(self, points: torch.Tensor) -> torch.Tensor:
        center = torch.as_tensor(self.center, dtype=points.dtype, device=points.device)
        return torch.linalg.vector_norm(points - center, dim=-1) - self.radius

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        center = torch.as_tensor(self.center, dtype=points.dtype, device=points.device)
        direction = torch.nn.functional.normalize(points - center, dim=-1)
        return 0.5 + 0.4 * direction

    def sample_surface(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return self.center + self.radius * _unit_vectors(count, rng)

    def bounds(self) -> np.ndarray:
        return np.stack((self.center - self.radius, self.center + self.radius))


class Torus(AnalyticField):
    """A torus around the Z axis; colour varies around the ring and around the tube."""

    def __init__(self, major_radius: float = 0.55, minor_radius: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.major_radius = major_radius
        self.minor_radius = minor_radius

    def _ring_offset(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(distance from the ring in the XY plane, height): the point in the tube's cross-section."""
        return torch.hypot(points[:, 0], points[:, 1]) - self.major_radius, points[:, 2]

    def signed_distance(self, points: torch.Tensor) -> torch.Tensor:
        radial, height = self._ring_offset(points)
        return torch.hypot(radial, height) - self.minor_radius

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        around_ring = torch.atan2(points[:, 1], points[:, 0])
        radial, height = self._ring_offset(points)
        around_tube = torch.atan2(height, radial)
        return torch.stack((0.5 + 0.4 * torch.cos(around_ring), 0.5 + 0.4 * torch.sin(around_ring),
                            0.5 + 0.4 * torch.cos(around_tube)), dim=-1)

    def sample_surface(self, count: int, rng: np.random.Generator) -> np.ndarray:
        # The area element is proportional to R + r cos(tube angle): rejection-sample that angle.
        big, small = self.major_radius, self.minor_radius
        tube = np.empty(0)
        while len(tube) < count:
            candidates = rng.uniform(-math.pi, math.pi, size=2 * count)
            keep = rng.uniform(0.0, big + small, size=2 * count) < big + small * np.cos(candidates)
            tube = np.concatenate((tube, candidates[keep]))
        tube = tube[:count]
        ring = rng.uniform(-math.pi, math.pi, size=count)
        radial = big + small * np.cos(tube)
        return np.stack((radial * np.cos(ring), radial * np.sin(ring), small * np.sin(tube)), axis=-1)

    def bounds(self) -> np.ndarray:
        reach = self.major_radius + self.minor_radius
        return np.array([[-reach, -reach, -self.minor_radius], [reach, reach, self.minor_radius]])


class TwoColourEllipsoid(AnalyticField):
    """An ellipsoid with three different semi-axes, set off the origin, red above its centre and
    blue below: its extents and colours tell every axis, its up and its front apart."""

    RED = (0.9, 0.1, 0.1)
    BLUE = (0.1, 0.2, 0.9)

    def __init__(self, semi_axes: tuple[float, float, float] = (0.5, 0.3, 0.7),
                 center: tuple[float, float, float] = (0.0, -0.1, 0.1), **kwargs):
        super().__init__(**kwargs)
        self.semi_axes = np.asarray(semi_axes, dtype=np.float64)
        self.center = np.asarray(center, dtype=np.float64)

    def signed_distance(self, points: torch.Tensor) -> torch.Tensor:
        # Not a true distance, but exact on the surface and within a factor of the axis ratio
        # nearby: the density step is just wider along the long axes.
        center = torch.as_tensor(self.center, dtype=points.dtype, device=points.device)
        axes = torch.as_tensor(self.semi_axes, dtype=points.dtype, device=points.device)
        scaled = torch.linalg.vector_norm((points - center) / axes, dim=-1)
        return (scaled - 1.0) * float(self.semi_axes.min())

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        red = torch.tensor(self.RED, dtype=points.dtype, device=points.device)
        blue = torch.tensor(self.BLUE, dtype=points.dtype, device=points.device)
        upper = (points[:, 2:3] > float(self.center[2])).to(points.dtype)
        return upper * red + (1.0 - upper) * blue

    def sample_surface(self, count: int, rng: np.random.Generator) -> np.ndarray:
        # Scaled sphere directions: on the surface exactly, denser at the ends of the short axes.
        return self.center + self.semi_axes * _unit_vectors(count, rng)

    def bounds(self) -> np.ndarray:
        return np.stack((self.center - self.semi_axes, self.center + self.semi_axes))
