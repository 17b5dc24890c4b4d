"""The GPU check (issue 22): everything the backend must show on a CUDA machine, in one call that
fits a short lease: `bench/gpu_check.sh` (which calls this) on the device, `--rehearse` on a CPU.

    python bench/gpu_check.py --out DIR [--budget-s 480] [--only PART,...]
    python bench/gpu_check.py --out DIR --rehearse      # the same parts on the CPU at tiny sizes

Parts, in priority order, each with its own time budget (a part gets at most what is left of the
whole budget; one that cannot get its minimum is skipped, and the results say so):

| part | what |
|---|---|
| install | the carried wheels (.whl/) installed offline, without touching torch |
| environment | `nfsd doctor --json`, the machine and the versions |
| gpu_tests | `pytest -m gpu tests/gpu`, all but nerfacc's tests |
| toy_e2e | `nfsd generate "a yellow cylinder" --model toy-shapes --preset draft --device cuda`, judged like the CPU test |
| sd_nfsd | SD 2.1-base's architecture with random weights (save_pretrained, then the real loader): the real generate loop with NFSD at 64 and 512 px, default and --low-vram, then the export |
| sd_methods | the same for SDS and SDI, and at the standard preset's 256 px |
| memory_caps | the standard and high presets under 24 / 12 / 8 GiB caps (set_per_process_memory_fraction) |
| profile | torch.profiler's top ops over ~20 steps at 512 px and the FLOPs per step (torch.utils.flop_counter) |
| nerfacc | the nerfacc tests with nerfacc on the path (its CUDA code compiled in the background since the install) |

Each part runs in its own process (a CUDA error or a hang costs that part only; it is killed at its
budget) and writes its result file under --out as soon as it has each figure (DIR/<file>.json, at
most 6 files: the device tool returns 8, and gpu_check.sh adds its log); after every part DIR/RESULTS-cuda.md is written
again from all of them, so a run cut short keeps what it measured. `--rehearse` runs every part on
the CPU with the tiny random model and tiny sizes; what needs CUDA is run on its CPU twin or
reported as skipped with the reason.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from unittest import mock

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(BENCH), str(REPO / "backend"), str(REPO / "backend" / "tools")]

from harness import Table, backend_env, load_average, log, run_child, seconds  # noqa: E402

H200_PEAK_TFLOPS = 790.0  # dense bf16/fp16, as measured on this kind of machine (KINDS.md: 769-798)
PROMPT = "a ceramic lion"
TOY_PROMPT, TOY_EXPECTED = "a yellow cylinder", ("yellow", "cylinder")
# `nfsd generate "a red cube" --model toy-shapes --preset draft` on the development CPU (2-core EPYC),
# bench/RESULTS-export-e2e.md: the median of 3 runs, to set beside the GPU's wall time.
TOY_CPU_WALL_S = 128.0


# --- the plan: sizes and counts of each mode ---------------------------------------------------

@dataclass(frozen=True)
class Plan:
    device: str  # cuda | cpu
    model: str  # sd21-random | tiny-random
    early: int  # the presets' early render size (64 px)
    standard_late: int  # the standard preset's late size (256)
    high_late: int  # the high preset's late size (512)
    max_steps: int  # steps per generate measurement at most
    warmup_steps: int  # steps left out of the step times (first calls, the occupancy grid's first fill)
    phase_steps: int  # steps timed per phase (synchronised) at the end of each measurement
    profile_steps: int  # steps under torch.profiler
    memory_caps_gib: tuple[float | None, ...]  # None: no cap (the CPU rehearsal)
    extra_settings: dict  # merged into every generate config (the rehearsal's tiny field)
    toy_flags: tuple[str, ...]  # added to the toy-shapes command


DEVICE_PLAN = Plan("cuda", "sd21-random", 64, 256, 512, max_steps=300, warmup_steps=3, phase_steps=4,
                   profile_steps=20, memory_caps_gib=(24, 12, 8), extra_settings={}, toy_flags=())
REHEARSAL_PLAN = Plan("cpu", "tiny-random", 32, 40, 48, max_steps=6, warmup_steps=2, phase_steps=2, profile_steps=2,
                      memory_caps_gib=(None,),
                      extra_settings=json.loads((REPO / "tests" / "backend" / "small_generate_config.json").read_text())
                      | {"export": {"mesh_resolution": 32, "texture_size": 64}},
                      toy_flags=("--steps", "4", "--mesh-resolution", "32", "--texture-size", "64"))


@dataclass
class Context:
    """What a part gets: the mode, where to write, its deadline, and its result record."""

    plan: Plan
    rehearse: bool
    out: Path
    work: Path  # scratch space (the saved model, run folders); never under `out`
    deadline: float  # time.time() by which the part must be done
    result: "PartResult"

    def left(self) -> float:
        return self.deadline - time.time()


class PartResult:
    """A part's record in its result file (DIR/<file>.json, {"parts": {name: record}}): status,
    tables, notes, raw figures; saved atomically whenever something is added."""

    def __init__(self, out: Path, file: str, name: str):
        self.path = out / f"{file}.json"
        self.name = name
        self.record: dict[str, Any] = {"status": "running", "tables": [], "notes": [], "data": {}}

    def load_file(self) -> dict[str, Any]:
        return json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {"parts": {}}

    def save(self) -> None:
        content = self.load_file()
        content["parts"][self.name] = self.record
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(content, indent=1, default=str), encoding="utf-8")
        temporary.replace(self.path)

    def table(self, table: Table) -> None:
        """Add or replace (by title) a table, and save."""
        tables = [t for t in self.record["tables"] if t["title"] != table.title]
        self.record["tables"] = tables + [{"title": table.title, "columns": table.columns, "rows": table.rows,
                                           "notes": table.notes}]
        self.save()

    def note(self, text: str) -> None:
        self.record["notes"].append(text)
        self.save()


# --- running commands --------------------------------------------------------------------------

def child_env(work: Path, rehearse: bool, nerfacc: bool = False) -> dict[str, str]:
    """This checkout's backend first, the installed wheels, offline; nerfacc's folder only when asked:
    the training parts measure what a user's install (without nerfacc) runs."""
    env = backend_env()
    extra = [str(work / "site")] + ([str(work / "nerfacc-site")] if nerfacc else [])
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], *extra])
    env["TORCH_EXTENSIONS_DIR"] = str(work / "torch_extensions")
    if rehearse:
        # Tiny tensors gain nothing from threads; on a busy CPU OpenMP's waiting for a preempted
        # thread made the toy model's first step 37 s instead of seconds (measured).
        env["OMP_NUM_THREADS"] = "1"
    return env


