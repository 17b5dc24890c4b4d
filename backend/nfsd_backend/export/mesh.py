"""From a density grid to a clean triangle mesh: the iso-level, marching cubes, and clean-up
(floaters, smoothing, decimation, outward normals).

The automatic iso-level ("auto", `threshold=None`)
--------------------------------------------------
Across a NeRF's surface the density climbs from the level of empty space to the level inside the
object, smeared over a few samples. The edge of a blurred step lies at half its height, whatever the
units, so the surface is taken half-way between the two levels:

    outside = median density on the six faces of the grid (the box is chosen to enclose the object,
              so its faces are empty space; the median ignores floaters that touch the box)
    inside  = median density of the voxels the surface encloses, i.e. of those denser than the level
    level   = (outside + inside) / 2

`inside` depends on the level, so the level is found by iteration, starting from the 99.9th
percentile of the densities above `outside` (near the densest, but not the few spike voxels a NeRF
grows at its surface). A denser level encloses denser voxels, so the steps move one way (down,
from that start) and settle. On a clean step the level stays at half the step. It is the median,
not the peak, because a trained object is not a clean step: nothing renders its inside, so the
density there spreads over a factor of four or more, and half the peak cut through that spread.
The surface then had tunnels wherever the inside dipped below the level: drafts that render as
solids gave meshes of genus 1 to 28 (measured in docs/export.md, "The iso-level").

The level lies strictly between densities the grid holds, so the field crosses it. A field that is
the same everywhere (empty, or solid) has no such level: that is an `EmptyGeometry` error. Parts
much thinner than the rest (below half its median density) are dropped by this rule: give a lower
fixed threshold for them.

The hidden interior
-------------------
A render sees a NeRF's surface where the opacity along the ray passes one half; what lies behind
that is never seen, so training leaves it anything: hollow, or a fog barely denser than empty space.
The level then cuts the hidden fog like any other, and a wall of fog that renders as opaque became
a hole into a hollow inside (a NeRF fitted to exact renders of a cube: genus 2, 57 pieces). So a
voxel that no axis-aligned ray from outside the grid reaches with a transmittance above one half
counts as inside, whatever its density: it is raised to the level's mirror image of empty space
before marching cubes. On a clean step the hidden voxels are inside anyway and nothing changes; a
cavity seen along an axis (a cup's mouth, a torus's hole) stays open. The price: a cavity that
opens only at a slant, so that no axis sees into it, is filled too (a given `--threshold` does not
change that).
"""

from __future__ import annotations

import mcubes
import numpy as np
import trimesh
from scipy import ndimage

from ..errors import EmptyGeometry

# The percentile (in [0, 1]) of the above-empty densities the level's iteration starts from.
START_QUANTILE = 0.999
# The iteration stops when the level moves by less than this share of itself, or after this many steps.
LEVEL_TOLERANCE = 1e-4
LEVEL_ITERATIONS = 100
# Grids finer than this per axis are thinned out for the level's statistics.
STATISTICS_RESOLUTION = 256
# A grid whose inside and outside levels differ by less than this share of the inside level is flat.
FLAT_CONTRAST = 1e-4
# Taubin smoothing: shrink by `lamb`, inflate by `nu` (> lamb), so the volume is kept.
TAUBIN_LAMBDA = 0.5
TAUBIN_NU = 0.53
# Decimation keeps at most this share of the marching-cubes faces, even under the face budget:
# marching cubes leaves many slivers, on which xatlas cuts hundreds of charts and runs for minutes
# (a 51k-face torus from a 128^3 grid: 1434 charts, 51 s of CPU); halving the faces first
# regularises them (60 charts, 6.7 s) at no visible cost in shape.
MAX_KEPT_FACES = 0.5
# ... except for meshes this small, which xatlas charts quickly as they are.
FEW_FACES = 1000
# A voxel is visible when a ray from outside reaches it with more transmittance than this; one half
# is where a render's opacity places the surface.
VISIBLE_TRANSMITTANCE = 0.5
# Voxels on each side of a face at which the orientation vote compares densities.
ORIENTATION_OFFSET = 1.5


def empty_density(grid: np.ndarray) -> float:
    """The density of empty space: the median on the grid's six faces."""
    faces = np.concatenate([side.ravel() for side in (grid[0], grid[-1], grid[:, 0], grid[:, -1],
                                                      grid[:, :, 0], grid[:, :, -1])])
    return float(np.median(faces))


