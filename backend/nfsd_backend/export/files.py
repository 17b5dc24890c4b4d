"""Writing the result: `model.glb` (base-colour PNG embedded, PBR material) and `model.obj` +
`model.mtl` + `texture.png`, all at once or not at all.

Axes: the field is +Z up with its front facing -Y (as in Blender). glTF is +Y up, so a field point
(x, y, z) is written as (x, z, -y); Blender's glTF importer turns that back into (x, y, z), upright
with the same front. Blender's OBJ importer assumes the same +Y-up frame (forward -Z, up Y) by
default, so the OBJ uses it too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from .texture import UVMesh

GLB_NAME = "model.glb"
OBJ_NAME = "model.obj"
MTL_NAME = "model.mtl"
MATERIAL_NAME = "texture"  # trimesh names the OBJ's image after its material: texture.png
TEXTURE_NAME = MATERIAL_NAME + ".png"
MESH_NAME = "model"  # the glTF node and mesh name, which becomes the Blender object's name

# Field (x, y, z) -> glTF/OBJ (x, z, -y): a rotation about +X, so triangle winding is unchanged.
FIELD_TO_Y_UP = np.array([[1.0, 0.0, 0.0],
                          [0.0, 0.0, 1.0],
                          [0.0, -1.0, 0.0]])


def to_y_up(points: np.ndarray) -> np.ndarray:
    return points @ FIELD_TO_Y_UP.T


def _textured_mesh(uv_mesh: UVMesh, material: trimesh.visual.material.Material) -> trimesh.Trimesh:
    return trimesh.Trimesh(to_y_up(uv_mesh.vertices), uv_mesh.faces, vertex_normals=to_y_up(uv_mesh.normals),
                           visual=trimesh.visual.TextureVisuals(uv=uv_mesh.uvs, material=material),
                           process=False)


def glb_bytes(uv_mesh: UVMesh, image: Image.Image) -> bytes:
    # A NeRF's albedo is diffuse colour: no metal, fully rough.
    material = trimesh.visual.material.PBRMaterial(name=MATERIAL_NAME, baseColorTexture=image,
                                                   metallicFactor=0.0, roughnessFactor=1.0)
    scene = trimesh.Scene()
    scene.add_geometry(_textured_mesh(uv_mesh, material), geom_name=MESH_NAME, node_name=MESH_NAME)
    return scene.export(file_type="glb")


def obj_files(uv_mesh: UVMesh, image: Image.Image) -> dict[str, bytes]:
    """{file name: bytes} of the OBJ, its MTL and its PNG."""
    # White diffuse factor (viewers multiply it with the map), no ambient or specular terms: the
    # texture alone gives the colour, as the albedo it was baked from means.
    material = trimesh.visual.material.SimpleMaterial(name=MATERIAL_NAME, image=image, diffuse=(255, 255, 255),
                                                      ambient=(0, 0, 0), specular=(0, 0, 0),
                                                      glossiness=0.0)
    text, files = trimesh.exchange.obj.export_obj(_textured_mesh(uv_mesh, material), include_normals=True,
                                                  return_texture=True, mtl_name=MTL_NAME)
    if set(files) != {MTL_NAME, TEXTURE_NAME}:
        raise RuntimeError(f"trimesh wrote unexpected OBJ side files: {sorted(files)}")
    return {OBJ_NAME: text.encode("utf-8"), **files}


def write_mesh_files(out_dir: Path, uv_mesh: UVMesh, texture: np.ndarray) -> None:
    """Write every file into a temporary folder inside `out_dir`, then move them into place (the
    .glb last): a failure leaves no partial result behind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(texture)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".export-"))
    try:
        files = obj_files(uv_mesh, image)
        files[GLB_NAME] = glb_bytes(uv_mesh, image)
        for name, data in files.items():
            (staging / name).write_bytes(data)
        for name in (TEXTURE_NAME, MTL_NAME, OBJ_NAME, GLB_NAME):
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
