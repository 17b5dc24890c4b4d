"""Multiresolution hash-grid encoding (Instant-NGP, Mueller et al. 2022).

Each of L levels is a grid of learnable feature vectors over the box [-bound, bound]^3, finer by a
constant factor per level. A point reads the 8 vertices of its cell on every level, blends them
trilinearly and concatenates the levels' features. Coarse levels have fewer vertices than the
table has rows and are stored densely (one row per vertex, no collisions); finer levels hash their
vertices into a table of fixed size and let the MLP resolve the collisions.

Two implementations with one constructor, `make_encoding`: tinycudann's fused CUDA kernel when it
works on the field's device, and `TorchHashGrid`, plain PyTorch, everywhere else. They share the
settings but not the exact vertex layout, so a checkpoint belongs to the implementation that wrote it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..doctor import check_tinycudann
from .backends import accelerator_status, choose_backend

# Instant-NGP's spatial hash: x * 1 XOR y * 2654435761 XOR z * 805459861, modulo the table size.
HASH_PRIMES = (1, 2654435761, 805459861)
# Points whose vertex rows and weights are computed together (see TorchHashGrid.forward).
POINTS_PER_CHUNK = 1 << 14


@dataclass
class HashGridConfig:
    """Shape of the hash-grid encoding (Instant-NGP's defaults, as used by threestudio)."""

    levels: int = 16  # number of grid resolutions
    features_per_level: int = 2  # learned features per vertex; the encoding has levels * this dims
    log2_table_size: int = 19  # rows per hashed level: 2^19
    base_resolution: int = 16  # cells per axis across the whole box on the coarsest level
    # Cells per axis across the whole box on the finest level: 4096 over [-bound, bound] is 2048 per
    # bound length. The per-level growth follows: (4096 / 16)^(1/15) = 1.447.
    finest_resolution: int = 4096
    init_scale: float = 1e-4  # features start uniform in [-init_scale, init_scale]
    backend: str = "auto"  # auto | torch | tcnn; auto = tcnn on CUDA when importable, else torch

    @property
    def growth(self) -> float:
        """Resolution factor between consecutive levels."""
        if self.levels == 1:
            return 1.0
        return (self.finest_resolution / self.base_resolution) ** (1.0 / (self.levels - 1))

    @property
    def output_dim(self) -> int:
        return self.levels * self.features_per_level


def level_resolutions(config: HashGridConfig) -> list[int]:
    """Cells per axis of each level (the level has resolution + 1 vertices per axis)."""
    # The small epsilon keeps 16 * 1.447^15 = 4095.9999... on 4096.
    return [int(math.floor(config.base_resolution * config.growth ** level + 1e-6))
            for level in range(config.levels)]


def _to_int32(value: int) -> int:
    """The int32 with the same low 32 bits (two's complement wrap-around)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


class TorchHashGrid(torch.nn.Module):
    """The hash-grid encoding in plain PyTorch: [N,3] points in [-bound, bound]^3 -> [N, L*F]."""

    resolutions: torch.Tensor  # [L] cells per axis (float, for scaling)
    offsets: torch.Tensor  # [L] first table row of each level
    multipliers: torch.Tensor  # [L,3] int32 per-axis multipliers: dense strides or hash primes

    def __init__(self, config: HashGridConfig, bound: float, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        self.bound = bound
        table_size = 2 ** config.log2_table_size
        resolutions = level_resolutions(config)
        # A level is dense when its vertices fit in the table: one row per vertex, no collisions.
        # Resolutions grow with the level, so the dense levels come first.
        self.dense_levels = sum((r + 1) ** 3 <= table_size for r in resolutions)
        rows = [(r + 1) ** 3 if level < self.dense_levels else table_size
                for level, r in enumerate(resolutions)]
        offsets = [0]
        for count in rows:
            offsets.append(offsets[-1] + count)
        # Per level and axis, the multiplier of the vertex coordinate: the dense strides
        # (1, r+1, (r+1)^2), or the hash primes (as wrapped int32).
        multipliers = [[1, r + 1, (r + 1) ** 2] if level < self.dense_levels else
                       [_to_int32(p) for p in HASH_PRIMES] for level, r in enumerate(resolutions)]
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.float32), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets[:-1]), persistent=False)
        self.register_buffer("multipliers", torch.tensor(multipliers, dtype=torch.int32), persistent=False)
        self.table_size = table_size
        table = torch.empty(offsets[-1], config.features_per_level)
        table.uniform_(-config.init_scale, config.init_scale, generator=generator)
        self.table = torch.nn.Parameter(table)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        n, levels = points.shape[0], self.config.levels
        # The vertex rows and weights take ~20 elementwise passes over [levels, 8, points] tensors.
        # Over a whole render (10^5-10^6 points) each pass streams hundreds of MB through memory;
        # in chunks of POINTS_PER_CHUNK they stay in the CPU's cache (forward 2.3x faster at 10^6
        # points, bench/section_speedups.py). The gather and its backward run once, over all rows.
        parts = [self._vertex_rows_and_weights(points[start:start + POINTS_PER_CHUNK])
                 for start in range(0, max(n, 1), POINTS_PER_CHUNK)]  # one empty chunk for no points
        rows = torch.cat([rows for rows, _ in parts], dim=1).reshape(-1, 8)  # [L*N, 8]
        weights = torch.cat([weights for _, weights in parts], dim=1).reshape(-1, 8)
        # One bag of 8 weighted rows per (level, point).
        blended = _BlendRows.apply(self.table, rows, weights).reshape(levels, n, self.config.features_per_level)
        return blended.permute(1, 0, 2).reshape(n, self.config.output_dim)

    def _vertex_rows_and_weights(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Table rows (int64) and trilinear weights [L, N, 8] of the 8 cell vertices of points [N,3]."""
        # Layout [level, ..., point]: the point axis is innermost, so every elementwise op below
        # runs over long contiguous rows instead of the tiny corner axes.
        n, levels = points.shape[0], self.config.levels
        unit = ((points / self.bound + 1.0) / 2.0).clamp(0.0, 1.0).t()  # [3,N] in [0,1]
        resolution = self.resolutions[:, None, None]
        scaled = unit[None] * resolution  # [L,3,N]
        # The last cell is closed on the far side, so x = 1 lands in it (fraction 1), not past it.
        cell = torch.minimum(scaled.floor(), resolution - 1)
        frac = scaled - cell

        # Per axis, the index terms of the cell's two vertex coordinates [L,3,2,N] (int32: wraps).
        corner = torch.stack([cell, cell + 1], dim=2).to(torch.int32)
        terms = corner * self.multipliers[:, :, None, None]
        tx, ty, tz = terms[:, 0, :, None, None], terms[:, 1, None, :, None], terms[:, 2, None, None, :]
        d = self.dense_levels
        dense_rows = tx[:d] + ty[:d] + tz[:d]  # [L,2,2,2,N]: the vertex's place in the dense array
        hashed_rows = (tx[d:] ^ ty[d:] ^ tz[d:]) & (self.table_size - 1)
        rows = torch.cat([dense_rows, hashed_rows]).reshape(levels, 8, n)
        # int64 rows: what embedding_bag and bincount take.
        rows = rows.long() + self.offsets[:, None, None]

        axis_weights = torch.stack([1.0 - frac, frac], dim=2)  # [L,3,2,N]
        wx, wy, wz = axis_weights[:, 0, :, None, None], axis_weights[:, 1, None, :, None], \
            axis_weights[:, 2, None, None, :]
        weights = (wx * wy * wz).reshape(levels, 8, n)
        return rows.transpose(1, 2), weights.transpose(1, 2)


class _BlendRows(torch.autograd.Function):
    """sum_c weights[b,c] * table[rows[b,c]] -> [B,F], with a hand-written backward.

    The forward is `embedding_bag`, one fused gather; its built-in backward (and that of
    `embedding`) is 5-10x slower on CPU than the weighted bincount below. No double backward: the field
    takes normals by finite differences (see field.py).
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(table, rows, weights)
        return torch.nn.functional.embedding_bag(rows, table, per_sample_weights=weights, mode="sum")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        table, rows, weights = ctx.saved_tensors
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            # Per feature, a weighted bincount: ~1.7x faster on CPU than index_add / scatter_add.
            flat_rows = rows.reshape(-1)
            grad_table = torch.stack([
                torch.bincount(flat_rows, weights=(weights * grad[:, feature, None]).reshape(-1),
                               minlength=table.shape[0])
                for feature in range(table.shape[1])], dim=1).to(table.dtype)
        if ctx.needs_input_grad[2]:
            gathered = table.index_select(0, rows.reshape(-1)).reshape(*rows.shape, -1)
            grad_weights = (gathered * grad[:, None, :]).sum(dim=-1)
        return grad_table, None, grad_weights


class TcnnHashGrid(torch.nn.Module):
    """tinycudann's fused hash-grid encoding (CUDA only), with the same interface as TorchHashGrid."""

    def __init__(self, config: HashGridConfig, bound: float):
        super().__init__()
        import tinycudann

        self.config = config
        self.bound = bound
        self.encoding = tinycudann.Encoding(n_input_dims=3, encoding_config={
            "otype": "HashGrid", "n_levels": config.levels, "n_features_per_level": config.features_per_level,
            "log2_hashmap_size": config.log2_table_size, "base_resolution": config.base_resolution,
            "per_level_scale": config.growth})

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        unit = ((points / self.bound + 1.0) / 2.0).clamp(0.0, 1.0)
        return self.encoding(unit).float()  # tinycudann computes in half precision


def make_encoding(config: HashGridConfig, bound: float, device: torch.device | str = "cpu",
                  generator: torch.Generator | None = None) -> torch.nn.Module:
    """The encoding for `device`: tinycudann when it works there (see `backends.choose_backend`)."""
    status = accelerator_status(check_tinycudann, device)
    if choose_backend(config.backend, "tcnn", device, status) == "tcnn":
        return TcnnHashGrid(config, bound).to(device)
    return TorchHashGrid(config, bound, generator=generator).to(device)
