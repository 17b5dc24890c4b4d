"""`nfsd generate` with the shipped `toy-shapes` model, NFSD, `draft` preset, on the CPU: the
exported mesh's texture has the prompt's colour and its solid measures name the prompt's
primitive (the judge: backend/tools/toy_shapes_check.py). One prompt runs in every test run
(about three minutes); the others with NFSD_SLOW_CHECKS=1. Measured on the shipped weights: the
cylinder, sphere, cone and torus come out right; the cube does not yet (marked xfail)."""

from __future__ import annotations

import os

import pytest
import trimesh
from toy_shapes_check import classify_solid, solid_measures

from .cli_helpers import run_subprocess

by_hand = pytest.mark.skipif(os.environ.get("NFSD_SLOW_CHECKS") != "1",
                             reason="three-minute run; set NFSD_SLOW_CHECKS=1")


@pytest.mark.slow
@pytest.mark.parametrize("colour, shape", [
    pytest.param("yellow", "cylinder"),
    # Measured: the draft makes a round cup. The model draws a cube as one tapered picture whatever the
    # view word says, and only a round solid shows that picture from every side (docs/toy-shapes.md).
    pytest.param("red", "cube", marks=[by_hand, pytest.mark.xfail(reason="the draft rounds the cube", strict=True)]),
    pytest.param("blue", "sphere", marks=by_hand),
    pytest.param("green", "cone", marks=by_hand),
    pytest.param("purple", "torus", marks=by_hand),
])
def test_toy_generate_makes_the_prompted_object(tmp_path, colour, shape):
    out = tmp_path / "run"
    result = run_subprocess(["generate", f"a {colour} {shape}", "--model", "toy-shapes", "--preset", "draft",
                             "--method", "nfsd", "--device", "cpu", "--seed", "0", "--out", str(out)], timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    solid = solid_measures(trimesh.load(out / "mesh" / "model.glb", force="mesh"))
    assert (solid.colour, classify_solid(solid)) == (colour, shape), solid
