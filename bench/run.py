"""Benchmarks of the backend: `python bench/run.py [--quick] [--cuda] [--model ID]`.

Writes a markdown report (machine, date, versions, then one table per measurement; every figure is
the median of several runs) to bench/RESULTS.md (RESULTS-quick.md with --quick, RESULTS-cuda.md
with --cuda).

- full (default): Stable Diffusion 2.1-base's architecture with random weights on the CPU,
  fp32 and bf16. Takes about 1.5 hours with one thread; run it on an otherwise idle machine.
- --quick: the same harness on tiny sizes (the tiny random model), about a minute: checks that
  every section runs, the figures mean nothing.
- --cuda: on the GPU, fp16 and fp32; with --model ID (hub id, folder or checkpoint), a real model.

Run by hand, never by the test suite's clock: timings depend on the machine and on its load.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# Measure the backend beside this script, whatever else is installed.
sys.path[:0] = [str(BENCH), str(BENCH.parent / "backend")]

import diffusers  # noqa: E402
import torch  # noqa: E402

import section_end_to_end  # noqa: E402
import section_export  # noqa: E402
import section_guidance  # noqa: E402
import section_nerf  # noqa: E402
import section_speedups  # noqa: E402
import section_train_step  # noqa: E402
from harness import Table, load_average, log, machine_table  # noqa: E402
from model_sources import SD21_RANDOM, ModelSource  # noqa: E402
from nfsd_backend.config import BUILTIN_MODELS  # noqa: E402

SECTIONS = ("guidance", "train", "nerf", "speedups", "export", "e2e")


@dataclass
class Plan:
    """What to measure and how often: one per mode."""

    mode: str  # quick | full
    threads: int  # torch CPU threads
    device: torch.device
    model: str  # sd21-random | tiny-random | a real model id, folder or file
    precisions: list[str]  # guidance cost precisions
    guidance_repeats: dict[str, int]  # timed runs per guidance figure, per method
    step_sizes: list[int]  # render sizes of the training step
    step_repeats: int
    nerf_points: int  # points per hash-grid / field measurement
    nerf_render_sizes: list[int]
    nerf_log2_table_size: int  # rows per hashed level of the hash grid (the default is 2^19)
    nerf_repeats: int
    export_resolutions: list[int]
    export_texture_size: int
    export_repeats: int
    e2e_flags: list[str]  # added to `nfsd generate ... --preset draft`
    e2e_repeats: int
    timesteps: list[int] = field(default_factory=lambda: [100, 300, 600, 900])


def make_plan(quick: bool, cuda: bool, model: str | None) -> Plan:
    device = torch.device("cuda" if cuda else "cpu")
    precisions = ["fp16", "fp32"] if cuda else ["fp32", "bf16"]
    if quick:
        # One thread: tiny tensors gain nothing from a second one, and on a busy machine OpenMP's
        # waiting for a preempted thread made tiny UNet calls 20x slower (measured).
        return Plan("quick", 1, device, model or "tiny-random", precisions, {"sds": 3, "nfsd": 3, "sdi": 2},
                    step_sizes=[32, 64], step_repeats=3, nerf_points=2**14, nerf_render_sizes=[16, 32],
                    nerf_log2_table_size=14, nerf_repeats=2,
                    export_resolutions=[32, 48], export_texture_size=256, export_repeats=1,
                    e2e_flags=["--steps", "4", "--mesh-resolution", "64", "--texture-size", "256"], e2e_repeats=1)
    # On the CPU one SD UNet call at batch 2 takes ~10 s and SDI at t=900 makes 11 of them.
    repeats = {"sds": 5, "nfsd": 5, "sdi": 3} if cuda else {"sds": 3, "nfsd": 3, "sdi": 1}
    # CPU-sized models are trained at 32-64 px renders (their presets); Stable Diffusion at 64 then 512.
    step_sizes = [64, 128] if model in BUILTIN_MODELS else [64, 512]
    return Plan("full", torch.get_num_threads(), device, model or SD21_RANDOM, precisions, repeats, step_sizes=step_sizes,
                step_repeats=5 if cuda else 3, nerf_points=2**18, nerf_render_sizes=[64, 128],
                nerf_log2_table_size=19, nerf_repeats=5,
                export_resolutions=[128, 256, 384], export_texture_size=1024, export_repeats=3,
                e2e_flags=[], e2e_repeats=3)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the harness in about a minute")
    parser.add_argument("--cuda", action="store_true", help="measure on the CUDA GPU (fp16 and fp32)")
    parser.add_argument("--model", help="a real model (hub id, folder, checkpoint) instead of SD 2.1-base's "
                                        "architecture with random weights")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--precisions", help="comma-separated guidance precisions instead of the mode's "
                                             "(CPU: fp32,bf16; CUDA: fp16,fp32)")
    parser.add_argument("--out", type=Path, help="report path (default bench/RESULTS.md; RESULTS-quick.md with "
                                                "--quick, RESULTS-cuda.md with --cuda)")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section {sorted(unknown)[0]!r}; choose from {', '.join(SECTIONS)}")
    if args.precisions and set(args.precisions.split(",")) - {"fp32", "bf16", "fp16"}:
        parser.error(f"--precisions takes fp32, bf16 and fp16, got {args.precisions!r}")
    if args.cuda and not torch.cuda.is_available():
        parser.error("--cuda was given but PyTorch sees no CUDA GPU")
    return args


def report(plan: Plan, tables: list[Table], started: float, machine: Table, failures: dict[str, str]) -> str:
    machine = dataclasses.replace(machine, rows=list(machine.rows))  # the end rows change at each write
    machine.add("load average at end (1 / 5 / 15 min)", load_average())
    machine.add("wall time of the whole run", f"{(time.time() - started) / 60:.1f} min")
    mode = {"quick": "`--quick`: tiny sizes, checks the harness; the figures say nothing about real cost",
            "full": "full scale"}[plan.mode]
    head = [
        "# Benchmark results", "",
        f"Written by `python bench/run.py` ({mode}; model `{plan.model}`; measured on "
        f"{'the GPU' if plan.device.type == 'cuda' else 'the CPU'}). Times are wall-clock seconds, "
        "the median of several runs after a warm-up, with the range (min-max) in brackets.", "",
    ]
    failed = [f"**Section `{name}` failed** (traceback in the run's output): {error}\n"
              for name, error in failures.items()]
    return "\n".join(head + failed) + "\n".join(table.markdown() + "\n" for table in [machine, *tables])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args.quick, args.cuda, args.model)
    if args.precisions:
        plan.precisions = args.precisions.split(",")
    torch.set_num_threads(plan.threads)
    diffusers.utils.logging.set_verbosity_error()  # casting random models to bf16 warns each time
    out = args.out or BENCH / ("RESULTS-quick.md" if args.quick else "RESULTS-cuda.md" if args.cuda else "RESULTS.md")
    sections = args.only.split(",")
    started = time.time()
    machine = machine_table(plan.device)
    log(f"{plan.mode} run of {', '.join(sections)} on {plan.device.type}, model {plan.model}; report -> {out}")
    source = ModelSource(plan.model, plan.device)
    tables: list[Table] = []
    runners = {
        "guidance": lambda: section_guidance.run(source, plan.precisions, plan.timesteps, plan.guidance_repeats,
                                                 plan.device)[0],
        "train": lambda: section_train_step.run(source, plan.step_sizes, plan.step_repeats, plan.device),
        "speedups": lambda: section_speedups.run(source, plan.nerf_render_sizes[-1], plan.nerf_log2_table_size,
                                                 plan.step_repeats, plan.device),
        "nerf": lambda: section_nerf.run(plan.nerf_points, plan.nerf_render_sizes, plan.nerf_log2_table_size,
                                         plan.nerf_repeats, plan.device),
        "export": lambda: section_export.run(plan.export_resolutions, plan.export_texture_size,
                                             plan.export_repeats),
        "e2e": lambda: section_end_to_end.run(plan.e2e_repeats, plan.e2e_flags, plan.device.type),
    }
    failures: dict[str, str] = {}
    for name in SECTIONS:  # in this order: the diffusion model is released before the NeRF-only sections
        if name == "nerf":
            source.release()
        if name not in sections:
            continue
        try:
            tables += runners[name]()
        except Exception as error:  # a bug in one section must not cost the hour the others take
            traceback.print_exc()
            failures[name] = f"{type(error).__name__}: {error}"
            log(f"section {name} failed: {failures[name]}")
        # Written after every section, so an interrupted hour-long run keeps what it measured.
        out.write_text(report(plan, tables, started, machine, failures), encoding="utf-8")
    log(f"wrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
