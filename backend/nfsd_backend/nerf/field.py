"""The radiance field being optimised: density and albedo over the box [-bound, bound]^3, and the
learned environment behind it.

`NerfField` is the exporter's `Field` (`density`, `albedo`) and what the renderer draws
(`density_and_albedo`, `normals`). Its density starts as Magic3D's object-centric blob, so the
first renders already show a centred object for the guidance to shape rather than empty space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..errors import BadConfig
from .hashgrid import HashGridConfig, make_encoding

DENSITY_ACTIVATIONS = ("softplus", "exp")


@dataclass
class FieldConfig:
    """The field's shape and its initial density."""

    bound: float = 1.0  # the field covers [-bound, bound]^3 (the renderer's box, the exporter's grid)
    encoding: HashGridConfig = field(default_factory=HashGridConfig)
    mlp_width: int = 64  # hidden units of the MLP shared by the density and albedo heads
    mlp_depth: int = 2  # hidden layers of that MLP
    density_activation: str = "softplus"  # softplus | exp: maps the raw output plus the blob to density
    blob_density: float = 10.0  # raw density added at the centre: blob_density * (1 - |x| / blob_radius)
    blob_radius: float = 0.5  # where the blob's added raw density crosses zero (field units)
    normal_eps: float = 0.01  # finite-difference step of the density-gradient normals (field units)


def validate_field_config(config: FieldConfig) -> None:
    """Refuse settings the field cannot use, with a message that names the setting."""
    if config.density_activation not in DENSITY_ACTIVATIONS:
        raise BadConfig(f"unknown train.field.density_activation {config.density_activation!r}; "
                        f"choose one of: {', '.join(DENSITY_ACTIVATIONS)}.")
    if config.bound <= 0 or config.blob_radius <= 0 or config.normal_eps <= 0:
        raise BadConfig("train.field.bound, blob_radius and normal_eps must be positive.")
    if not 1 <= config.mlp_width <= 1024 or not 0 <= config.mlp_depth <= 16:
        raise BadConfig("train.field.mlp_width must be in 1..1024 and mlp_depth in 0..16.")
    grid = config.encoding
    # 2^24 rows x 32 levels x 8 features in float32 is already 16 GiB before Adam's two copies.
    if not 1 <= grid.levels <= 32 or not 1 <= grid.features_per_level <= 8 or not 4 <= grid.log2_table_size <= 24 or \
            not 1 <= grid.base_resolution <= grid.finest_resolution:
        raise BadConfig("train.field.encoding needs levels in 1..32, features_per_level in 1..8, log2_table_size in "
                        "4..24 and 1 <= base_resolution <= finest_resolution.")
    if grid.backend not in ("auto", "torch", "tcnn"):
        raise BadConfig(f"unknown train.field.encoding.backend {grid.backend!r}; choose one of: auto, torch, tcnn.")


def _linear(inputs: int, outputs: int, generator: torch.Generator | None) -> torch.nn.Linear:
    """nn.Linear with its usual uniform(+-1/sqrt(fan_in)) init, drawn from `generator`."""
    layer = torch.nn.Linear(inputs, outputs)
    limit = 1.0 / math.sqrt(inputs)
    with torch.no_grad():
        layer.weight.uniform_(-limit, limit, generator=generator)
        layer.bias.uniform_(-limit, limit, generator=generator)
    return layer


def _mlp(inputs: int, width: int, depth: int, generator: torch.Generator | None) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for index in range(depth):
        layers += [_linear(inputs if index == 0 else width, width, generator), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers)


