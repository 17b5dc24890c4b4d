"""What every benchmark shares: timing (the median of several runs after a warm-up), peak memory,
a description of the machine, and the markdown tables RESULTS.md is made of."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch

from peak_rss_child import rss_high_water_bytes  # defined beside the child wrapper, which must stay stdlib-only

REPO = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    """Progress for whoever watches the run (stderr: the tables go to the results file)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- tables ----------------------------------------------------------------------------------------

@dataclass
class Table:
    """One markdown table of RESULTS.md, with the notes that say how to read it."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([str(cell) for cell in cells])

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines += [f"| {' | '.join(self.columns)} |", f"|{'|'.join('---' for _ in self.columns)}|"]
        lines += [f"| {' | '.join(row)} |" for row in self.rows]
        if not self.rows:
            lines.append(f"| {' | '.join('—' for _ in self.columns)} |")
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def seconds(value: float) -> str:
    """Three significant figures, e.g. 10.4, 0.0123."""
    return f"{value:.3g}"


def count(value: float) -> str:
    """Three significant figures with a k / M suffix, e.g. 72.6k, 1.23M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator > 0 else "—"


# --- timing ----------------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall clock read after it includes that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Wall times of repeated runs of one thing, in seconds, and the process's CPU time in each."""

    runs: list[float]
    cpu_runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def cpu_share(self) -> str:
        return cpu_share(sum(self.cpu_runs), sum(self.runs))

    def cell(self) -> str:
        """'10.4' for one run; '10.4 (10.1-10.9)' with the spread of several."""
        if len(self.runs) == 1:
            return seconds(self.runs[0])
        return f"{seconds(self.median)} ({seconds(min(self.runs))}-{seconds(max(self.runs))})"


def time_runs(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 1) -> Timing:
    """Wall time of `fn` over `repeats` runs after `warmup` untimed ones (first-call allocation,
    oneDNN/cuDNN kernel selection)."""
    for _ in range(warmup):
        fn()
        synchronize(device)
    runs, cpu_runs = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        runs.append(time.perf_counter() - start)
        cpu_runs.append(time.process_time() - start_cpu)
    return Timing(runs, cpu_runs)


OWN_CPU_NOTE = ("own CPU = the process's CPU time / (wall time x torch threads): about 100% when it had its "
                "cores to itself; lower means other processes took them and the wall times are inflated.")


def cpu_share(cpu_seconds: float, wall_seconds: float) -> str:
    """The process's CPU time over wall time x torch threads: ~100% when it had its cores to
    itself, lower when other processes took them (its wall times are then inflated)."""
    return f"{100 * cpu_seconds / (wall_seconds * torch.get_num_threads()):.0f}%"


# --- memory ----------------------------------------------------------------------------------------


class PeakMemory:
    """Peak memory of the code inside the `with`: on CUDA `torch.cuda.max_memory_allocated` (what
    tensors hold, the figure that decides whether a card fits), on the CPU the process's peak
    resident set (VmHWM, reset by writing 5 to /proc/self/clear_refs; Linux only). Both include
    the model weights and everything else alive at the time."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes: int | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif Path("/proc/self/clear_refs").exists():
            Path("/proc/self/clear_refs").write_text("5")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self.peak_bytes = rss_high_water_bytes()

    def cell(self) -> str:
        return "—" if self.peak_bytes is None else f"{self.peak_bytes / 2**30:.2f}"


@dataclass
class ChildRun:
    """A finished child process: its wall time, its own peak RSS, its output."""

    seconds: float
    peak_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str


PEAK_RSS_CHILD = Path(__file__).resolve().parent / "peak_rss_child.py"


def run_child(argv: list[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run the Python command `argv` ([sys.executable, "-m", module, ...] or [sys.executable,
    script, ...]) to completion, with its own peak RSS (a fresh process per measurement is the
    only way a peak belongs to one measurement alone). The child records VmHWM itself at exit
    (peak_rss_child.py): the ru_maxrss that `wait4` reports would include this process's resident
    set, which the child had before its exec."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.TemporaryDirectory() as folder:
        peak_file = Path(folder) / "peak_rss"
        child_env = dict(env if env is not None else os.environ, BENCH_PEAK_RSS_FILE=str(peak_file))
        process = subprocess.Popen([argv[0], str(PEAK_RSS_CHILD), *argv[1:]], stdout=out, stderr=err,
                                   env=child_env, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
        peak = int(peak_file.read_text()) if peak_file.exists() else usage.ru_maxrss * 1024
        out.seek(0)
        err.seek(0)
        return ChildRun(elapsed, peak, process.returncode, out.read(), err.read())


def backend_env() -> dict[str, str]:
    """The environment for a child that must run this checkout's backend, offline."""
    path = os.pathsep.join(p for p in (str(REPO / "backend"), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, HF_HUB_OFFLINE="1")


def memory_kind(device: torch.device) -> str:
    return "peak allocated GiB (CUDA)" if device.type == "cuda" else "peak RSS GiB"


# --- the machine -----------------------------------------------------------------------------------

def load_average() -> str:
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_total_gib() -> float | None:
    """The machine's RAM in GiB (/proc/meminfo), or None where that cannot be read."""
    try:
        return int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20
    except (OSError, AttributeError):
        return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "") if out.returncode == 0 \
            else "unknown"
    except OSError:
        return "unknown"


def machine_table(device: torch.device) -> Table:
    table = Table("Machine", ["what", "value"])
    table.add("date", time.strftime("%Y-%m-%d %H:%M %Z"))
    table.add("CPU", f"{cpu_name()}, {os.cpu_count()} logical cores")
    table.add("torch threads", torch.get_num_threads())
    memory = memory_total_gib()
    table.add("memory", "unknown" if memory is None else f"{memory:.1f} GiB")
    gpus = [f"{torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.1f} GiB)"
            for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    table.add("GPU", "; ".join(gpus) or "none")
    table.add("measured on", "GPU (CUDA)" if device.type == "cuda" else "CPU")
    table.add("OS", platform.platform())
    table.add("Python", platform.python_version())
    table.add("torch", f"{torch.__version__} (CUDA {torch.version.cuda})" if torch.version.cuda else torch.__version__)
    for package in ("diffusers", "transformers", "numpy", "nerfacc", "tinycudann"):
        table.add(package, _version(package))
    table.add("repository commit", _git_commit())
    table.add("load average at start (1 / 5 / 15 min)", load_average())
    return table
