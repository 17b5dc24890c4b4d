"""From a density grid to a clean triangle mesh: the iso-level, marching cubes, and clean-up
(floaters, smoothing, decimation, outward normals).

The automatic iso-level ("auto", `threshold=None`)
--------------------------------------------------
Across a NeRF's surface the density climbs from the level of empty space to the level inside the
object, smeared over a few samples. The edge of a blurred step lies at half its height, whatever the
units, so the surface is taken half-way between the two levels:

    outside = median density on the six faces of the grid (the box is chosen to enclose the object,
              so its faces are empty space; the median ignores floaters that touch the box)
    inside  = 99.9th percentile of the grid's densities that exceed `outside` (near the densest,
              but not the few spike voxels a NeRF grows at its surface)
    level   = (outside + inside) / 2

The level lies strictly between densities the grid holds, so the field crosses it. A field that is
the same everywhere (empty, or solid) has no such level: that is an `EmptyGeometry` error. Parts
much thinner than the densest part (below half its density) are dropped by this rule: give a lower
fixed threshold for them.
"""

from __future__ import annotations

import mcubes
import numpy as np
import trimesh
from scipy import ndimage

from ..errors import EmptyGeometry

# The percentile (in [0, 1]) of the above-empty densities taken as the inside level.
INSIDE_QUANTILE = 0.999
# Grids finer than this per axis are thinned out for the inside percentile.
STATISTICS_RESOLUTION = 256
# A grid whose inside and outside levels differ by less than this share of the inside level is flat.
FLAT_CONTRAST = 1e-4
# Taubin smoothing: shrink by `lamb`, inflate by `nu` (> lamb), so the volume is kept.
TAUBIN_LAMBDA = 0.5
TAUBIN_NU = 0.53
# Voxels on each side of a face at which the orientation vote compares densities.
ORIENTATION_OFFSET = 1.5


def auto_level(grid: np.ndarray) -> float:
    """The iso-level half-way between the density of empty space and inside the object (see the
    module docstring)."""
    faces = np.concatenate([side.ravel() for side in (grid[0], grid[-1], grid[:, 0], grid[:, -1],
                                                      grid[:, :, 0], grid[:, :, -1])])
    outside = float(np.median(faces))
    # The percentile needs no more than ~256^3 samples: thin out finer grids.
    stride = max(1, grid.shape[0] // STATISTICS_RESOLUTION)
    sample = grid[::stride, ::stride, ::stride]
    above = sample[sample > outside]
    inside = float(np.quantile(above, INSIDE_QUANTILE)) if above.size else outside
    if inside - outside <= FLAT_CONTRAST * abs(inside):
        raise EmptyGeometry(f"the field has no surface: its density is {outside:.3g} nearly everywhere in "
                            "the box (empty or solid); train longer, or check the previews for an object.")
    return outside + 0.5 * (inside - outside)


def check_crossing(grid: np.ndarray, level: float) -> None:
    """An `EmptyGeometry` error when the grid lies entirely on one side of `level`."""
    densest, thinnest = float(grid.max()), float(grid.min())
    if densest <= level:
        raise EmptyGeometry(f"no point of the field is denser than the threshold {level:.3g} (densest: "
                            f"{densest:.3g}), so there is no surface; lower --threshold (or leave it unset "
                            "for auto), or train longer.")
    if thinnest > level:
        raise EmptyGeometry(f"every point of the field is denser than the threshold {level:.3g} (thinnest: "
                            f"{thinnest:.3g}), so the whole box is solid; raise --threshold (or leave it "
                            "unset for auto).")


def extract_surface(grid: np.ndarray, level: float, bound: float) -> trimesh.Trimesh:
    """Marching cubes at `level`, in field coordinates, faces wound outward (towards lower density:
    PyMCubes winds them so when the inside is the denser side)."""
    vertices, faces = mcubes.marching_cubes(grid, level)
    step = 2.0 * bound / (grid.shape[0] - 1)
    return trimesh.Trimesh(vertices * step - bound, faces.astype(np.int64), process=False)


def drop_floaters(mesh: trimesh.Trimesh, min_component_fraction: float) -> trimesh.Trimesh:
    """Keep the connected pieces whose area is at least `min_component_fraction` of the largest's."""
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    areas = np.bincount(labels, weights=mesh.area_faces)
    keep = areas[labels] >= min_component_fraction * areas.max()
    mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()
    return mesh


def orient_outward(mesh: trimesh.Trimesh, grid: np.ndarray, bound: float) -> None:
    """Wind every piece consistently, then turn each piece whose faces point into the denser side on
    the whole (an area-weighted vote on the density grid). Unlike a volume sign, this also works for
    open pieces, such as an object cut by the box."""
    trimesh.repair.fix_winding(mesh)
    step = 2.0 * bound / (grid.shape[0] - 1)
    offset = ORIENTATION_OFFSET * step * mesh.face_normals

    def density_at(points: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(grid, ((points + bound) / step).T, order=1, mode="nearest")

    inward_minus_outward = density_at(mesh.triangles_center - offset) - density_at(mesh.triangles_center + offset)
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    votes = np.bincount(labels, weights=mesh.area_faces * inward_minus_outward)
    flip = votes[labels] < 0.0
    if flip.any():
        faces = mesh.faces.copy()
        faces[flip] = faces[flip][:, ::-1]
        mesh.faces = faces


def vertex_normals(mesh: trimesh.Trimesh) -> np.ndarray:
    """Unit vertex normals, each the area-weighted mean of its faces' normals: decimation leaves
    slivers whose normals are unstable, and area weighting (unlike angle weighting) gives them none
    of the say."""
    summed = np.zeros_like(mesh.vertices)
    for corner in range(3):
        np.add.at(summed, mesh.faces[:, corner], mesh.triangles_cross)
    return summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)


def clean_up(mesh: trimesh.Trimesh, grid: np.ndarray, bound: float, *, min_component_fraction: float,
             smooth_iterations: int, max_faces: int) -> trimesh.Trimesh:
    """Floaters out, optional Taubin smoothing, decimation to `max_faces`, outward winding."""
    mesh = drop_floaters(mesh, min_component_fraction)
    if smooth_iterations > 0:
        trimesh.smoothing.filter_taubin(mesh, lamb=TAUBIN_LAMBDA, nu=TAUBIN_NU, iterations=smooth_iterations)
    if len(mesh.faces) > max_faces:
        mesh = mesh.simplify_quadric_decimation(face_count=max_faces)
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    orient_outward(mesh, grid, bound)
    return mesh
