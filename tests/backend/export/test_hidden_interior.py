"""`hidden_interior` works in place, a slice at a time, to keep its memory near two grids; this pins
it to a plain ray-by-ray statement of what it computes, on random grids."""

from __future__ import annotations

import numpy as np
import pytest

from nfsd_backend.export.mesh import VISIBLE_TRANSMITTANCE, empty_density, hidden_interior

BOUND = 1.0


def reference_hidden_interior(grid: np.ndarray, bound: float) -> np.ndarray:
    """March along every axis-aligned ray, from each end, summing the excess density voxel by voxel;
    a voxel is seen when the optical depth up to its centre (the voxels before it, and half of
    itself) lets more than VISIBLE_TRANSMITTANCE through. The float32 operations are the same, in
    the same order, as the implementation's, so the two can be compared exactly."""
    n = grid.shape[0]
    step = 2.0 * bound / (n - 1)
    excess = np.clip(grid - empty_density(grid), 0.0, None)
    visible = np.zeros(grid.shape, dtype=bool)
    for axis in range(3):
        rays = np.moveaxis(excess, axis, -1)  # rays[..., k]: the k-th voxel of every ray along `axis`
        seen = np.moveaxis(visible, axis, -1)  # a view: writing to it writes to `visible`
        for order in (range(n), range(n - 1, -1, -1)):
            through = np.zeros(rays.shape[:-1], dtype=grid.dtype)  # the voxels so far, this one included
            for k in order:
                through = through + rays[..., k]
                depth = (through - 0.5 * rays[..., k]) * step
                seen[..., k] |= depth < -np.log(VISIBLE_TRANSMITTANCE)
    return ~visible


def random_grid(seed: int, n: int) -> np.ndarray:
    """Noise everywhere (some of it below empty space's level, some above) and an off-centre ball of
    random dense voxels, dense enough that its core is hidden but not its rim."""
    rng = np.random.default_rng(seed)
    grid = rng.lognormal(0.0, 1.0, (n, n, n)).astype(np.float32)
    axis = np.linspace(-1.0, 1.0, n)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    ball = (x - 0.2) ** 2 + (y + 0.1) ** 2 + z ** 2 < 0.55 ** 2
    grid[ball] += rng.uniform(0.0, 40.0, int(ball.sum())).astype(np.float32)
    return grid


@pytest.mark.parametrize(("seed", "n"), [(0, 32), (1, 37), (2, 48)])
def test_hidden_interior_equals_the_ray_by_ray_reference(seed, n):
    grid = random_grid(seed, n)
    before = grid.copy()
    expected = reference_hidden_interior(grid, BOUND)
    # Not a vacuous comparison: some voxels are hidden, most are not.
    assert 0 < expected.sum() < expected.size // 2
    hidden = hidden_interior(grid, BOUND)
    assert hidden.dtype == bool and hidden.shape == grid.shape
    np.testing.assert_array_equal(hidden, expected)
    np.testing.assert_array_equal(grid, before)  # the input is left alone