class NerfField(torch.nn.Module):
    """Hash-grid encoding -> shared MLP -> density head (1) and albedo head (3, sigmoid)."""

    def __init__(self, config: FieldConfig | None = None, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.config = config = config or FieldConfig()
        validate_field_config(config)
        self.encoding = make_encoding(config.encoding, config.bound, device=device, generator=generator)
        encoded = config.encoding.output_dim
        self.mlp = _mlp(encoded, config.mlp_width, config.mlp_depth, generator)
        hidden = config.mlp_width if config.mlp_depth > 0 else encoded
        self.density_head = _linear(hidden, 1, generator)
        self.albedo_head = _linear(hidden, 3, generator)
        self.to(device)

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """The encoding's table and the MLPs, for separate optimiser settings."""
        mlps = [*self.mlp.parameters(), *self.density_head.parameters(), *self.albedo_head.parameters()]
        return {"encoding": list(self.encoding.parameters()), "mlp": mlps}

    def blob(self, points: torch.Tensor) -> torch.Tensor:
        """Magic3D's object-centric raw-density bias [N]: positive inside blob_radius, negative outside."""
        radius = points.norm(dim=-1)
        return self.config.blob_density * (1.0 - radius / self.config.blob_radius)

    def _activate(self, raw: torch.Tensor) -> torch.Tensor:
        if self.config.density_activation == "exp":
            return torch.exp(raw)
        return torch.nn.functional.softplus(raw)

    def density_and_albedo(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N,3] -> density [N] >= 0 and albedo [N,3] in [0,1], from one pass through the MLP."""
        hidden = self.mlp(self.encoding(points))
        density = self._activate(self.density_head(hidden)[:, 0] + self.blob(points))
        return density, torch.sigmoid(self.albedo_head(hidden))

    # The exporter's `Field` interface. The unused head costs one tiny matrix product.
    def density(self, points: torch.Tensor) -> torch.Tensor:
        return self.density_and_albedo(points)[0]

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        return self.density_and_albedo(points)[1]

    def normals(self, points: torch.Tensor, density: torch.Tensor | None = None) -> torch.Tensor:
        """Outward unit normals [N,3]: minus the normalised density gradient (see `density_normals`)."""
        return density_normals(self.density, points, self.config.normal_eps, density)


def density_normals(density_fn, points: torch.Tensor, eps: float,
                    density: torch.Tensor | None = None) -> torch.Tensor:
    """Outward unit normals -grad(density) / |grad(density)| by forward differences of step `eps`.

    Finite differences rather than autograd: they need no second derivatives, which
    tinycudann's fused MLPs do not provide and which would double the pure-torch backward;
    they cost 3 density evaluations when the density at `points` is passed in (the renderer
    has it); and a step of about a fine cell averages the hash grid's piecewise-constant
    trilinear gradient into a smoother normal. They stay differentiable, so diffuse shading
    trains the geometry.
    """
    if density is None:
        density = density_fn(points)
    offsets = torch.eye(3, device=points.device, dtype=points.dtype) * eps  # [3,3]
    shifted = density_fn((points[:, None, :] + offsets[None]).reshape(-1, 3)).reshape(-1, 3)
    gradient = (shifted - density[:, None]) / eps
    return -torch.nn.functional.normalize(gradient, dim=-1, eps=1e-12)


class EnvironmentBackground(torch.nn.Module):
    """A small MLP from the ray direction to an RGB colour in [0,1]: the learned environment map.

    Directions go through a few low sine/cosine frequencies, so the background can vary smoothly
    across the sky but cannot draw detailed scenery that would compete with the object.
    """

    def __init__(self, frequencies: int = 3, width: int = 32, depth: int = 2,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.frequencies = frequencies
        inputs = 3 + 6 * frequencies
        self.mlp = _mlp(inputs, width, depth, generator)
        self.head = _linear(width if depth > 0 else inputs, 3, generator)

    def forward(self, directions: torch.Tensor) -> torch.Tensor:
        """[N,3] unit directions -> [N,3] colours."""
        scales = 2.0 ** torch.arange(self.frequencies, device=directions.device, dtype=directions.dtype)
        angles = (directions[:, None, :] * scales[:, None] * math.pi).reshape(directions.shape[0], -1)
        features = torch.cat([directions, torch.sin(angles), torch.cos(angles)], dim=-1)
        return torch.sigmoid(self.head(self.mlp(features)))
