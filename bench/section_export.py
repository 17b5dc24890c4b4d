"""Section 4: mesh export at several grid resolutions, through `bench_export.py` (the exporter's
own benchmark: an analytic field, one export per fresh process so its peak RSS is its own)."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from harness import Table, backend_env, log, run_child, seconds
from nfsd_backend.export import STAGES

EXPORT_SCRIPT = Path(__file__).resolve().parent / "bench_export.py"


def export_once(resolution: int, texture_size: int) -> dict:
    """One export in a child process: its figures as `bench_export.py --one` prints them."""
    child = run_child([sys.executable, str(EXPORT_SCRIPT), "--one", str(resolution),
                       "--texture-size", str(texture_size)], env=backend_env())
    if child.returncode != 0:
        raise RuntimeError(f"export at {resolution} failed: {child.stderr[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def run(resolutions: list[int], texture_size: int, repeats: int) -> list[Table]:
    table = Table(f"Mesh export (analytic torus, texture {texture_size}, CPU)",
                  ["resolution", "wall s: median (min-max)", *[f"{s} s" for s in STAGES], "faces", "peak RSS GiB"])
    for resolution in resolutions:
        log(f"export {resolution}^3: {repeats} runs")
        runs = [export_once(resolution, texture_size) for _ in range(repeats)]
        walls = sorted(r["wall_s"] for r in runs)
        spread = f" ({seconds(walls[0])}-{seconds(walls[-1])})" if repeats > 1 else ""
        stages = [seconds(statistics.median(r["stages"][s] for r in runs)) for s in STAGES]
        table.add(resolution, seconds(statistics.median(walls)) + spread, *stages, runs[-1]["faces"],
                  f"{max(r['peak_rss_mb'] for r in runs) / 1024:.2f}")
    table.notes.append(f"runs per resolution: {repeats} (median), each a fresh process; no warm-up, as an export "
                       "runs once per job. The stages are `export_mesh`'s own.")
    return [table]