def auto_level(grid: np.ndarray) -> float:
    """The iso-level half-way between the density of empty space and the median density inside the
    surface at that level (see the module docstring)."""
    outside = empty_density(grid)
    # The statistics need no more than ~256^3 samples: thin out finer grids.
    stride = max(1, grid.shape[0] // STATISTICS_RESOLUTION)
    sample = grid[::stride, ::stride, ::stride]
    above = sample[sample > outside]
    densest = float(np.quantile(above, START_QUANTILE)) if above.size else outside
    if densest - outside <= FLAT_CONTRAST * abs(densest):
        raise EmptyGeometry(f"the field has no surface: its density is {outside:.3g} nearly everywhere in "
                            "the box (empty or solid); train longer, or check the previews for an object.")
    level = outside + 0.5 * (densest - outside)
    for _ in range(LEVEL_ITERATIONS):
        inside = float(np.median(above[above > level]))
        settled = outside + 0.5 * (inside - outside)
        if abs(settled - level) <= LEVEL_TOLERANCE * abs(level):
            return settled
        level = settled
    return level


def hidden_interior(grid: np.ndarray, bound: float) -> np.ndarray:
    """[N,N,N] bool: the voxels that no ray along an axis, entering the grid from either side,
    reaches with a transmittance above `VISIBLE_TRANSMITTANCE`. Optical depth counts the density
    above that of empty space, so a uniform haze hides nothing."""
    step = 2.0 * bound / (grid.shape[0] - 1)
    # Memory: the excess and one buffer of running sums, both the size of the grid, and the mask (a
    # quarter of that); the rest is worked a slice at a time (at 1024^3 a full-grid temporary is 4 GiB).
    excess = grid - empty_density(grid)
    np.clip(excess, 0.0, None, out=excess)
    sums = np.empty_like(excess)
    visible = np.zeros(grid.shape, dtype=bool)
    limit = -np.log(VISIBLE_TRANSMITTANCE)
    for axis in range(3):
        for reverse in (False, True):
            density = np.flip(excess, axis) if reverse else excess
            seen = np.flip(visible, axis) if reverse else visible
            np.cumsum(density, axis=axis, out=sums)
            for i in range(len(sums)):
                # Up to the voxel's centre: all the voxels before it on the ray, and half of itself.
                depth = (sums[i] - 0.5 * density[i]) * step
                seen[i] |= depth < limit
    return np.logical_not(visible, out=visible)


def fill_hidden_interior(grid: np.ndarray, level: float, bound: float) -> np.ndarray:
    """`grid` with the hidden voxels (`hidden_interior`) that are not above `level` raised to the
    level's mirror image of empty space, so marching cubes at `level` encloses them (see the module
    docstring). The hidden region's rim of one voxel is left alone: there a ray that grazes a
    curved surface (the inside of a torus's ring) passes for one that is blocked, and the voxel
    lies on the density's own surface anyway. So a solid without hidden gaps is unchanged."""
    lifted = ndimage.binary_erosion(hidden_interior(grid, bound)) & (grid <= level)
    return np.where(lifted, np.float32(2.0 * level - empty_density(grid)), grid)


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
    slivers whose normals are unstable, and area weighting (unlike angle weighting) gives them
    almost no weight."""
    summed = np.zeros_like(mesh.vertices)
    for corner in range(3):
        np.add.at(summed, mesh.faces[:, corner], mesh.triangles_cross)
    return summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)


def clean_up(mesh: trimesh.Trimesh, grid: np.ndarray, bound: float, *, min_component_fraction: float,
             smooth_iterations: int, max_faces: int) -> trimesh.Trimesh:
    """Floaters out, optional Taubin smoothing, decimation to `max_faces` (and at least by half),
    outward winding."""
    mesh = drop_floaters(mesh, min_component_fraction)
    if smooth_iterations > 0:
        trimesh.smoothing.filter_taubin(mesh, lamb=TAUBIN_LAMBDA, nu=TAUBIN_NU, iterations=smooth_iterations)
    target = min(max_faces, max(int(len(mesh.faces) * MAX_KEPT_FACES), FEW_FACES))
    if target < len(mesh.faces):
        mesh = mesh.simplify_quadric_decimation(face_count=target)
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    orient_outward(mesh, grid, bound)
    return mesh