def run_command(argv: list[str], timeout: float, env: dict[str, str] | None = None,
                cwd: Path = REPO) -> tuple[int | None, str, float]:
    """Run `argv` in its own process group, killed with its children at `timeout`; returns the exit
    code (None when killed), the output (stdout and stderr together) and the seconds it took."""
    started = time.time()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               cwd=cwd, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=max(1.0, timeout))
        return process.returncode, output, time.time() - started
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, output, time.time() - started


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- part: install -----------------------------------------------------------------------------

def part_install(ctx: Context) -> None:
    table = Table("Installed wheels (offline, --no-deps: torch stays the machine's)", ["wheel", "into", "result"])
    wheels = sorted((REPO / ".whl").glob("*.whl"))
    if ctx.rehearse or not wheels:
        ctx.result.record["status_reason"] = ("skipped: the rehearsal uses this environment's packages" if ctx.rehearse
                                              else "skipped: no .whl folder was carried (bench/fetch_gpu_wheels.sh)")
        ctx.result.table(table)
        return
    groups = {"site": [w for w in wheels if not w.name.startswith("nerfacc-")],
              "nerfacc-site": [w for w in wheels if w.name.startswith("nerfacc-")]}
    for folder, group in groups.items():
        if not group:
            continue
        code, output, took = run_command(
            [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
             "--upgrade", "--target", str(ctx.work / folder), *map(str, group)], ctx.left())
        for wheel in group:
            table.add(wheel.name, folder, "ok" if code == 0 else f"failed ({code})")
        ctx.result.table(table)
        if code != 0:
            raise RuntimeError(f"pip install into {folder} failed after {took:.0f} s:\n{tail(output)}")


# --- part: environment -------------------------------------------------------------------------

def part_environment(ctx: Context) -> None:
    import torch

    from harness import machine_table

    ctx.result.table(machine_table(torch.device(ctx.plan.device)))
    code, output, took = run_command([sys.executable, "-m", "nfsd_backend", "doctor", "--json"], ctx.left(),
                                     env=child_env(ctx.work, ctx.rehearse))
    if code != 0:
        raise RuntimeError(f"nfsd doctor --json failed ({code}):\n{tail(output)}")
    report = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    ctx.result.record["data"]["doctor"] = report
    table = Table(f"`nfsd doctor --json` ({took:.1f} s)", ["key", "value"])
    for key, value in report.items():
        table.add(key, json.dumps(value) if not isinstance(value, str) else value)
    ctx.result.table(table)


# --- part: gpu_tests ---------------------------------------------------------------------------

def junit_rows(path: Path) -> list[list[str]]:
    """(test, outcome, seconds, message) of each test case of a JUnit XML report."""
    import xml.etree.ElementTree as ElementTree

    rows = []
    for case in ElementTree.parse(path).iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[kind]
                message = (found.get("message") or "").splitlines()[0][:160] if found.get("message") else ""
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        rows.append([name, outcome, f"{float(case.get('time', 0)):.2f}", message.replace("|", "/")])
    return rows


def run_pytest(ctx: Context, title: str, selection: list[str], nerfacc: bool, killed_is_an_error: bool = True) -> None:
    """`pytest -m gpu SELECTION` within the part's budget, each test's outcome in a table."""
    report = ctx.work / f"junit-{ctx.result.name}.xml"
    argv = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-rfE",
            f"--junitxml={report}", *selection]
    code, output, took = run_command(argv, ctx.left() - 3, env=child_env(ctx.work, ctx.rehearse, nerfacc=nerfacc))
    table = Table(title, ["test", "outcome", "s", "message"], rows=junit_rows(report) if report.is_file() else [])
    counts = {o: sum(r[1] == o for r in table.rows) for o in ("passed", "FAILED", "ERROR", "skipped")}
    status = "killed at the part's budget" if code is None else f"exit {code}"
    table.notes.append(f"`pytest -m gpu {' '.join(selection)}`: {status} after {took:.0f} s; " +
                       (", ".join(f"{n} {o}" for o, n in counts.items() if n) or "no report"))
    ctx.result.record["data"]["pytest output"] = tail(output, 60)
    ctx.result.table(table)
    if code is None and not killed_is_an_error:
        return
    if code not in (0, 5) and not table.rows:  # 5: nothing collected
        raise RuntimeError(f"pytest ended without a report ({status}):\n{tail(output)}")
    failed = [row[0] for row in table.rows if row[1] in ("FAILED", "ERROR")]
    if failed:
        raise AssertionError(f"{len(failed)} GPU test(s) failed: {', '.join(failed)}")


def part_gpu_tests(ctx: Context) -> None:
    # The rehearsal runs one cheap test: the set's CPU twins run in CI anyway.
    selection = ["-k", "field_and_its_gradients"] if ctx.rehearse else ["-k", "not nerfacc"]
    run_pytest(ctx, "CUDA tests (`pytest -m gpu`), all but nerfacc's", ["tests/gpu", *selection], nerfacc=False)


