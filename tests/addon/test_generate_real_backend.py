"""Generate in Blender with the real backend: the `tiny-random` model on the CPU for a few steps,
this test's Python as the backend interpreter, the timer's drain function driven until the mesh
is in the scene. Needs `nfsd generate` (the training issue) on the branch."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest


def glb_vertex_count(path: Path) -> int:
    """Vertices as a .glb stores them: one per position and UV island (from its JSON chunk)."""
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    gltf = json.loads(data[20:20 + length])
    return sum(gltf["accessors"][primitive["attributes"]["POSITION"]]["count"]
               for mesh in gltf["meshes"] for primitive in mesh["primitives"])


def test_generate_with_the_real_backend(addon, drive, monkeypatch, backend_events):
    bpy = addon.bpy
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2] / "backend"))  # not the fake
    prefs = bpy.context.preferences.addons[addon.package].preferences
    prefs.backend_python = sys.executable
    prefs.model = "tiny-random"
    prefs.device = "cpu"
    scene = bpy.context.scene.nfsd
    scene.prompt = "a small test object"
    scene.preset = "draft"
    scene.steps = 4
    scene.seed = 1
    scene.mesh_resolution = 32
    scene.texture_size = 64
    bpy.context.scene.cursor.location = (0.0, 0.0, 1.0)
    before = set(bpy.data.objects)

    assert bpy.ops.nfsd.generate() == {"FINISHED"}
    state = bpy.context.window_manager.nfsd_job
    runtime = addon.module("runtime")
    drive(lambda: state.state in ("done", "cancelled", "failed"), runtime.drain, "the real backend")
    assert state.state == "done", f"{state.error_message}\n{state.error_log}"
    run_dir = Path(state.run_dir)
    # every stdout line of the real backend was an event the add-on took in (job.py logs the others)
    log = (run_dir / addon.module("job").LOG_NAME).read_text(encoding="utf-8")
    assert "ignored stdout line" not in log, log
    # and the run's own record of them holds every field DESIGN.md lists for each kind
    events = backend_events((run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines())
    assert {"start", "stage", "progress", "preview", "checkpoint", "done"} <= {e["event"] for e in events}

    assert (state.step, state.total_steps) == (4, 4)
    assert state.preview_step >= 1 and bpy.data.images[state.preview_image].size[0] > 0
    meshes = [obj for obj in bpy.data.objects if obj not in before and obj.type == "MESH"]
    assert len(meshes) == 1
    obj = meshes[0]
    assert [c.name for c in obj.users_collection] == ["a small test object"]
    assert tuple(obj.matrix_world.translation) == pytest.approx((0.0, 0.0, 1.0))  # at the 3D cursor
    assert len(obj.data.polygons) > 0 and len(obj.data.uv_layers) == 1
    # the UV seams split vertices in the file; the import joins them again
    assert len(obj.data.vertices) < glb_vertex_count(Path(state.run_dir) / "mesh" / "model.glb")
    assert any(node.type == "TEX_IMAGE" and node.image is not None
               for slot in obj.material_slots for node in slot.material.node_tree.nodes)
    assert (obj["prompt"], obj["seed"], obj["steps"], obj["model"], obj["method"]) == (
        "a small test object", 1, 4, "tiny-random", "nfsd")
    assert Path(obj["run_dir"]) == Path(state.run_dir)
    job = runtime.current.job
    drive(lambda: job.exited, job.poll, "the backend to exit")
    assert job.process.returncode == 0
