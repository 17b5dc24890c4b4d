"""Textured mesh export: any `Field` (density + albedo) -> model.glb and model.obj/.mtl/texture.png.

    density grid -> iso-level -> marching cubes -> clean-up -> UV atlas -> baked base colour -> files
"""

from .field import Field
from .pipeline import STAGES, ExportResult, StageListener, export_mesh, export_mesh_with

__all__ = ["Field", "ExportResult", "StageListener", "STAGES", "export_mesh", "export_mesh_with"]
