"""UV atlas and base-colour bake: xatlas charts the mesh, every texel inside a chart gets the field's
albedo at the surface point it maps to, and empty texels take the colour of the nearest baked one so
that filtering and mipmaps never reach black across a seam.

UVs follow the OpenGL convention (v grows upwards; trimesh flips them for glTF): texel row 0 is v = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xatlas
from scipy import ndimage

from .field import Field, albedo_at

# xatlas's chart-boundary straightness term: 0 (default 6). Marching-cubes surfaces have jagged
# edge paths, and with the term on, xatlas cut a sphere into ~250 small charts and took ~3x longer;
# with it off, 30 charts with less area distortion (measured on the analytic sphere and torus).
CHART_STRAIGHTNESS_WEIGHT = 0.0
# Texels between charts in the atlas: room for bilinear filtering before seams would touch.
CHART_PADDING = 2
# Candidate texels handled at once while rasterising (bounds the temporary arrays to ~100 MB).
RASTER_CHUNK = 1 << 21


@dataclass
class UVMesh:
    """A mesh split along its UV seams: each vertex has one position and one UV."""

    vertices: np.ndarray  # [V,3] float64, field coordinates
    normals: np.ndarray  # [V,3] unit vertex normals (taken from the unsplit mesh: no shading seams)
    faces: np.ndarray  # [F,3] int64
    uvs: np.ndarray  # [V,2] float32 in [0,1]


def unwrap(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, texture_size: int) -> UVMesh:
    """Chart and pack the mesh with xatlas for a `texture_size` square texture."""
    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices.astype(np.float32), faces.astype(np.uint32), normals.astype(np.float32))
    pack = xatlas.PackOptions()
    pack.resolution = texture_size
    pack.padding = CHART_PADDING
    pack.bilinear = True
    charts = xatlas.ChartOptions()
    charts.straightness_weight = CHART_STRAIGHTNESS_WEIGHT
    atlas.generate(charts, pack)
    source, split_faces, uvs = atlas[0]
    return UVMesh(vertices[source], normals[source], split_faces.astype(np.int64), uvs)


@dataclass
class Texels:
    """The texels whose centres lie in a triangle of the atlas, with where they sit on it."""

    rows: np.ndarray  # [K] int
    cols: np.ndarray  # [K] int
    faces: np.ndarray  # [K] the triangle holding each texel
    barycentric: np.ndarray  # [K,3] weights of that triangle's corners


def rasterise(uv_mesh: UVMesh, size: int) -> Texels:
    """Every texel centre covered by a triangle in UV space (shared edges count for both sides)."""
    corners = uv_mesh.uvs[uv_mesh.faces].astype(np.float64)  # [F,3,2]
    pixels = np.stack((corners[..., 0] * size, (1.0 - corners[..., 1]) * size), axis=-1)  # x right, y down
    low = np.clip(np.floor(pixels.min(axis=1) - 0.5), 0, size - 1).astype(np.int64)  # [F,2]
    high = np.clip(np.ceil(pixels.max(axis=1) - 0.5), 0, size - 1).astype(np.int64)
    extent = high - low + 1
    counts = extent[:, 0] * extent[:, 1]
    # Cut the faces into runs of about RASTER_CHUNK candidate texels each.
    cumulative = np.cumsum(counts)
    cuts = np.searchsorted(cumulative, np.arange(RASTER_CHUNK, cumulative[-1], RASTER_CHUNK))
    bounds = np.unique(np.concatenate(([0], cuts, [len(counts)])))
    found = [_texels_in(pixels[start:stop], low[start:stop], extent[start:stop], counts[start:stop],
                        face_offset=start) for start, stop in zip(bounds[:-1], bounds[1:])]
    return Texels(*(np.concatenate(parts) for parts in zip(*found)))


def _texels_in(pixels: np.ndarray, low: np.ndarray, extent: np.ndarray, counts: np.ndarray,
               face_offset: int) -> tuple[np.ndarray, ...]:
    """Test every texel centre of each triangle's bounding box; keep those inside the triangle."""
    face = np.repeat(np.arange(len(counts)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    col = low[face, 0] + local % extent[face, 0]
    row = low[face, 1] + local // extent[face, 0]
    centre = np.stack((col + 0.5, row + 0.5), axis=-1)
    a, b, c = pixels[face, 0], pixels[face, 1], pixels[face, 2]
    area = _cross(b - a, c - a)
    with np.errstate(divide="ignore", invalid="ignore"):
        w_b = _cross(centre - a, c - a) / area
        w_c = _cross(b - a, centre - a) / area
    w_a = 1.0 - w_b - w_c
    tolerance = 1e-9
    inside = (np.abs(area) > 1e-12) & (w_a >= -tolerance) & (w_b >= -tolerance) & (w_c >= -tolerance)
    weights = np.stack((w_a, w_b, w_c), axis=-1)[inside]
    return row[inside], col[inside], face[inside] + face_offset, weights


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]


def bake_albedo(field: Field, uv_mesh: UVMesh, size: int) -> np.ndarray:
    """The base-colour texture, [size,size,3] uint8, row 0 at the top (v = 1)."""
    texels = rasterise(uv_mesh, size)
    corners = uv_mesh.vertices[uv_mesh.faces[texels.faces]]  # [K,3,3]
    points = np.einsum("kc,kcd->kd", texels.barycentric, corners)
    image = np.zeros((size, size, 3), dtype=np.float32)
    covered = np.zeros((size, size), dtype=bool)
    image[texels.rows, texels.cols] = albedo_at(field, points)
    covered[texels.rows, texels.cols] = True
    if covered.any() and not covered.all():
        # Every empty texel copies its nearest baked texel: an unbounded dilation across all seams.
        nearest = ndimage.distance_transform_edt(~covered, return_distances=False, return_indices=True)
        image = image[nearest[0], nearest[1]]
    return (image * 255.0 + 0.5).astype(np.uint8)
