"""Bringing a result into the scene: Blender's glTF importer, then a collection named after the
prompt, the 3D cursor's position and the generation settings as custom properties."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import bpy

from .properties import present
from .result import collection_name


def import_result(context: bpy.types.Context, mesh: Path, properties: Mapping[str, Any]) -> list[bpy.types.Object]:
    """Import `mesh` (.glb) into a new collection named after the prompt, move it to the 3D cursor
    and store `properties` on every new object. Returns the new objects."""
    before = set(bpy.data.objects)
    # glTF stores a vertex once per UV island it touches; merging gives one connected mesh again
    # (the backend writes one normal per position, so nothing keeps the seams apart).
    bpy.ops.import_scene.gltf(filepath=str(mesh), merge_vertices=True)
    new_objects = [obj for obj in bpy.data.objects if obj not in before]

    collection = bpy.data.collections.new(collection_name(str(properties.get("prompt", ""))))
    scene = present(context.scene, "scene")
    scene.collection.children.link(collection)
    cursor = scene.cursor.location
    for obj in new_objects:
        for old in list(obj.users_collection):
            old.objects.unlink(obj)
        collection.objects.link(obj)
        if obj.parent is None:
            obj.location = obj.location + cursor
        for key, value in properties.items():
            obj[key] = value
    meshes = [obj for obj in new_objects if obj.type == "MESH"]
    if len(meshes) == 1:
        meshes[0].name = collection.name
    return new_objects
