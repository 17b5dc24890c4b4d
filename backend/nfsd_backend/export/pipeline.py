"""`export_mesh`: density grid -> iso-level -> marching cubes -> clean-up -> UV atlas -> baked
texture -> files. Any `Field` can be exported, learned or analytic."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..config import ExportConfig, validate_export
from ..rundir import logger
from . import files, mesh, texture
from .field import Field, density_grid

# Called at the start of each stage with (stage name, a sentence for people); the names are
# STAGES. The command line turns them into `stage` events.
StageListener = Callable[[str, str], None]
STAGES = ("density_grid", "surface", "clean_up", "uv_atlas", "bake", "write")


@dataclass
class ExportResult:
    """What `export_mesh` wrote, and how."""

    glb: Path  # model.glb: the mesh with its base-colour texture embedded
    obj: Path  # model.obj (+Y up, like the glb)
    mtl: Path  # model.mtl, naming texture.png
    texture: Path  # texture.png, the baked base colour
    threshold: float  # the density iso-level used (the automatic one when none was given)
    vertices: int  # in the written mesh (split along UV seams)
    faces: int
    seconds: dict[str, float]  # wall time per stage, keyed by STAGES


def export_mesh(field: Field, out_dir: Path, *, bound: float, resolution: int = 256,
                threshold: float | None = None, texture_size: int = 1024, max_faces: int = 50_000,
                min_component_fraction: float = 0.05, smooth_iterations: int = 0,
                on_stage: StageListener | None = None) -> ExportResult:
    """Extract `field`'s surface over [-bound, bound]^3 and write model.glb, model.obj, model.mtl and
    texture.png into `out_dir`. The settings are `ExportConfig`'s (`resolution` is its
    `mesh_resolution`); `threshold=None` picks the iso-level automatically (see `mesh.auto_level`).
    Raises `EmptyGeometry` when the field has no surface at that level; then nothing is written."""
    validate_export(ExportConfig(mesh_resolution=resolution, texture_size=texture_size, threshold=threshold,
                                 max_faces=max_faces, min_component_fraction=min_component_fraction,
                                 smooth_iterations=smooth_iterations))
    if not (isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0):
        raise ValueError(f"bound must be a positive number, got {bound!r}")
    seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(name: str, message: str) -> Iterator[None]:
        if on_stage is not None:
            on_stage(name, message)
        start = time.perf_counter()
        yield
        seconds[name] = time.perf_counter() - start

    with stage("density_grid", f"evaluating the density on a {resolution}^3 grid"):
        grid = density_grid(field, bound, resolution)
    with stage("surface", "marching cubes"):
        level = mesh.auto_level(grid) if threshold is None else float(threshold)
        mesh.check_crossing(grid, level)
        grid = mesh.fill_hidden_interior(grid, level, bound)
        surface = mesh.extract_surface(grid, level, bound)
    rule = "automatic" if threshold is None else "given"
    logger.info("export: %s density iso-level %.4g, %d marching-cubes faces", rule, level, len(surface.faces))
    with stage("clean_up", f"cleaning up {len(surface.faces)} faces at the {rule} iso-level {level:.3g}"):
        surface = mesh.clean_up(surface, grid, bound, min_component_fraction=min_component_fraction,
                                smooth_iterations=smooth_iterations, max_faces=max_faces)
        del grid
    with stage("uv_atlas", f"UV-unwrapping {len(surface.faces)} faces"):
        uv_mesh = texture.unwrap(surface.vertices, surface.faces, mesh.vertex_normals(surface), texture_size)
    with stage("bake", f"baking a {texture_size}x{texture_size} base-colour texture"):
        image = texture.bake_albedo(field, uv_mesh, texture_size)
    with stage("write", f"writing {files.GLB_NAME} and {files.OBJ_NAME} to {out_dir}"):
        files.write_mesh_files(out_dir, uv_mesh, image)
    out_dir = Path(out_dir)
    return ExportResult(glb=out_dir / files.GLB_NAME, obj=out_dir / files.OBJ_NAME, mtl=out_dir / files.MTL_NAME,
                        texture=out_dir / files.TEXTURE_NAME, threshold=level, vertices=len(uv_mesh.vertices),
                        faces=len(uv_mesh.faces), seconds=seconds)


def export_mesh_with(field: Field, out_dir: Path, *, bound: float, config: ExportConfig,
                     on_stage: StageListener | None = None) -> ExportResult:
    """`export_mesh` with its settings from an `ExportConfig` (what `nfsd export` and the end of
    training call)."""
    return export_mesh(field, out_dir, bound=bound, resolution=config.mesh_resolution,
                       threshold=config.threshold, texture_size=config.texture_size, max_faces=config.max_faces,
                       min_component_fraction=config.min_component_fraction,
                       smooth_iterations=config.smooth_iterations, on_stage=on_stage)
