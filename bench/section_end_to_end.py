"""Section 5: the whole job a user runs first, `nfsd generate "a red cube" --model toy-shapes
--preset draft`, as a fresh process each time: wall time, the time of each stage (from the run's
own `stage` events), training speed and the process's peak RSS."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from harness import Table, backend_env, log, run_child, seconds

PROMPT = "a red cube"
COMMAND = ["generate", PROMPT, "--model", "toy-shapes", "--preset", "draft"]


def stage_seconds(events: list[dict]) -> dict[str, float]:
    """Seconds from each `stage` event to the next stage (or to `done`)."""
    marks = [(e["name"], e["time"]) for e in events if e["event"] == "stage"]
    marks += [("done", e["time"]) for e in events if e["event"] == "done"]
    durations: dict[str, float] = {}
    for (name, start), (_, end) in zip(marks, marks[1:]):
        durations[name] = durations.get(name, 0.0) + end - start
    return durations


def run(repeats: int, extra_flags: list[str], device: str) -> list[Table]:
    shown = " ".join([*COMMAND[2:], *extra_flags, "--device", device])
    table = Table(f"End to end: `nfsd generate \"{PROMPT}\" {shown}`",
                  ["run", "wall s", "stages (s)", "steps", "it/s", "peak RSS GiB"])
    walls = []
    for index in range(repeats):
        log(f"end to end: run {index + 1} of {repeats}")
        with tempfile.TemporaryDirectory() as folder:
            child = run_child([sys.executable, "-m", "nfsd_backend", *COMMAND, *extra_flags, "--out", str(Path(folder) / "run"),
                               "--events", "jsonl", "--device", device], env=backend_env())
        if child.returncode != 0:
            raise RuntimeError(f"nfsd generate failed ({child.returncode}): {child.stderr[-2000:]}")
        events = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
        progress = [e for e in events if e["event"] == "progress"]
        stages = ", ".join(f"{name} {seconds(value)}" for name, value in stage_seconds(events).items())
        walls.append(child.seconds)
        table.add(index + 1, seconds(child.seconds), stages, progress[-1]["step"] if progress else "—",
                  progress[-1]["it_per_s"] if progress else "—", f"{child.peak_rss_bytes / 2**30:.2f}")
    table.add("median", seconds(statistics.median(walls)), "", "", "", "")
    table.notes.append("each run a fresh process (model loading included), with the machine's threads.")
    return [table]