def part_nerfacc(ctx: Context) -> None:
    """The nerfacc tests, nerfacc on the path. Its CUDA code compiles on first use: the
    orchestrator started that build in the background after the install (`start_nerfacc_build`), so
    the tests wait for it (torch's extension lock) rather than start it; a build that does not
    finish in the budget is reported, not failed (the issue: 'if it builds in reasonable time')."""
    selection = ["-k", "closed_form"] if ctx.rehearse else []
    log_file = ctx.work / "nerfacc-build.log"
    run_pytest(ctx, "nerfacc tests (nerfacc on the path)", ["tests/gpu/test_nerfacc.py", *selection], nerfacc=True,
               killed_is_an_error=False)
    if log_file.is_file():
        ctx.result.record["data"]["nerfacc build log"] = tail(log_file.read_text(errors="replace"), 30)
        ctx.result.save()


def start_nerfacc_build(work: Path) -> subprocess.Popen | None:
    """Compile nerfacc's CUDA code in the background (nice 19, 6 compile jobs of the 16 cores) while
    the other parts run, so that the nerfacc part, last, finds it built. None without nerfacc."""
    if not (work / "nerfacc-site" / "nerfacc").is_dir():
        return None
    env = child_env(work, rehearse=False, nerfacc=True) | {"MAX_JOBS": "6"}
    with open(work / "nerfacc-build.log", "w") as log_file:
        return subprocess.Popen(["nice", "-n", "19", sys.executable, "-c",
                                 "import nerfacc.cuda._backend as b; assert b._C is not None; print('nerfacc built')"],
                                stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)


# --- part: toy_e2e -----------------------------------------------------------------------------

def part_toy_e2e(ctx: Context) -> None:
    import trimesh
    from section_end_to_end import stage_seconds
    from toy_shapes_check import classify_solid, solid_measures

    out = ctx.work / "toy-run"
    command = ["generate", TOY_PROMPT, "--model", "toy-shapes", "--preset", "draft", "--method", "nfsd", "--seed", "0",
               "--device", ctx.plan.device, *ctx.plan.toy_flags]
    child = run_child([sys.executable, "-m", "nfsd_backend", *command, "--out", str(out), "--events", "jsonl"],
                      env=child_env(ctx.work, ctx.rehearse))
    if child.returncode != 0:
        raise RuntimeError(f"nfsd generate failed ({child.returncode}):\n{tail(child.stderr + child.stdout)}")
    events = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    progress = [e for e in events if e["event"] == "progress"]
    solid = solid_measures(trimesh.load(out / "mesh" / "model.glb", force="mesh"))
    verdict = (solid.colour, classify_solid(solid))
    table = Table(f"toy-shapes end to end: `nfsd {' '.join(command)}`",
                  ["wall s", "stages (s)", "steps", "it/s", "verdict (colour, shape)", "expected", "judged right",
                   "CPU wall s (2-core EPYC)"])
    table.add(seconds(child.seconds), ", ".join(f"{k} {seconds(v)}" for k, v in stage_seconds(events).items()),
              progress[-1]["step"], progress[-1]["it_per_s"], ", ".join(map(str, verdict)), ", ".join(TOY_EXPECTED),
              "yes" if verdict == TOY_EXPECTED else "NO", TOY_CPU_WALL_S)
    table.notes += ["judged like tests/backend/test_toy_generate.py: the exported mesh's texture colour and solid "
                    "measures (backend/tools/toy_shapes_check.py); one fresh process, model loading included.",
                    f"CPU wall: `\"a red cube\"`, same command on the CPU, median of 3 (bench/RESULTS-export-e2e.md)."]
    if ctx.rehearse:
        table.notes.append("rehearsal: 4 steps on the CPU, so the verdict says nothing.")
    ctx.result.table(table)


# --- the Stable Diffusion-scale parts ----------------------------------------------------------

def saved_model(ctx: Context) -> Path:
    """The plan's random model as a diffusers folder in the scratch space, written once per call."""
    import torch

    from model_sources import save_random_model

    folder = ctx.work / ctx.plan.model
    if not (folder / "model_index.json").is_file():
        started = time.time()
        save_random_model(ctx.plan.model, folder, torch.float16 if ctx.plan.device == "cuda" else torch.float32,
                          device=ctx.plan.device)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        ctx.result.note(f"{ctx.plan.model}: built with random weights and written with save_pretrained in "
                        f"{time.time() - started:.1f} s ({size / 2**30:.2f} GiB).")
    return folder


@dataclass
class Setting:
    method: str
    size: int
    low_vram: bool

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.size} px {'--low-vram' if self.low_vram else 'default'}"


def generate_config(ctx: Context, model_dir: Path, setting: Setting, steps: int, preset: str = "standard"):
    from nfsd_backend.config import merge, resolve_generate, validate_generate

    settings = merge(ctx.plan.extra_settings, {
        "prompt": PROMPT, "preset": preset, "steps": steps, "seed": 0,
        "model": {"name": str(model_dir), "device": ctx.plan.device, "low_vram": setting.low_vram},
        "guidance": {"method": setting.method},
        "train": {"render_size": setting.size, "render_size_late": None},
    })
    config = resolve_generate(settings)
    validate_generate(config)
    return config


