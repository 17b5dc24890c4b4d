"""The exporter's only view of a field: `density` and `albedo` of points, evaluated in chunks on the
field's own device with autograd off."""

from __future__ import annotations

import contextlib
from typing import Iterator, Protocol

import numpy as np
import torch

from ..errors import NonFinite

# Points per field call: 2^18 points keep a NeRF MLP's activations to a few hundred MB while
# amortising the call overhead; the grid itself is the only resolution^3 buffer.
CHUNK_POINTS = 1 << 18


class Field(Protocol):
    """Anything with a density and a base colour over [-bound, bound]^3: a trained NeRF or an
    analytic shape. Coordinates are +Z up, the object's front faces -Y."""

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """[N,3] points -> [N] densities >= 0 (per unit length, as the renderer integrates them)."""
        ...

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        """[N,3] points -> [N,3] base colours in [0,1]."""
        ...


def field_device(field: Field) -> torch.device:
    """Where the field's parameters (or buffers) live; CPU for plain objects without any."""
    if isinstance(field, torch.nn.Module):
        for tensor in (*field.parameters(), *field.buffers()):
            return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def evaluating(field: Field) -> Iterator[None]:
    """No autograd, and a torch module in eval mode (restored afterwards): the exporter reads the
    field as it is, without building graphs or changing what the caller trains."""
    module = field if isinstance(field, torch.nn.Module) and field.training else None
    if module is not None:
        module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if module is not None:
            module.train()


def density_grid(field: Field, bound: float, resolution: int, *,
                 chunk_points: int = CHUNK_POINTS) -> np.ndarray:
    """Density at every point of a `resolution`^3 grid over [-bound, bound]^3, as float32 on the CPU,
    indexed [x, y, z]. Points are generated and evaluated chunk by chunk on the field's device, so
    memory beyond the output grid stays bounded by `chunk_points` whatever the resolution."""
    device = field_device(field)
    total = resolution ** 3
    step = 2.0 * bound / (resolution - 1)
    grid = np.empty(total, dtype=np.float32)
    with evaluating(field):
        for start in range(0, total, chunk_points):
            index = torch.arange(start, min(start + chunk_points, total), device=device)
            ijk = torch.stack((index // (resolution * resolution), (index // resolution) % resolution,
                               index % resolution), dim=-1)
            points = ijk.to(torch.float32) * step - bound
            values = field.density(points).reshape(-1).float()
            grid[start:start + len(index)] = values.cpu().numpy()
    check_finite(grid, "density")
    return grid.reshape(resolution, resolution, resolution)


def albedo_at(field: Field, points: np.ndarray, *, chunk_points: int = CHUNK_POINTS) -> np.ndarray:
    """Base colour at [N,3] `points`, evaluated in chunks on the field's device; [N,3] float32 in
    [0,1] on the CPU."""
    device = field_device(field)
    colours = np.empty((len(points), 3), dtype=np.float32)
    with evaluating(field):
        for start in range(0, len(points), chunk_points):
            chunk = torch.from_numpy(np.ascontiguousarray(points[start:start + chunk_points], dtype=np.float32))
            colours[start:start + len(chunk)] = field.albedo(chunk.to(device)).float().cpu().numpy()
    check_finite(colours, "colour")
    return np.clip(colours, 0.0, 1.0)


def check_finite(values: np.ndarray, what: str) -> None:
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise NonFinite(f"the field's {what} is NaN or infinite at {bad} of {values.size} samples; "
                        "the model diverged: resume from an earlier checkpoint or train with a lower "
                        "learning rate.")
