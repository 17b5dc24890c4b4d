"""The pure-torch hash grid against a direct per-corner reference, and the backend choice."""

import itertools

import pytest
import torch

from nfsd_backend.errors import CudaUnavailable
from nfsd_backend.nerf.hashgrid import HashGridConfig, TorchHashGrid, level_resolutions, make_encoding

# A grid small enough to loop over in Python, with dense and hashed levels and coordinates large
# enough (finest level 2048 cells) that the int32 hash products overflow.
SMALL = HashGridConfig(levels=6, features_per_level=2, log2_table_size=12, base_resolution=4,
                       finest_resolution=2048)


def reference_encoding(grid: TorchHashGrid, points: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Loop over points, levels and the 8 cell corners; exact 64-bit hashing with Python integers."""
    config = grid.config
    table_size = 2 ** config.log2_table_size
    primes = (1, 2654435761, 805459861)
    rows, weights = [], []  # per point: levels x 8 table rows and trilinear weights
    for point in points.tolist():
        offset = 0
        for resolution in level_resolutions(config):
            vertices_per_axis = resolution + 1
            dense = vertices_per_axis ** 3 <= table_size
            position = [(coordinate / grid.bound + 1) / 2 * resolution for coordinate in point]
            cell = [min(int(p // 1), resolution - 1) for p in position]
            frac = [p - c for p, c in zip(position, cell)]
            for corner in itertools.product((0, 1), repeat=3):
                vertex = [c + o for c, o in zip(cell, corner)]
                if dense:
                    row = vertex[0] + vertex[1] * vertices_per_axis + vertex[2] * vertices_per_axis ** 2
                else:
                    row = ((vertex[0] * primes[0]) ^ (vertex[1] * primes[1]) ^ (vertex[2] * primes[2])) % table_size
                weight = 1.0
                for f, o in zip(frac, corner):
                    weight *= f if o else 1.0 - f
                rows.append(offset + row)
                weights.append(weight)
            offset += vertices_per_axis ** 3 if dense else table_size
    n, levels = points.shape[0], config.levels
    rows_t = torch.tensor(rows).reshape(n, levels, 8)
    weights_t = torch.tensor(weights, dtype=table.dtype).reshape(n, levels, 8, 1)
    return (table[rows_t] * weights_t).sum(dim=2).reshape(n, -1)


def test_level_resolutions_follow_the_growth_factor():
    default = HashGridConfig()
    assert default.growth == pytest.approx(1.4473, abs=1e-4)
    resolutions = level_resolutions(default)
    assert resolutions[0] == 16 and resolutions[-1] == 4096
    assert len(resolutions) == 16 and resolutions == sorted(resolutions)


def test_dense_levels_are_those_that_fit_the_table():
    grid = TorchHashGrid(HashGridConfig(), bound=1.0)
    # 16, 23, 33, 48, 70 cells: (70+1)^3 = 357911 <= 2^19; (101+1)^3 does not fit.
    assert level_resolutions(HashGridConfig())[:6] == [16, 23, 33, 48, 70, 101]
    assert grid.dense_levels == 5
    assert grid.table.shape == (sum((r + 1) ** 3 for r in (16, 23, 33, 48, 70)) + 11 * 2 ** 19, 2)
    assert grid.table.abs().max() <= 1e-4


def test_matches_the_per_corner_reference_on_random_points():
    generator = torch.Generator().manual_seed(0)
    # float64 throughout, so that any difference is a wrong row or weight, not rounding.
    grid = TorchHashGrid(SMALL, bound=1.5, generator=generator).double()
    with torch.no_grad():  # features of order 1, so a wrong row or weight shows clearly
        grid.table.uniform_(-1, 1, generator=generator)
    points = (torch.rand(200, 3, generator=generator, dtype=torch.float64) * 2 - 1) * 1.5
    points[:3] = torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5], [1.5, -1.5, 0.0]])  # box faces
    encoded = grid(points)
    assert encoded.shape == (200, SMALL.levels * SMALL.features_per_level)
    table = grid.table.detach().clone().requires_grad_(True)
    expected = reference_encoding(grid, points, table)
    assert torch.allclose(encoded, expected, atol=1e-12)

    # Gradients reach the table, as in the reference (the encoding is linear in the table).
    mix = torch.randn(encoded.shape, generator=generator, dtype=torch.float64)
    (encoded * mix).sum().backward()
    (expected * mix).sum().backward()
    assert torch.allclose(grid.table.grad, table.grad, atol=1e-12)
    assert (grid.table.grad != 0).any(dim=1).sum() > 200


def test_int32_hashing_equals_64_bit_hashing():
    generator = torch.Generator().manual_seed(1)
    vertices = torch.randint(0, 2 ** 20, (100_000, 3), generator=generator)
    table_size = 2 ** 19
    exact = (vertices[:, 0] * 1) ^ (vertices[:, 1] * 2654435761) ^ (vertices[:, 2] * 805459861)
    exact = exact % table_size
    v32 = vertices.to(torch.int32)
    wrapped = v32[:, 0] ^ (v32[:, 1] * (2654435761 - 2 ** 32)) ^ (v32[:, 2] * 805459861)
    assert torch.equal((wrapped & (table_size - 1)).long(), exact)
    # The products really do overflow int32 here, so the test is not vacuous.
    assert (vertices[:, 1] * 2654435761 >= 2 ** 31).any()


def test_gradients_reach_the_points():
    generator = torch.Generator().manual_seed(2)
    grid = TorchHashGrid(SMALL, bound=1.0, generator=generator).double()
    with torch.no_grad():
        grid.table.uniform_(-1, 1, generator=generator)
    points = (torch.rand(8, 3, generator=generator, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    # The hand-written backward against numerical derivatives (trilinear: smooth inside a cell).
    assert torch.autograd.gradcheck(grid, (points,), eps=1e-7)


def test_make_encoding_on_cpu_is_the_torch_grid():
    assert isinstance(make_encoding(SMALL, bound=1.0, device="cpu"), TorchHashGrid)
    with pytest.raises(CudaUnavailable, match="tcnn was requested"):
        make_encoding(HashGridConfig(backend="tcnn"), bound=1.0, device="cpu")


def test_no_points_give_no_features_and_a_zero_gradient():
    # A render chunk whose rays all miss the box or cross only empty cells asks for no points.
    grid = TorchHashGrid(SMALL, bound=1.0, generator=torch.Generator().manual_seed(0))
    features = grid(torch.zeros(0, 3))
    assert features.shape == (0, SMALL.output_dim)
    features.sum().backward()
    assert torch.equal(grid.table.grad, torch.zeros_like(grid.table))