class StepRecorder:
    """Listens to a generate run's events: perf_counter at each, stops the run after `steps` steps
    or near `seconds`, and has the last `phase_steps` steps timed by phase."""

    def __init__(self, steps: int, seconds_cap: float, phase_steps: int, warmup: int, control):
        self.steps, self.cap, self.phase_steps, self.warmup = steps, seconds_cap, phase_steps, warmup
        self.control = control
        self.marks: list[tuple[str, int | None, float]] = []  # (event, step, perf_counter)
        self.started = time.perf_counter()
        self.phase_from: int | None = None  # the first step (0-based) timed by phase
        self.phases: list[dict[str, float]] = []

    def __call__(self, event: dict) -> None:
        from nfsd_backend.control import STOP

        now = time.perf_counter()
        self.marks.append((event["event"], event.get("step"), now))
        if event["event"] != "progress":
            return
        step = event["step"]
        steps = [m for m in self.marks if m[0] == "progress"]
        per_step = (now - steps[0][2]) / max(1, len(steps) - 1) if len(steps) > 1 else now - self.started
        elapsed = now - self.started
        near_the_cap = elapsed + (self.phase_steps + 1) * per_step >= self.cap
        # Near the cap, still a few untimed steps after the warm-up first, unless twice the cap is gone.
        enough = step >= self.warmup + 3 or elapsed >= 2 * self.cap
        if self.phase_from is None and (step >= self.steps - self.phase_steps or (near_the_cap and enough)):
            self.phase_from = step
        if self.phase_from is not None and step >= self.phase_from + self.phase_steps:
            self.control.request(STOP)

    def train_step(self, real: Callable) -> Callable:
        """Trainer.train_step, timing phases once `phase_from` is set."""
        recorder = self

        def timed(trainer, timings=None):
            if recorder.phase_from is not None and trainer.step >= recorder.phase_from:
                timings = {}
                recorder.phases.append(timings)
            return real(trainer, timings=timings)

        return timed

    def figures(self) -> dict[str, Any]:
        """Step times of the untimed steps after the warm-up, excluding those with a preview or a
        checkpoint; the preview, checkpoint and model-load costs; the phase medians."""
        intervals, previews, checkpoints = [], [], []
        last_progress: tuple[int, float] | None = None
        interrupted = False
        stage_times = {}
        for kind, step, at in self.marks:
            if kind == "stage":
                stage_times.setdefault(len(stage_times), at)
            if kind == "progress":
                if last_progress is not None and not interrupted and step > self.warmup and \
                        (self.phase_from is None or step <= self.phase_from):
                    intervals.append(at - last_progress[1])
                last_progress, interrupted = (step, at), False
            elif kind in ("preview", "checkpoint") and last_progress is not None:
                (previews if kind == "preview" else checkpoints).append(at - last_progress[1])
                last_progress, interrupted = (last_progress[0], at), True
        steps_done = max((s for k, s, _ in self.marks if k == "progress"), default=0)
        phases = {p: statistics.median(t.get(p, 0.0) for t in self.phases) for p in
                  ("render", "encode", "guidance", "backward")} if self.phases else {}
        return {"steps": steps_done, "timed_steps": len(intervals),
                "step_s": statistics.median(intervals) if intervals else None,
                "preview_s": statistics.median(previews) if previews else None,
                "checkpoint_s": statistics.median(checkpoints) if checkpoints else None,
                "load_s": stage_times[1] - stage_times[0] if len(stage_times) > 1 else None,
                "phases": phases}


