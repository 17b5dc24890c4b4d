"""SDS, NFSD and SDI side by side on `toy-shapes`: `python bench/compare_methods.py [--jobs 2]`.

Runs `nfsd generate PROMPT --model toy-shapes --preset draft --seed S` for every prompt of the set
and every method setting (SDS at CFG 7.5 and 100, NFSD 7.5, SDI 7.5) with the same seed, judges
each exported mesh (backend/tools/toy_shapes_check.py: the primitive from its solid measures, the
colour from its texture) and writes bench/RESULTS-methods.md (per run and per method: success
rate, texture saturation, wall time) and bench/methods.png (each run's last front-view preview:
one row per prompt, one column per method).

`--set perp-neg` runs SDS 100, NFSD and SDI each as above, with interpolated view prompts, and with
Perp-Neg on interpolated view prompts (docs/methods.md), and adds the evaluations per step;
`--methods` picks some of a set's columns (a reduced run).

The figures are what they are: every method runs with the same preset, seed and prompts, and
nothing is tuned to a method. Run by hand; `--jobs` runs that many single-threaded runs at once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "backend"), str(BENCH.parent / "backend" / "tools")]

import torch  # noqa: E402
import trimesh  # noqa: E402
from PIL import Image  # noqa: E402

from harness import Table, backend_env, load_average, log, machine_table, run_child, seconds  # noqa: E402
from toy_shapes_check import classify_solid, solid_measures  # noqa: E402

PROMPTS = [("red", "cube"), ("blue", "sphere"), ("yellow", "cylinder"), ("green", "cone"), ("purple", "torus")]
# (label, flags): the papers' settings; SDS is run at NFSD's CFG too, to separate the rule from the scale.
METHODS = [("SDS, CFG 7.5", ["--method", "sds", "--guidance-scale", "7.5"]),
           ("SDS, CFG 100", ["--method", "sds", "--guidance-scale", "100"]),
           ("NFSD, CFG 7.5", ["--method", "nfsd", "--guidance-scale", "7.5"]),
           ("SDI, CFG 7.5", ["--method", "sdi", "--guidance-scale", "7.5"])]
# Against multi-face results: each method's view prompts switched (as above), interpolated, and
# interpolated with Perp-Neg. (On toy-shapes Perp-Neg is off by default for every method.)
VIEW_VARIANTS = [("", []), (", interpolated", ["--view-prompts", "interpolate"]),
                 (", Perp-Neg", ["--view-prompts", "interpolate", "--perp-neg"])]
METHOD_SETS = {"papers": METHODS,
               "perp-neg": [(label + name, flags + extra) for label, flags in METHODS[1:] for name, extra in VIEW_VARIANTS]}
SDI_GRID = [1 + 100 * i for i in range(10)]  # the default 10-step inversion grid (ALGORITHMS.md)


def evaluations_per_step(flags: list[str], timesteps: list[int]) -> float:
    """Mean denoiser evaluations per step of a run, from its progress events' timesteps and the
    rules' tested counts (guidance/perp_neg.py): 2 + K per guided prediction, K = 2 negatives with
    Perp-Neg on interpolated views (the draft's cameras, elevation -10..45, are never overhead);
    NFSD adds its negative prompt from t = 200; SDI makes one prediction per inversion step and one
    forward."""
    per_prediction = 2 + (2 if "--perp-neg" in flags else 0)
    method = flags[flags.index("--method") + 1]
    if method == "nfsd":
        counts = [per_prediction + (t >= 200) for t in timesteps]
    elif method == "sdi":
        counts = [(sum(k < t for k in SDI_GRID) + 2) * per_prediction for t in timesteps]
    else:
        counts = [per_prediction for _ in timesteps]
    return statistics.mean(counts) if counts else float("nan")


@dataclass
class Outcome:
    prompt: tuple[str, str]  # (colour, shape)
    method: str
    seconds: float
    shape: str | None  # what the judge sees; None when the run exported nothing
    colour: str | None
    saturation: float | None
    preview: Path | None
    evaluations: float  # mean denoiser evaluations per step (evaluations_per_step)

    @property
    def right(self) -> bool:
        return (self.colour, self.shape) == self.prompt


def front_view(preview: Path) -> Image.Image:
    """The front view of a run's preview image: its top square (the 4-view strip is below it)."""
    image = Image.open(preview).convert("RGB")
    return image.crop((0, 0, image.width, image.width))


def run_events(out: Path) -> list[dict]:
    path = out / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_one(prompt: tuple[str, str], method: str, flags: list[str], out: Path, seed: int, extra: list[str]) -> Outcome:
    """One run, or the finished run already in `out` (a comparison that was stopped goes on
    where it was)."""
    text = f"a {prompt[0]} {prompt[1]}"
    if not any(e["event"] == "done" for e in run_events(out)):
        env = dict(backend_env(), OMP_NUM_THREADS="1")
        child = run_child([sys.executable, "-m", "nfsd_backend", "generate", text, "--model", "toy-shapes",
                           "--preset", "draft", "--seed", str(seed), *flags, *extra, "--out", str(out),
                           "--events", "jsonl"], env=env)
        log(f"{text} / {method}: exit {child.returncode} in {child.seconds:.0f} s")
    events = run_events(out)
    done = [e for e in events if e["event"] == "done"]
    # From the run's start event to its end: model loading, training and export.
    seconds_taken = events[-1]["time"] - events[0]["time"] if events else float("nan")
    preview = out / "previews" / "latest.png"
    evaluations = evaluations_per_step(flags, [e["timestep"] for e in events if e["event"] == "progress"])
    if not done:
        return Outcome(prompt, method, seconds_taken, None, None, None, preview if preview.exists() else None,
                       evaluations)
    solid = solid_measures(trimesh.load(out / "mesh" / "model.glb", force="mesh"))
    return Outcome(prompt, method, seconds_taken, classify_solid(solid), solid.colour, solid.saturation, preview,
                   evaluations)


def picture(outcomes: list[Outcome], methods: list[str], path: Path, tile: int = 128) -> None:
    prompts = sorted({o.prompt for o in outcomes}, key=PROMPTS.index)
    grid = Image.new("RGB", (tile * len(methods), tile * len(prompts)), "white")
    for outcome in outcomes:
        if outcome.preview is not None:
            row = prompts.index(outcome.prompt)
            column = methods.index(outcome.method)
            grid.paste(front_view(outcome.preview).resize((tile, tile)), (column * tile, row * tile))
    grid.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "nfsd-compare-methods",
                        help="where the runs are written (outside the repository)")
    parser.add_argument("--extra", default="", help="flags added to every run, e.g. '--steps 300'")
    parser.add_argument("--prompts", default=str(len(PROMPTS)),
                        help="the first N prompts of the set, or their shapes, e.g. 'cube,cone'")
    parser.add_argument("--set", choices=tuple(METHOD_SETS), default="papers", help="which method columns")
    parser.add_argument("--methods", default="", help="only these columns of the set (labels, ';'-separated)")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS-methods.md")
    parser.add_argument("--picture", type=Path, default=BENCH / "methods.png")
    args = parser.parse_args(argv)
    started = time.time()
    machine = machine_table(torch.device("cpu"))
    prompts = PROMPTS[:int(args.prompts)] if args.prompts.isdigit() else \
        [p for p in PROMPTS if p[1] in args.prompts.split(",")]
    methods = [(label, flags) for label, flags in METHOD_SETS[args.set]
               if not args.methods or label in args.methods.split(";")]
    jobs = [(prompt, label, flags, args.work_dir / f"{prompt[0]}_{prompt[1]}"
             / "_".join(label.lower().replace(",", "").split())) for prompt in prompts for label, flags in methods]
    with ThreadPoolExecutor(args.jobs) as pool:
        outcomes = list(pool.map(lambda job: run_one(*job, args.seed, args.extra.split()), jobs))

    runs = Table("Every run (`--model toy-shapes --preset draft`, seed "
                 f"{args.seed}{', ' + args.extra if args.extra else ''})",
                 ["prompt", "method", "judged shape", "judged colour", "right", "texture saturation", "wall s",
                  "evals / step"])
    for o in outcomes:
        runs.add(f"a {o.prompt[0]} {o.prompt[1]}", o.method, o.shape or "no mesh", o.colour or "—",
                 "yes" if o.right else "no", f"{o.saturation:.2f}" if o.saturation is not None else "—",
                 seconds(o.seconds), f"{o.evaluations:.2f}")
    summary = Table("Per method", ["method", "right (colour and shape)", "right shape", "right colour",
                                   "mean texture saturation", "median wall s", "evals / step"])
    for label, _ in methods:
        mine = [o for o in outcomes if o.method == label]
        saturations = [o.saturation for o in mine if o.saturation is not None]
        summary.add(label, f"{sum(o.right for o in mine)} / {len(mine)}",
                    f"{sum(o.shape == o.prompt[1] for o in mine)} / {len(mine)}",
                    f"{sum(o.colour == o.prompt[0] for o in mine)} / {len(mine)}",
                    f"{statistics.mean(saturations):.2f}" if saturations else "—",
                    seconds(statistics.median(o.seconds for o in mine)),
                    f"{statistics.mean(o.evaluations for o in mine):.2f}")
    summary.notes += [
        "right = the judge (backend/tools/toy_shapes_check.py) names the prompt's primitive from the mesh's "
        "solid measures and the prompt's colour from its texture.",
        "texture saturation = mean HSV saturation of the texture over the surface (area-weighted); the "
        "data set's albedos have 0.80-0.95 (white 0).",
        f"runs at once: {args.jobs}, one torch thread each; wall time from the run's `start` event to `done`: "
        "model loading, training and export.",
        "evals / step = mean denoiser evaluations per step, computed from each run's timesteps (its progress "
        "events) and the rules' tested counts (evaluations_per_step), not counted during the run.",
    ]
    machine.add("load average at end (1 / 5 / 15 min)", load_average())
    machine.add("wall time of the whole comparison", f"{(time.time() - started) / 60:.1f} min")
    picture(outcomes, [label for label, _ in methods], args.picture)
    head = ["# SDS, NFSD and SDI on toy-shapes", "",
            f"Written by `python bench/compare_methods.py`. Picture: `{args.picture.name}` (rows: "
            + ", ".join(f"a {c} {s}" for c, s in prompts) + "; columns: " + ", ".join(l for l, _ in methods) + ").", ""]
    args.out.write_text("\n".join(head) + "\n".join(t.markdown() + "\n" for t in [machine, summary, runs]),
                        encoding="utf-8")
    log(f"wrote {args.out} and {args.picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
