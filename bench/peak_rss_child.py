"""Runs a Python child of `harness.run_child` and records its own peak RSS when it exits.

    python peak_rss_child.py -m MODULE ARGS...   |   python peak_rss_child.py SCRIPT ARGS...

The peak (VmHWM, bytes) goes to the file named by $BENCH_PEAK_RSS_FILE. The parent cannot learn
it from `wait4`: on Linux a child's ru_maxrss includes the resident set of the process it was
forked from, so every child of a 10 GB benchmark would report 10 GB.
"""

from __future__ import annotations

import atexit
import os
import re
import runpy
import sys
from pathlib import Path


def rss_high_water_bytes() -> int | None:
    """This process's peak resident set since exec (or the last reset), from VmHWM; None off
    Linux. Unlike `getrusage`'s ru_maxrss it does not include the process it was forked from."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    return int(re.search(r"VmHWM:\s+(\d+)", status.read_text()).group(1)) * 1024


def record_peak() -> None:
    peak = rss_high_water_bytes()
    if peak is not None and os.environ.get("BENCH_PEAK_RSS_FILE"):
        Path(os.environ["BENCH_PEAK_RSS_FILE"]).write_text(str(peak))


def main() -> None:
    atexit.register(record_peak)
    if sys.argv[1] == "-m":
        sys.argv = sys.argv[2:]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