def measure_generate(ctx: Context, model_dir: Path, setting: Setting, seconds_cap: float,
                     steps: int | None = None, preset: str = "standard", keep: bool = False) -> dict[str, Any]:
    """The real generate loop (`train.train_and_export`, what `nfsd generate` runs) for one setting,
    stopped by a `stop` request after `steps` steps (the schedule spans those steps, so SDI sweeps
    its whole t range) or near `seconds_cap`; peak memory over the whole run, model load included."""
    import shutil

    import torch

    from harness import PeakMemory
    from nfsd_backend.control import RunControl
    from nfsd_backend.diffusion.loading import resolve_dtype
    from nfsd_backend.events import EventStream
    from section_train_step import PRECISION_NAMES
    from nfsd_backend.rundir import attach_log, detach_logs, prepare_run_dir, release_run_dirs
    from nfsd_backend.train import Trainer, train_and_export

    steps = steps or ctx.plan.max_steps
    config = generate_config(ctx, model_dir, setting, steps, preset)
    out = prepare_run_dir(ctx.work / "runs" / f"{setting.method}-{setting.size}-{int(setting.low_vram)}-{preset}",
                          fresh=False)
    control = RunControl()
    recorder = StepRecorder(steps, seconds_cap, ctx.plan.phase_steps, ctx.plan.warmup_steps, control)
    events = EventStream(listeners=[recorder])
    attach_log(out)
    events.attach_run_dir(out)
    device = torch.device(ctx.plan.device)
    started = time.perf_counter()
    try:
        with PeakMemory(device) as peak, mock.patch.object(Trainer, "train_step",
                                                           recorder.train_step(Trainer.train_step)):
            code = train_and_export(config, out, None, events, control)
    finally:
        events.detach()
        detach_logs()
        release_run_dirs()  # prepare_run_dir locked the folder; the export runs in a child process
    figures = recorder.figures() | {"exit": code, "wall_s": time.perf_counter() - started,
                                    "peak_gib": None if peak.peak_bytes is None else peak.peak_bytes / 2**30,
                                    "precision": PRECISION_NAMES[resolve_dtype(config.model.precision, device,
                                                                               config.model.low_vram)],
                                    "setting": setting.__dict__, "preset": preset,
                                    "chunk_rays": config.train.render.chunk_rays}
    if device.type == "cuda":
        figures["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    if keep:  # its checkpoint is exported next
        figures["run_dir"] = str(out)
    else:
        shutil.rmtree(out, ignore_errors=True)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return figures


RUN_COLUMNS = ["setting", "precision", "steps (timed)", "it/s", "s / step", "render s", "encode s", "guidance s",
               "backward s", "preview s", "load s", "peak GiB"]


def run_row(run: dict[str, Any]) -> list[str]:
    setting = Setting(**run["setting"])
    cell = lambda value: "—" if value is None else seconds(value)  # noqa: E731
    phases = run["phases"]
    return [setting.label, run["precision"], f"{run['steps']} ({run['timed_steps']})",
            "—" if not run["step_s"] else f"{1 / run['step_s']:.3g}", cell(run["step_s"]),
            *[cell(phases.get(p)) for p in ("render", "encode", "guidance", "backward")],
            cell(run["preview_s"]), cell(run["load_s"]), cell(run["peak_gib"])]


def measure_settings(ctx: Context, settings: list[Setting], title: str, reserve_s: float = 0.0,
                     keep_first: bool = False) -> None:
    """Measure each setting while the budget lasts, saving the table after each."""
    model_dir = saved_model(ctx)
    table = Table(title, RUN_COLUMNS, notes=[
        "the real generate loop (`train.train_and_export`: events, previews every 100 steps, checkpoint on stop), "
        "stopped with `stop` after the steps shown; render size pinned; seed 0.",
        f"s / step: median over the steps after the first {ctx.plan.warmup_steps}, without the steps that wrote a "
        "preview or checkpoint (those are `preview s`); it/s = 1 / that. Each step ends with `loss.item()`, a "
        "host sync, so the intervals hold the GPU's work.",
        f"phases: medians of the last {ctx.plan.phase_steps} steps, timed with a synchronise between phases "
        "(`Trainer.train_step(timings=...)`, as bench/section_train_step.py).",
        "peak GiB: torch.cuda.max_memory_allocated over the whole run, weights included (RSS on the CPU); "
        "load s: the loader's model_load stage (from_pretrained of the saved folder, prompts encoded)."])
    runs = ctx.result.record["data"].setdefault("runs", [])
    for index, setting in enumerate(settings):
        left = ctx.left() - reserve_s
        share = left / (len(settings) - index)
        if left < (8 if ctx.rehearse else 25):
            table.notes.append(f"not measured for lack of budget: {', '.join(s.label for s in settings[index:])}.")
            break
        log(f"{setting.label}: up to {ctx.plan.max_steps} steps or {share:.0f} s")
        try:
            run = measure_generate(ctx, model_dir, setting, share, keep=keep_first and not runs)
        except Exception as error:  # one setting's failure (out of memory, say) must not cost the others
            traceback.print_exc()
            table.notes.append(f"{setting.label} failed: {type(error).__name__}: {str(error)[:300]}")
            ctx.result.table(table)
            continue
        runs.append(run)
        table.add(*run_row(run))
        ctx.result.table(table)


def part_sd_nfsd(ctx: Context) -> None:
    plan = ctx.plan
    settings = [Setting("nfsd", plan.early, False), Setting("nfsd", plan.high_late, False),
                Setting("nfsd", plan.early, True), Setting("nfsd", plan.high_late, True)]
    if ctx.rehearse:
        settings = [settings[0], settings[3]]
    export_s = 30 if not ctx.rehearse else 5
    measure_settings(ctx, settings, f"NFSD at {plan.model} scale ({plan.device})", reserve_s=export_s,
                     keep_first=True)
    measure_export(ctx)


def part_sd_methods(ctx: Context) -> None:
    plan = ctx.plan
    settings = [Setting("nfsd", plan.standard_late, False), Setting("sds", plan.early, False),
                Setting("sds", plan.high_late, False), Setting("sdi", plan.early, False),
                Setting("sdi", plan.high_late, False), Setting("sds", plan.standard_late, False),
                Setting("sdi", plan.standard_late, False), Setting("nfsd", plan.standard_late, True),
                Setting("sds", plan.early, True), Setting("sds", plan.high_late, True),
                Setting("sdi", plan.early, True), Setting("sdi", plan.high_late, True)]
    if ctx.rehearse:  # NFSD's late size too, so that the projections have a row to rehearse
        settings = [Setting("nfsd", plan.high_late, False), settings[1]]
    measure_settings(ctx, settings, f"SDS and SDI, and the standard preset's late size ({plan.device})")


def measure_export(ctx: Context) -> None:
    """`nfsd export RUN --device ...` of the first NFSD run's checkpoint (the presets' export
    settings: the standard and high presets export alike), in a fresh process as a user runs it."""
    import shutil

    from section_end_to_end import stage_seconds

    runs = ctx.result.record["data"].get("runs", [])
    run_dir = next((Path(r["run_dir"]) for r in runs if r.get("run_dir")), None)
    if run_dir is None or ctx.left() < (3 if ctx.rehearse else 20):
        ctx.result.note("export: not measured (" + ("no run to export" if run_dir is None else "lack of budget") + ").")
        return
    child = run_child([sys.executable, "-m", "nfsd_backend", "export", str(run_dir), "--device", ctx.plan.device,
                       "--events", "jsonl"], env=child_env(ctx.work, ctx.rehearse))
    events = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["export"]
    done = next((e for e in events if e["event"] == "done"), None)
    table = Table("Export (`nfsd export RUN --device ...`, a fresh process)",
                  ["mesh resolution", "texture", "wall s", "export s (done event)", "stages (s)", "result"])
    table.add(config["mesh_resolution"], config["texture_size"], seconds(child.seconds),
              "—" if done is None else seconds(done["elapsed_s"]),
              ", ".join(f"{k} {seconds(v)}" for k, v in stage_seconds(events).items()),
              "done" if done else f"exit {child.returncode}: {events[-1].get('message', '')[:120] if events else ''}")
    table.notes.append("the checkpoint of the first NFSD run above (a short run of a random model: its field is "
                       "still near the initial blob, so the mesh is simple); wall s includes starting Python and "
                       "loading torch, export s is the backend's own figure.")
    ctx.result.record["data"]["export_s"] = done["elapsed_s"] if done else None
    ctx.result.table(table)
    shutil.rmtree(run_dir, ignore_errors=True)


# --- part: memory_caps -------------------------------------------------------------------------

def part_memory_caps(ctx: Context) -> None:
    import torch

    from nfsd_backend.errors import OutOfMemory

    plan = ctx.plan
    model_dir = saved_model(ctx)
    cases = [("high", False), ("high", True), ("standard", False), ("standard", True)]
    if ctx.rehearse:
        cases = cases[2:3]
    caps = plan.memory_caps_gib
    cap_name = lambda cap: "no cap (CPU)" if cap is None else f"{cap:g} GiB"  # noqa: E731
    table = Table("Memory caps: does a preset fit a card of this size?",
                  ["preset", "setting", "late size", *[cap_name(c) for c in caps]])
    table.notes += ["each cell: the preset's late render size (--low-vram caps it at 256 px) for a few steps under "
                    "torch.cuda.set_per_process_memory_fraction(cap / card), model load included; 'fits (x GiB)' "
                    "gives torch.cuda.max_memory_allocated. A real card also holds the CUDA context and the display "
                    "(about 0.5-1 GiB), which the cap does not count.",
                    "a cap under one that ran out of memory is not tried ('no, as at ...')."]
    if ctx.rehearse:
        table.notes.append("rehearsal: no CUDA, so no cap can be set; the same runs without one.")
    from nfsd_backend.config import preset_settings

    total = torch.cuda.get_device_properties(0).total_memory if plan.device == "cuda" else None
    for preset, low_vram in cases:
        late = preset_settings(preset, str(model_dir), low_vram)["train"]["render_size_late"]
        if ctx.rehearse:
            late = plan.high_late
        cells, failed_at = [], None
        for cap in caps:
            if failed_at is not None:
                cells.append(f"no, as at {cap_name(failed_at)}")
                continue
            if ctx.left() < (5 if ctx.rehearse else 15):
                cells.append("not run (budget)")
                continue
            if cap is not None:
                torch.cuda.empty_cache()
                torch.cuda.set_per_process_memory_fraction(min(1.0, cap * 2**30 / total))
            try:
                run = measure_generate(ctx, model_dir, Setting("nfsd", late, low_vram), ctx.left(),
                                       steps=plan.warmup_steps + plan.phase_steps, preset=preset)
                cells.append(f"fits ({run['peak_gib']:.2f} GiB)")
            except OutOfMemory:
                cells.append("out of memory")
                failed_at = cap
            except Exception as error:  # an allocation failing outside the caching allocator is a finding too
                traceback.print_exc()
                cells.append(f"error: {type(error).__name__}: {str(error)[:80]}".replace("|", "/"))
                failed_at = cap
            finally:
                if cap is not None:
                    torch.cuda.set_per_process_memory_fraction(1.0)
                gc.collect()
            table.rows = [r for r in table.rows if r[:2] != [preset, "--low-vram" if low_vram else "default"]]
            table.add(preset, "--low-vram" if low_vram else "default", late, *cells, *[""] * (len(caps) - len(cells)))
            ctx.result.table(table)


# --- part: profile -----------------------------------------------------------------------------

def part_profile(ctx: Context) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from harness import time_runs
    from nfsd_backend.config import ModelConfig
    from nfsd_backend.diffusion import load_model
    from section_train_step import STEP_T, make_trainer

    plan = ctx.plan
    device = torch.device(plan.device)
    model = load_model(ModelConfig(name=str(saved_model(ctx)), device=plan.device))
    trainer = make_trainer(model, plan.high_late, low_vram=False, extra_settings=plan.extra_settings)
    for _ in range(plan.warmup_steps):
        trainer.train_step()
    timing = time_runs(trainer.train_step, plan.phase_steps, device, warmup=0)
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    flops = counter.get_total_flops()
    by_op = sorted(counter.get_flop_counts().get("Global", {}).items(), key=lambda item: -item[1])
    achieved = flops / timing.median / 1e12
    table = Table(f"FLOPs per step at {plan.high_late} px (NFSD at t={STEP_T}, diffuse shading, {model.dtype})",
                  ["TFLOP / step", "s / step", "achieved TFLOP/s", f"of the {H200_PEAK_TFLOPS:g} TFLOP/s peak",
                   "largest ops (TFLOP)"])
    table.add(f"{flops / 1e12:.3g}", timing.cell(), f"{achieved:.3g}",
              f"{100 * achieved / H200_PEAK_TFLOPS:.1f}%" if device.type == "cuda" else "— (CPU)",
              ", ".join(f"{op} {count / 1e12:.3g}" for op, count in by_op[:5]))
    table.notes += ["torch.utils.flop_counter.FlopCounterMode over one `Trainer.train_step` (forward and backward): "
                    "it counts matrix products and convolutions (the hash grid's gathers and the compositing move "
                    "bytes, not FLOPs); s / step: median of separately timed steps.",
                    f"peak: dense bf16/fp16 matrix rate measured on this kind of machine (KINDS.md)."]
    ctx.result.table(table)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        for _ in range(plan.profile_steps):
            trainer.train_step()
    key = "device" if device.type == "cuda" else "cpu"
    events = sorted(profiler.key_averages(), key=lambda e: -_self_time(e, key))
    total = sum(_self_time(e, key) for e in events) or 1.0
    top = Table(f"Where the time goes: top ops by self {key.upper()} time over {plan.profile_steps} steps at "
                f"{plan.high_late} px", ["op", "calls", f"self {key} ms", "share", "CPU ms (total)"])
    for event in events[:15]:
        top.add(event.key.replace("|", "/")[:80], event.count, f"{_self_time(event, key) / 1e3:.3g}",
                f"{100 * _self_time(event, key) / total:.1f}%", f"{event.cpu_time_total / 1e3:.3g}")
    top.notes.append("torch.profiler key_averages, sorted by self time; share = of all ops' self time.")
    ctx.result.table(top)


def _self_time(event, key: str) -> float:
    """An op's self time in microseconds on the device (CUDA) or the CPU; torch renamed cuda_* to device_*."""
    if key == "cpu":
        return float(event.self_cpu_time_total)
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


# --- the parts and the report ------------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    name: str
    file: str  # result file DIR/<file>.json (parts may share one: the device tool returns 8 files)
    budget_s: float  # on the device
    minimum_s: float  # skipped when less than this is left
    rehearsal_budget_s: float
    run: Callable[[Context], None]
    title: str


PARTS = [
    Part("install", "environment", 60, 20, 20, part_install, "Installing the carried wheels"),
    Part("environment", "environment", 40, 10, 30, part_environment, "Machine and `nfsd doctor --json`"),
    Part("gpu_tests", "gpu_tests", 60, 20, 60, part_gpu_tests, "CUDA tests"),
    Part("toy_e2e", "toy_e2e", 60, 20, 60, part_toy_e2e, "toy-shapes end to end"),
    Part("sd_nfsd", "sd_scale", 140, 60, 60, part_sd_nfsd, "Stable Diffusion scale: NFSD"),
    Part("sd_methods", "sd_scale", 60, 30, 60, part_sd_methods, "Stable Diffusion scale: SDS, SDI, 256 px"),
    Part("memory_caps", "memory_caps", 45, 20, 40, part_memory_caps, "Memory caps"),
    Part("profile", "profile", 35, 15, 40, part_profile, "Where the time goes"),
    Part("nerfacc", "gpu_tests", 60, 20, 30, part_nerfacc, "nerfacc"),
]
RESULT_FILES = sorted({part.file for part in PARTS})
REPORT_NAME = "RESULTS-cuda.md"
GRACE_S = 10.0  # a part is stopped this long after its budget (its own checks of the time left come first)


def projections(runs: list[dict[str, Any]], export_s: float | None, plan: Plan) -> Table:
    """The whole run of each preset from the measured step times: load + early steps x s/step at
    64 px + late steps x s/step at the late size + previews + checkpoints + export."""
    from nfsd_backend.config import preset_settings

    table = Table("Projected whole runs (from the step times above)",
                  ["preset", "method", "setting", "steps (early + late)", "late size", "train min", "+ export s",
                   "total min"])
    by_key = {(r["setting"]["method"], r["setting"]["size"], r["setting"]["low_vram"]): r for r in runs if r["step_s"]}
    for preset in ("standard", "high"):
        for method in ("nfsd", "sds", "sdi"):
            for low_vram in (False, True):
                resolved = preset_settings(preset, "stable-diffusion", low_vram)  # SD's presets, in both modes
                steps, late = resolved["steps"], resolved["train"]["render_size_late"]
                late = {256: plan.standard_late, 512: plan.high_late}[late]
                early_run, late_run = by_key.get((method, plan.early, low_vram)), by_key.get((method, late, low_vram))
                label = "--low-vram" if low_vram else "default"
                early_steps = int(0.2 * steps)  # render_size_switch_at's default
                if early_run is None or late_run is None:
                    continue
                previews, checkpoints = steps // 100, steps // 500
                train_s = (late_run["load_s"] or 0) + early_steps * early_run["step_s"] + \
                    (steps - early_steps) * late_run["step_s"] + previews * (late_run["preview_s"] or 0) + \
                    checkpoints * (late_run["checkpoint_s"] or 0)
                table.add(preset, method.upper(), label, f"{early_steps} + {steps - early_steps}", late,
                          f"{train_s / 60:.3g}", "—" if export_s is None else seconds(export_s),
                          f"{(train_s + (export_s or 0)) / 60:.3g}")
    table.notes += ["only where both sizes were measured; previews every 100 steps and checkpoints every 500 at the "
                    "measured costs; the switch to the late size at 20% of the run; SDI's cost depends on t, which "
                    "its schedule sweeps over the measured steps as over a whole run.",
                    "--low-vram caps the presets' late size at 256 px, so its high-preset row uses the 256 px step."]
    return table


def report(out: Path, plan: Plan, rehearse: bool, started: float) -> str:
    """RESULTS-cuda.md from every result file present."""
    records: dict[str, dict[str, Any]] = {}
    for file in RESULT_FILES:
        path = out / f"{file}.json"
        if path.is_file():
            records |= json.loads(path.read_text(encoding="utf-8"))["parts"]
    mode = ("**Rehearsal on the CPU** (`--rehearse`): tiny model, tiny sizes; the figures say nothing about "
            "real cost, only that every part runs." if rehearse else
            "Measured on the GPU machine by `bench/gpu_check.sh` (one call; every figure below is from that run).")
    lines = ["# GPU check results", "", mode, "",
             f"Written {time.strftime('%Y-%m-%d %H:%M %Z')}, {(time.time() - started) / 60:.1f} min after the start; "
             f"load average {load_average()}.", "", "| part | status | seconds (budget) |", "|---|---|---|"]
    for part in PARTS:
        record = records.get(part.name, {"status": "not reached"})
        status = record.get("status_reason") or record["status"]
        took = f"{record['seconds']:.0f} ({record['budget_s']:.0f})" if "seconds" in record else "—"
        lines.append(f"| {part.name} | {status.replace('|', '/')} | {took} |")
    lines.append("")
    for part in PARTS:
        record = records.get(part.name)
        if record is None:
            continue
        lines += [f"## {part.title}", ""]
        if record.get("error"):
            lines += ["```", record["error"], "```", ""]
        lines += [f"- {note}" for note in record["notes"]] + ([""] if record["notes"] else [])
        for table in record["tables"]:
            lines.append(Table(table["title"], table["columns"], table["rows"], table["notes"]).markdown())
        if part.name == "sd_methods" or (part.name == "sd_nfsd" and "sd_methods" not in records):
            runs = [r for name in ("sd_nfsd", "sd_methods") for r in records.get(name, {}).get("data", {}).get("runs", [])]
            export_s = records.get("sd_nfsd", {}).get("data", {}).get("export_s")
            lines.append(projections(runs, export_s, plan).markdown())
    return "\n".join(lines).rstrip() + "\n"


def run_part_here(name: str, ctx: Context) -> int:
    """`--part NAME`: one part in this process; its result file says how it ended."""
    import importlib

    part = next(p for p in PARTS if p.name == name)
    started = time.time()
    site = ctx.work / "site"  # the installed wheels (part install), for this process's own imports
    if site.is_dir() and str(site) not in sys.path:
        sys.path.append(str(site))
        importlib.invalidate_caches()
    ctx.result.save()
    try:
        part.run(ctx)
        code = 0
    except Exception:
        traceback.print_exc()
        ctx.result.record["error"] = tail(traceback.format_exc(), 25)
        code = 1
    ctx.result.record["status"] = "ok" if code == 0 else "failed"
    ctx.result.record["seconds_inside"] = time.time() - started
    ctx.result.save()
    return code


class OverBudget(BaseException):
    """Raised by the alarm in a part run in this process (BaseException: a part's `except Exception`
    must not swallow it)."""


def run_part(part: Part, args: argparse.Namespace, plan: Plan, budget: float) -> int | None:
    """Run `part` within `budget` seconds: its exit code, or None when it was stopped at its budget.

    Normally in a child process of its own (a CUDA error or a hang costs that part only), killed
    with its children at the budget; its output streams into this process's own. With
    --in-process (the rehearsal's test: no Python start-up per part), here, stopped by an alarm."""
    deadline = time.time() + budget
    if args.in_process:
        ctx = Context(plan, args.rehearse, args.out, args.work, deadline, PartResult(args.out, part.file, part.name))

        def on_alarm(signum, frame):
            raise OverBudget

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, budget + GRACE_S)
        try:
            return run_part_here(part.name, ctx)
        except OverBudget:
            return None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    argv = [sys.executable, str(Path(__file__).resolve()), "--part", part.name, "--out", str(args.out),
            "--work", str(args.work), "--part-deadline", str(deadline)] + (["--rehearse"] if args.rehearse else [])
    process = subprocess.Popen(argv, start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        return process.wait(timeout=budget + GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


def orchestrate(args: argparse.Namespace, plan: Plan) -> int:
    out = args.out
    for stale in [*(out / f"{file}.json" for file in RESULT_FILES), out / REPORT_NAME]:
        stale.unlink(missing_ok=True)  # a previous call's results must not pass for this one's
    started = time.time()
    deadline = started + args.budget_s
    only = set(args.only.split(",")) if args.only else None
    failures = 0
    nerfacc_build = None
    for part in PARTS:
        result = PartResult(out, part.file, part.name)
        left = deadline - time.time()
        budget = min(part.rehearsal_budget_s if args.rehearse else part.budget_s, left)
        if only is not None and part.name not in only:
            continue
        if left < (part.minimum_s if not args.rehearse else 5):
            result.record.update(status=f"skipped: {left:.0f} s of the budget left, the part needs {part.minimum_s:.0f} s")
            result.save()
            log(f"{part.name}: {result.record['status']}")
        else:
            log(f"{part.name}: budget {budget:.0f} s")
            part_started = time.time()
            code = run_part(part, args, plan, budget)
            record = result.load_file()["parts"].get(part.name, result.record)
            record.update(seconds=time.time() - part_started, budget_s=budget)
            if code is None:
                record["status"] = f"timed out: killed at its budget of {budget:.0f} s (what it wrote is kept)"
            elif code != 0 and record.get("status") in ("ok", "running"):
                record["status"] = f"failed: exit code {code}"
            result.record = record
            result.save()
            failures += record["status"] != "ok"
            log(f"{part.name}: {record['status']} after {record['seconds']:.0f} s")
        (out / REPORT_NAME).write_text(report(out, plan, args.rehearse, started), encoding="utf-8")
        if part.name == "install" and not args.rehearse:
            nerfacc_build = start_nerfacc_build(args.work)
    if nerfacc_build is not None and nerfacc_build.poll() is None:
        os.killpg(nerfacc_build.pid, signal.SIGKILL)
    log(f"wrote {out / REPORT_NAME} ({(time.time() - started) / 60:.1f} min)")
    return 1 if failures else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                        help="where the result files and RESULTS-cuda.md go (default: $OUT)")
    parser.add_argument("--rehearse", action="store_true", help="every part on the CPU at tiny sizes")
    parser.add_argument("--budget-s", type=float, help="the whole call's time budget (default 480; rehearsal 300)")
    parser.add_argument("--only", help=f"comma-separated parts (default all: {','.join(p.name for p in PARTS)})")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temporary folder)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the parts in this process, stopped by an alarm at their budgets, instead of one "
                             "child process each (saves a Python start-up per part: the rehearsal's test)")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # run one part in this process (the orchestrator's child)
    parser.add_argument("--part-deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("say where the results go: --out DIR (or set OUT)")
    if args.only and set(args.only.split(",")) - {p.name for p in PARTS}:
        parser.error(f"unknown part in --only {args.only!r}; parts: {', '.join(p.name for p in PARTS)}")
    if args.budget_s is None:
        args.budget_s = 300.0 if args.rehearse else 480.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = REHEARSAL_PLAN if args.rehearse else DEVICE_PLAN
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part is not None:
        import torch

        torch.set_num_threads(1 if args.rehearse else torch.get_num_threads())
        part = next(p for p in PARTS if p.name == args.part)
        ctx = Context(plan, args.rehearse, args.out, args.work, args.part_deadline,
                      PartResult(args.out, part.file, part.name))
        return run_part_here(args.part, ctx)
    if not args.rehearse:
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: PyTorch sees no CUDA GPU; on a CPU use --rehearse.", file=sys.stderr)
            return 2
    if args.in_process:
        import torch

        torch.set_num_threads(1 if args.rehearse else torch.get_num_threads())
    args.work = args.work or Path(tempfile.mkdtemp(prefix="nfsd-gpu-check-"))
    args.work.mkdir(parents=True, exist_ok=True)
    log(f"{'rehearsal' if args.rehearse else 'GPU check'}: results -> {args.out}, scratch {args.work}, "
        f"budget {args.budget_s:.0f} s")
    return orchestrate(args, plan)


if __name__ == "__main__":
    sys.exit(main())
