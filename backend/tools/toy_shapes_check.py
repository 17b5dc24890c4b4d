"""Sampling the `toy-shapes` model, and judging its pictures and meshes: which colour is the
object, which primitive is its silhouette or its solid. Used by the training script (progress
grids), the tests and the method comparison (bench/compare_methods.py)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from nfsd_backend.diffusion import Denoiser, ddim_timesteps, ddim_walk
from toy_shapes_data import COLOURS


@torch.no_grad()
def sample_images(denoiser: Denoiser, cond: torch.Tensor, uncond: torch.Tensor, image_size: int, *,
                  steps: int = 30, guidance_scale: float = 5.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """DDIM samples [B,3,S,S] in [0,1] of a pixel-space model, one per row of `cond` [B,L,D]
    (`uncond` [1,L,D]: the empty caption), with classifier-free guidance."""
    z = torch.randn(len(cond), 3, image_size, image_size, generator=generator)
    z, _ = ddim_walk(denoiser, z, ddim_timesteps(steps)[::-1] + [0], cond, uncond, guidance_scale)
    return ((z + 1) / 2).clamp(0, 1)


# --- judging a picture ---------------------------------------------------------------------------

def background_estimate(image: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """The background [3,H,W] as a colour ramp (a plane per channel) fitted to the border pixels,
    refitted on the border pixels that fit best, so an object touching the border is ignored."""
    _, h, w = image.shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    basis = torch.stack([torch.ones_like(xx), xx, yy], -1)  # [H,W,3]
    border = torch.ones(h, w, dtype=torch.bool)
    border[2:-2, 2:-2] = False
    a, b = basis[border], image.permute(1, 2, 0)[border]  # [N,3], [N,C]
    keep = torch.ones(len(a), dtype=torch.bool)
    for _ in range(iterations):
        coef = torch.linalg.lstsq(a[keep], b[keep]).solution
        residual = (a @ coef - b).norm(dim=-1)
        keep = residual <= residual.quantile(0.6)
    return (basis @ coef).permute(2, 0, 1)


def _largest_component(mask: torch.Tensor) -> torch.Tensor:
    """The largest 8-connected region of `mask` [H,W]."""
    labels = torch.arange(1, mask.numel() + 1, dtype=torch.float32).reshape(mask.shape) * mask
    while True:
        grown = F.max_pool2d(labels[None, None], 3, 1, 1)[0, 0] * mask
        if torch.equal(grown, labels):
            break
        labels = grown
    counts = torch.bincount(labels.long().flatten())
    counts[0] = 0
    return labels.long() == counts.argmax()


def _distance_and_threshold(image: torch.Tensor, floor: float, noise_factor: float) -> tuple[torch.Tensor, float]:
    """Colour distance [H,W] from the fitted background, and the level above which a pixel is
    not background: `floor`, or `noise_factor` times the border's typical distance when grain
    makes that larger."""
    distance = (image - background_estimate(image)).norm(dim=0)
    border = torch.cat([distance[[0, -1]].flatten(), distance[:, [0, -1]].flatten()])
    return distance, max(floor, noise_factor * float(border.median()))


def object_mask(image: torch.Tensor, floor: float = 0.08, noise_factor: float = 4.0) -> torch.Tensor:
    """The object's pixels [H,W]. The object is found as the largest region that stands out from
    the background after a 3x3 smoothing (which quiets the grain of sampled images); its outline is
    then taken from the unsmoothed image, within one pixel of that region."""
    smooth = F.avg_pool2d(image[None], 3, 1, 1, count_include_pad=False)[0]
    distance, threshold = _distance_and_threshold(smooth, floor, noise_factor)
    region = distance > threshold
    if not region.any():
        return region
    distance, threshold = _distance_and_threshold(image, floor, noise_factor)
    return (distance > threshold) & _dilate(_largest_component(region))


def enclosed_background(mask: torch.Tensor) -> torch.Tensor:
    """Background pixels [H,W] that cannot be reached from the image border: holes."""
    free = ~mask
    reach = torch.zeros_like(mask)
    reach[[0, -1], :], reach[:, [0, -1]] = free[[0, -1], :], free[:, [0, -1]]
    while True:
        grown = F.max_pool2d(reach[None, None].float(), 3, 1, 1)[0, 0].bool() & free
        if torch.equal(grown, reach):
            return free & ~reach
        reach = grown


@dataclass
class Silhouette:
    """Measures of an object mask, in its bounding box."""

    aspect: float  # height / width
    fill: float  # mask area / box area
    top_width: float  # mean width of the top quarter of rows / the widest row
    bottom_width: float  # the same for the bottom quarter
    ellipse_overlap: float  # intersection over union with the ellipse inscribed in the box
    hole: int  # enclosed background pixels in the middle half of the box (a torus's hole)


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(mask[None, None].float(), 3, 1, 1)[0, 0].bool()


def _erode(mask: torch.Tensor) -> torch.Tensor:
    return ~_dilate(~mask)


def silhouette(mask: torch.Tensor) -> Silhouette | None:
    """The measures of `mask` [H,W], or None when it is empty.

    Shading can match the background along a thin curve inside the object; closing the mask
    (dilate, erode) mends such cracks, and only holes thicker than that count as holes."""
    closed = _erode(_dilate(mask))
    holes = enclosed_background(closed)
    solid = closed | holes
    ys, xs = torch.nonzero(solid, as_tuple=True)
    if len(ys) == 0:
        return None
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    h, w = y1 - y0, x1 - x0
    box = solid[y0:y1, x0:x1]
    widths = box.sum(1).float()
    quarter = max(1, round(h / 4))
    yy, xx = torch.meshgrid((torch.arange(h) + 0.5) / h * 2 - 1, (torch.arange(w) + 0.5) / w * 2 - 1,
                            indexing="ij")
    ellipse = xx ** 2 + yy ** 2 <= 1
    middle = (xx.abs() <= 0.5) & (yy.abs() <= 0.5)
    return Silhouette(aspect=h / w, fill=float(box.float().mean()),
                      top_width=float(widths[:quarter].mean() / widths.max()),
                      bottom_width=float(widths[-quarter:].mean() / widths.max()),
                      ellipse_overlap=float((ellipse & box).sum() / (ellipse | box).sum()),
                      hole=int((holes[y0:y1, x0:x1] & middle).sum()))


def classify_shape(s: Silhouette | None) -> str | None:
    """Which primitive a silhouette is, from the sides and low elevations the NeRF cameras see
    (from straight above, a sphere, cylinder and cone all look round)."""
    if s is None:
        return None
    if s.hole >= 2 or s.aspect < 0.8:  # a ring, or a ring seen edge-on (flatter than any other)
        return "torus"
    if s.top_width < 0.5 and s.bottom_width > s.top_width + 0.25:  # an apex above a wide base
        return "cone"
    if s.ellipse_overlap > 0.9 and 0.9 < s.aspect < 1.1:
        return "sphere"
    if s.aspect > 1.19:  # taller than any view of the cube
        return "cylinder"
    return "cube"


def _hue_saturation(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hue in degrees and HSV saturation of colours [N,3]."""
    high, low = rgb.max(-1).values, rgb.min(-1).values
    chroma = high - low
    r, g, b = rgb.unbind(-1)
    safe = chroma.clamp(min=1e-6)
    hue = torch.where(high == r, ((g - b) / safe) % 6,
                      torch.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    return hue, chroma / high.clamp(min=1e-6)


REFERENCE_HUES = {name: float(_hue_saturation(torch.tensor([rgb]))[0]) for name, rgb in COLOURS.items()
                  if name != "white"}


def classify_colour(image: torch.Tensor, mask: torch.Tensor, white_saturation: float = 0.3) -> str | None:
    """The colour name of the object in `image` [3,H,W], its pixels `mask` [H,W]."""
    inner = _erode(mask) if _erode(mask).sum() >= 4 else mask
    return colour_name(image.permute(1, 2, 0)[inner], white_saturation=white_saturation)


def colour_name(colours: torch.Tensor, weights: torch.Tensor | None = None,
                white_saturation: float = 0.3) -> str | None:
    """The colour name of colours [N,3] in [0,1] (optionally weighted [N]): white when they are
    unsaturated, otherwise the reference colour nearest to their mean hue (shading scales RGB,
    which keeps the hue)."""
    if len(colours) == 0:
        return None
    weights = torch.ones(len(colours)) if weights is None else weights
    hue, saturation = _hue_saturation(colours)
    if _weighted_median(saturation, weights) < white_saturation:
        return "white"
    angle = torch.deg2rad(hue)
    weight = weights * saturation * colours.max(-1).values
    mean = torch.rad2deg(torch.atan2((weight * angle.sin()).sum(), (weight * angle.cos()).sum())) % 360
    return min(REFERENCE_HUES, key=lambda name: min(abs(mean - REFERENCE_HUES[name]),
                                                    360 - abs(mean - REFERENCE_HUES[name])))


def classify(image: torch.Tensor) -> tuple[str | None, str | None]:
    """(colour, shape) of the object in an image [3,H,W] in [0,1]; None where there is no object."""
    mask = object_mask(image)
    return classify_colour(image, mask), classify_shape(silhouette(mask))


def _weighted_median(values: torch.Tensor, weights: torch.Tensor) -> float:
    order = values.argsort()
    cumulative = weights[order].cumsum(0)
    return float(values[order][torch.searchsorted(cumulative, cumulative[-1] / 2).clamp(max=len(values) - 1)])


def saturation(colours: torch.Tensor, weights: torch.Tensor) -> float:
    """The weighted mean HSV saturation of colours [N,3]: how vivid a texture is."""
    return float((_hue_saturation(colours)[1] * weights).sum() / weights.sum())


# --- judging a mesh ------------------------------------------------------------------------------

@dataclass
class Solid:
    """Measures of an exported mesh, upright along +Y (glTF), rotation about +Y factored out."""

    fill: float  # volume / volume of the smallest upright bounding box (any turn about +Y)
    aspect: float  # height / sqrt(width * depth) of that box
    balance: float  # (height of the volume's centroid - the box's mid height) / height; a cone: -0.25
    genus: int  # handles of the largest solid piece: 1 for a torus, 0 for the others
    colour: str | None  # the texture's colour name, area-weighted over the surface
    saturation: float  # the texture's mean HSV saturation, area-weighted


# Solid primitives of the data set (SIZE_RANGES' middles), for reference: fill, aspect, balance.
#   sphere 0.52 / 1.0 / 0; cube 1.0 / 1.0 / 0; cylinder 0.79 / 1.55 / 0; cone 0.26 / 1.0 / -0.25;
#   torus 0.46 / 0.25 / 0 with genus 1.


def solid_voxels(mesh, cells: int = 48):
    """The solid the mesh bounds, as a boolean voxel grid (about `cells` voxels across its longest
    side) and the voxel size: the largest connected piece, its inside filled.

    A trained field's surface is rarely a clean closed manifold (pores, slivers after decimation):
    voxels one cell wide close them, so volume and topology describe the solid, not the surface's
    defects."""
    import numpy as np
    from scipy import ndimage

    pitch = float(np.max(np.ptp(mesh.vertices, axis=0))) / cells
    surface = mesh.voxelized(pitch).matrix
    solid = ndimage.binary_fill_holes(ndimage.binary_closing(np.pad(surface, 2), iterations=1))
    labels, count = ndimage.label(solid)
    if count > 1:
        solid = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return solid, pitch


def euler_characteristic(solid) -> int:
    """V - E + F - C of the union of closed unit cubes at the True voxels of `solid` [X,Y,Z]."""
    import itertools

    import numpy as np

    occupied = np.pad(solid, 1)

    def covered(offsets) -> int:
        """Lattice elements touched by any voxel at these offsets from the element."""
        union = np.zeros_like(occupied)
        for offset in offsets:
            union |= np.roll(occupied, shift=offset, axis=(0, 1, 2))
        return int(union.sum())

    axes = range(3)
    vertices = covered(list(itertools.product((0, 1), repeat=3)))
    edges = sum(covered([tuple(0 if a == axis else s for a, s in zip(axes, pair))
                         for pair in itertools.product((0, 1), repeat=3)]) for axis in axes)
    faces = sum(covered([tuple(s if a == axis else 0 for a in axes) for s in (0, 1)]) for axis in axes)
    return vertices - edges + faces - int(occupied.sum())


def solid_measures(mesh) -> Solid:
    """The measures of a textured `trimesh.Trimesh` (as `trimesh.load(model.glb, force="mesh")`)."""
    import numpy as np
    import trimesh

    # xatlas splits vertices along UV seams: weld by position to see the closed surface.
    welded = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    welded.merge_vertices(merge_tex=True, merge_norm=True)
    solid, pitch = solid_voxels(welded)
    points = np.argwhere(solid) * pitch  # voxel centres (up to a shift)

    best = None
    for degrees in range(0, 90, 3):
        angle = np.deg2rad(degrees)
        x = points[:, 0] * np.cos(angle) - points[:, 2] * np.sin(angle)
        z = points[:, 0] * np.sin(angle) + points[:, 2] * np.cos(angle)
        width, depth = np.ptp(x) + pitch, np.ptp(z) + pitch
        if best is None or width * depth < best[0] * best[1]:
            best = (width, depth)
    width, depth = best
    low, high = points[:, 1].min() - pitch / 2, points[:, 1].max() + pitch / 2
    height = high - low

    # The texture's colour per vertex (sampled at its UV), weighted by the vertex's share of area.
    colours = torch.as_tensor(np.asarray(mesh.visual.to_color().vertex_colors)[:, :3] / 255.0, dtype=torch.float32)
    area = np.zeros(len(mesh.vertices))
    np.add.at(area, mesh.faces.reshape(-1), np.repeat(mesh.area_faces / 3, 3))
    weights = torch.as_tensor(area, dtype=torch.float32)
    return Solid(fill=float(len(points) * pitch ** 3 / (width * depth * height)),
                 aspect=float(height / np.sqrt(width * depth)),
                 balance=float((points[:, 1].mean() - (low + high) / 2) / height),
                 genus=1 - euler_characteristic(solid),
                 colour=colour_name(colours, weights), saturation=saturation(colours, weights))


def classify_solid(s: Solid) -> str:
    """Which primitive a solid is. Thresholds sit between the primitives' own measures, leaving
    room for the rounding of a NeRF: a ring is a torus even when its hole closed (it stays flat)."""
    if s.genus >= 1 or s.aspect < 0.55:  # a handle, or flat as a ring
        return "torus"
    if s.balance < -0.12 or s.fill < 0.36:  # most volume low, or a pointed solid
        return "cone"
    if s.aspect > 1.3:  # taller than wide
        return "cylinder"
    if s.fill > 0.78:  # fills its box: flat faces
        return "cube"
    return "sphere"
