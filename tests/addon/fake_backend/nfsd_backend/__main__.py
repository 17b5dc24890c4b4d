"""`python -m nfsd_backend generate | export | doctor` for the add-on's tests (see __init__.py).

Behaviour switches, through the environment:
  FAKE_NFSD_FAIL=error   emit an `out_of_memory` error after the first step, exit 1
  FAKE_NFSD_FAIL=crash   write a traceback to stderr after the first step and die (exit 1, no event)
Each step takes FAKE_NFSD_STEP_S seconds (default 0.02) so a test can act while it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

EXIT_OK, EXIT_INTERNAL, EXIT_CANCELLED = 0, 1, 3
PRESET_STEPS = {"draft": 4, "standard": 6, "high": 8}
PREVIEW_EVERY = 2
STARTED = time.time()


def emit(event: str, **fields) -> None:
    print(json.dumps({"v": 1, "event": event, "time": round(time.time(), 3), **fields}), flush=True)


class Control:
    """stdin lines `stop` / `export`; end of input means stop."""

    def __init__(self) -> None:
        self.request = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            if line.strip() in ("stop", "export"):
                self.request = line.strip()
                return
        self.request = "stop"


def write_mesh(out: Path) -> tuple[Path, Path]:
    """A unit box with UVs and a small red texture, as model.glb and model.obj."""
    mesh_dir = out / "mesh"
    mesh_dir.mkdir(parents=True, exist_ok=True)
    box = trimesh.creation.box()
    box.unmerge_vertices()
    uv = (box.vertices[:, :2] + 0.5).clip(0.0, 1.0)
    texture = Image.new("RGB", (16, 16), (200, 40, 30))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=texture)
    box.export(mesh_dir / "model.glb")
    box.export(mesh_dir / "model.obj")
    return mesh_dir / "model.glb", mesh_dir / "model.obj"


def export(out: Path) -> int:
    emit("stage", name="export", message="Extracting the mesh")
    glb, obj = write_mesh(out)
    emit("done", mesh=str(glb), obj=str(obj), elapsed_s=round(time.time() - STARTED, 3))
    return EXIT_OK


def generate(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    (out / "previews").mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    steps = args.steps or PRESET_STEPS[args.preset]
    config = {"prompt": args.prompt, "seed": args.seed, "steps": steps,
              "model": {"name": args.model, "device": args.device},
              "guidance": {"method": args.method, "guidance_scale": args.guidance_scale,
                           "negative_prompt": args.negative_prompt},
              # not a backend setting: what the add-on's environment told the model hub (a test reads it)
              "environment": {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE")}}
    (out / "config.json").write_text(json.dumps(config), encoding="utf-8")
    control = Control()
    print("a stray line from some library", flush=True)  # not an event: the add-on must skip it
    emit("start", run_dir=str(out), total_steps=steps, method=args.method, device="cpu", config=config)
    emit("stage", name="load_model", message=f"Loading {args.model}")
    emit("stage", name="train", message="Training")
    step_s = float(os.environ.get("FAKE_NFSD_STEP_S", "0.02"))
    checkpoint = out / "checkpoints" / "last.pt"
    for step in range(1, steps + 1):
        time.sleep(step_s)
        emit("progress", step=step, total_steps=steps, loss=1.0 / step, timestep=500, elapsed_s=step * step_s,
             eta_s=(steps - step) * step_s, it_per_s=1.0 / step_s)
        failure = os.environ.get("FAKE_NFSD_FAIL", "")
        if failure == "error":
            emit("error", kind="out_of_memory", message="Out of GPU memory at 512x512 renders; turn on Low VRAM.")
            return EXIT_INTERNAL
        if failure == "crash":
            print("Traceback (most recent call last):\nRuntimeError: fake backend crashed", file=sys.stderr, flush=True)
            os._exit(EXIT_INTERNAL)
        if step % PREVIEW_EVERY == 0:
            shade = int(255 * step / steps)
            Image.new("RGB", (8, 8), (shade, 0, 255 - shade)).save(out / "previews" / "latest.png")
            emit("preview", step=step, path=str(out / "previews" / "latest.png"))
            checkpoint.write_bytes(f"step {step}".encode())
            emit("checkpoint", step=step, path=str(checkpoint))
        if control.request == "stop":
            checkpoint.write_bytes(f"step {step}".encode())
            emit("cancelled", step=step, checkpoint=str(checkpoint))
            return EXIT_CANCELLED
        if control.request == "export":
            break
    return export(out)


def doctor() -> int:
    print(json.dumps({"python": platform.python_version(), "torch": "0.0-fake", "cuda": None,
                      "cuda_available": False, "gpus": [], "tinycudann": "unavailable: fake",
                      "nerfacc": "unavailable: fake", "cached_models": [],
                      "builtin_models": ["toy-shapes", "tiny-random"]}))
    return EXIT_OK


def main() -> int:
    parser = argparse.ArgumentParser(prog="nfsd")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate")
    gen.add_argument("prompt")
    for flag in ("--out", "--method", "--negative-prompt", "--preset", "--model", "--device", "--precision",
                 "--events", "--control", "--config"):
        gen.add_argument(flag)
    gen.add_argument("--guidance-scale", type=float)
    for flag in ("--steps", "--seed", "--mesh-resolution", "--texture-size"):
        gen.add_argument(flag, type=int, default=0)
    gen.add_argument("--low-vram", action="store_true")
    gen.add_argument("--perp-neg", action=argparse.BooleanOptionalAction)
    exp = commands.add_parser("export")
    exp.add_argument("run_dir")
    for flag in ("--mesh-resolution", "--texture-size"):
        exp.add_argument(flag, type=int)
    exp.add_argument("--events")
    doc = commands.add_parser("doctor")
    doc.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.command == "generate":
        return generate(args)
    if args.command == "export":
        return export(Path(args.run_dir).resolve())
    return doctor()


sys.exit(main())
