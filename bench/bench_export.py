"""Export time and peak memory at mesh resolutions 128 / 256 / 384 (texture 1024, the default face
budget) on an analytic field. Every export runs in a fresh process, so its peak RSS is its own.

    PYTHONPATH=backend python bench/bench_export.py [--resolutions 128 256 384] [--shape torus] [--repeat 3]

Prints a Markdown table (medians over the repeats: wall and CPU seconds, wall seconds per stage,
peak RSS) and the machine. Wall time on a shared machine depends on what else runs: the load
average at the start is printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nfsd_backend.export import STAGES
from peak_rss_child import rss_high_water_bytes

SHAPES = ("sphere", "torus", "two_colour")


def peak_rss_mb() -> float:
    """This process's own peak RSS (ru_maxrss only where /proc is missing: it includes the parent's)."""
    peak = rss_high_water_bytes()
    return peak / 2**20 if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(resolution: int, shape: str, texture_size: int) -> dict:
    """One export in this process; returns its figures."""
    import torch

    from nfsd_backend.export import export_mesh
    from nfsd_backend.export.analytic import Sphere, Torus, TwoColourEllipsoid

    torch.set_num_threads(os.cpu_count() or 1)
    field = {"sphere": Sphere, "torus": Torus, "two_colour": TwoColourEllipsoid}[shape]()
    with tempfile.TemporaryDirectory() as out:
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        result = export_mesh(field, Path(out), bound=1.0, resolution=resolution, texture_size=texture_size)
        wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    return {"resolution": resolution, "wall_s": wall, "cpu_s": cpu, "faces": result.faces,
            "stages": result.seconds, "peak_rss_mb": peak_rss_mb()}


def machine() -> str:
    """The machine in one line (`harness` finds the CPU and the memory, as for the report's table)."""
    import torch

    from harness import cpu_name, memory_total_gib

    memory = memory_total_gib()
    ram = f", {memory:.0f} GiB RAM" if memory is not None else ""
    return (f"{cpu_name()}, {os.cpu_count()} cores{ram}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256, 384])
    parser.add_argument("--shape", choices=SHAPES, default="torus")
    parser.add_argument("--texture-size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="exports per resolution; the table shows medians")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one resolution, print JSON
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.shape, args.texture_size)))
        return

    print(f"Machine: {machine()}")
    print(f"Field: analytic {args.shape}, bound 1, texture {args.texture_size}, default face budget; "
          f"medians of {args.repeat} runs\n")
    print("| resolution | wall s | CPU s | grid | surface | clean-up | UV atlas | bake | write | faces | peak RSS MB | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for resolution in args.resolutions:
        load = os.getloadavg()[0]
        runs = [measure(resolution, args.shape, args.texture_size) for _ in range(args.repeat)]
        median = {key: statistics.median(run[key] for run in runs) for key in ("wall_s", "cpu_s", "peak_rss_mb")}
        stages = " | ".join(f"{statistics.median(run['stages'][name] for run in runs):.1f}" for name in STAGES)
        print(f"| {resolution} | {median['wall_s']:.1f} | {median['cpu_s']:.1f} | {stages} | {runs[0]['faces']} "
              f"| {median['peak_rss_mb']:.0f} | {load:.1f} |", flush=True)


def measure(resolution: int, shape: str, texture_size: int) -> dict:
    """One export in a fresh process."""
    done = subprocess.run([sys.executable, __file__, "--one", str(resolution), "--shape", shape,
                           "--texture-size", str(texture_size)], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])

if __name__ == "__main__":
    main()
