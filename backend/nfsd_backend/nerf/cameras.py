"""Cameras orbiting the object, and the view-dependent prompt suffixes.

World frame: +Z is up (the field's up axis, which the exporter turns into glTF +Y, so that
Blender shows the object upright). Azimuth 0 looks at the object's front from -Y, as Blender's
Front view does; azimuth 90 looks from +X (Blender's Right view). Cameras use the OpenGL
convention: they look down their local -Z with +Y up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..errors import BadConfig


@dataclass
class CameraRanges:
    """Ranges cameras are drawn from during training (threestudio's DreamFusion defaults)."""

    azimuth_deg: tuple[float, float] = (-180.0, 180.0)  # around +Z, 0 = front (-Y)
    elevation_deg: tuple[float, float] = (-10.0, 45.0)  # above the XY plane
    distance: tuple[float, float] = (1.5, 2.0)  # from the origin, in field units
    fovy_deg: tuple[float, float] = (40.0, 70.0)  # vertical field of view


@dataclass
class Cameras:
    """A batch of B pinhole cameras looking at the origin."""

    c2w: torch.Tensor  # [B,4,4] camera-to-world
    fovy: torch.Tensor  # [B] vertical field of view, radians
    azimuth_deg: torch.Tensor  # [B]
    elevation_deg: torch.Tensor  # [B]
    distance: torch.Tensor  # [B]

    def __len__(self) -> int:
        return self.c2w.shape[0]

    @property
    def positions(self) -> torch.Tensor:
        return self.c2w[:, :3, 3]

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))

    def __getitem__(self, index: slice | torch.Tensor) -> "Cameras":
        """The cameras picked by a slice or an index tensor, as a batch."""
        return Cameras(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


def orbit_cameras(azimuth_deg, elevation_deg, distance, fovy_deg) -> Cameras:
    """Cameras at the given spherical positions (each argument a float or a [B] tensor)."""
    az, el, dist, fovy = (torch.as_tensor(v, dtype=torch.float32) for v in
                          (azimuth_deg, elevation_deg, distance, fovy_deg))
    az, el, dist, fovy = torch.broadcast_tensors(az.reshape(-1), el.reshape(-1), dist.reshape(-1),
                                                 fovy.reshape(-1))
    a, e = torch.deg2rad(az), torch.deg2rad(el)
    position = torch.stack([torch.cos(e) * torch.sin(a), -torch.cos(e) * torch.cos(a), torch.sin(e)], -1)
    position = position * dist[:, None]
    forward = torch.nn.functional.normalize(-position, dim=-1)
    world_up = torch.tensor([0.0, 0.0, 1.0]).expand_as(forward)
    right = torch.cross(forward, world_up, dim=-1)
    # Straight above or below, the world's up is parallel to the view: +X is the right vector.
    degenerate = right.norm(dim=-1) < 1e-6
    right[degenerate] = torch.tensor([1.0, 0.0, 0.0])
    right = torch.nn.functional.normalize(right, dim=-1)
    up = torch.cross(right, forward, dim=-1)
    c2w = torch.eye(4).repeat(len(az), 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, up, -forward, position
    return Cameras(c2w=c2w, fovy=torch.deg2rad(fovy), azimuth_deg=az, elevation_deg=el, distance=dist)


def validate_camera_ranges(ranges: CameraRanges) -> None:
    """Refuse ranges no camera can be drawn from, naming the setting."""
    limits = {"azimuth_deg": (-360.0, 360.0), "elevation_deg": (-90.0, 90.0), "distance": (0.0, float("inf")),
              "fovy_deg": (0.0, 180.0)}
    for name, (lowest, highest) in limits.items():
        lo, hi = getattr(ranges, name)
        if not lowest <= lo <= hi <= highest or (name in ("distance", "fovy_deg") and lo == 0.0):
            raise BadConfig(f"train.cameras.{name} must be [low, high] with low <= high, within "
                            f"{'(' if name in ('distance', 'fovy_deg') else '['}{lowest:g}, {highest:g}], "
                            f"got {[lo, hi]}.")


def sample_cameras(batch: int, ranges: CameraRanges, generator: torch.Generator | None = None) -> Cameras:
    """Random cameras within `ranges`, drawn only from `generator` (CPU) so a seed fixes them."""
    u = torch.rand(batch, 4, generator=generator)

    def lerp(bounds: tuple[float, float], col: int) -> torch.Tensor:
        return bounds[0] + (bounds[1] - bounds[0]) * u[:, col]

    return orbit_cameras(lerp(ranges.azimuth_deg, 0), lerp(ranges.elevation_deg, 1),
                         lerp(ranges.distance, 2), lerp(ranges.fovy_deg, 3))


def preview_cameras(distance: float = 2.0, fovy_deg: float = 50.0, elevation_deg: float = 15.0) -> Cameras:
    """The fixed preview set: front, right, back, left (the first is the front view)."""
    return orbit_cameras(torch.tensor([0.0, 90.0, 180.0, 270.0]), elevation_deg, distance, fovy_deg)


def generate_rays(cameras: Cameras, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and unit directions [B,H,W,3] through pixel centres, row 0 at the top."""
    device = cameras.c2w.device
    j = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    i = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    jj, ii = torch.meshgrid(j, i, indexing="ij")
    tan_half = torch.tan(cameras.fovy / 2)[:, None, None]
    aspect = width / height
    x = (2 * ii - 1) * tan_half * aspect
    y = (1 - 2 * jj) * tan_half
    dirs_cam = torch.stack([x, y, -torch.ones_like(x)], -1)  # [B,H,W,3]
    dirs = torch.einsum("bij,bhwj->bhwi", cameras.c2w[:, :3, :3], dirs_cam)
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    origins = cameras.positions[:, None, None, :].expand_as(dirs)
    return origins, dirs


def view_suffix(azimuth_deg: float, elevation_deg: float) -> str:
    """The view-dependent prompt suffix of ALGORITHMS.md for one camera."""
    if elevation_deg > 60.0:
        return ", overhead view"
    az = (azimuth_deg + 180.0) % 360.0 - 180.0  # to [-180, 180)
    if abs(az) <= 45.0:
        return ", front view"
    if abs(az) >= 135.0:
        return ", back view"
    return ", side view"


VIEW_SUFFIXES = (", front view", ", side view", ", back view", ", overhead view")
