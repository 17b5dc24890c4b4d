"""Running the `nfsd` command line in tests: in-process (fast) or as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nfsd_backend.cli import main

BACKEND = Path(__file__).resolve().parents[2] / "backend"


def run_cli(argv: list[str], capsys) -> tuple[int, list[dict]]:
    """Run `nfsd ARGV --events jsonl` in this process; returns the exit code and the events."""
    code = main([*argv, "--events", "jsonl"])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


def backend_env() -> dict[str, str]:
    """Environment for a backend subprocess: offline, this checkout's backend first on the path."""
    return dict(os.environ, HF_HUB_OFFLINE="1",
                PYTHONPATH=os.pathsep.join([str(BACKEND), os.environ.get("PYTHONPATH", "")]))


def run_subprocess(argv: list[str], stdin: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m nfsd_backend ARGV` as a separate process, offline."""
    return subprocess.run([sys.executable, "-m", "nfsd_backend", *argv], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env=backend_env())


def start_backend(argv: list[str], **kwargs) -> subprocess.Popen:
    """Start `python -m nfsd_backend ARGV --events jsonl` with text pipes (stdin too if asked)."""
    return subprocess.Popen([sys.executable, "-m", "nfsd_backend", *argv, "--events", "jsonl"],
                            stdout=subprocess.PIPE, text=True, env=backend_env(), **kwargs)
