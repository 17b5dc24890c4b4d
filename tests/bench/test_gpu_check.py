"""`bench/gpu_check.py --rehearse`: the GPU check's every part runs on the CPU at tiny sizes and
writes its result file and its section of RESULTS-cuda.md, so a device run fails only on what is
GPU-specific. No figure is asserted (they depend on the machine); the structure is, and each part
must end `ok`. The orchestrator's time budgets are checked on a part that overruns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import gpu_check  # noqa: E402

from .test_run import tables  # noqa: E402

# What the device tool brings back: at most 8 files, named in letters, digits, '.', '_' and '-'.
RETURNED_FILES, FILE_NAME = 8, re.compile(r"^[A-Za-z0-9._-]+$")


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu-check") / "out"
    work = out.parent / "work"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OUT=str(out))
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--rehearse", "--in-process", "--work",
                           str(work)], capture_output=True, text=True, timeout=850, env=env, cwd=REPO)
    assert done.returncode == 0, done.stdout[-4000:]
    return out


def test_every_part_ends_ok_and_writes_its_result_file(rehearsal):
    names = sorted(p.name for p in rehearsal.iterdir())
    assert names == sorted([*(f"{f}.json" for f in gpu_check.RESULT_FILES), "RESULTS-cuda.md", "gpu_check.log"])
    assert len(names) <= RETURNED_FILES and all(FILE_NAME.match(n) for n in names)
    records = {}
    for file in gpu_check.RESULT_FILES:
        records |= json.loads((rehearsal / f"{file}.json").read_text())["parts"]
    assert sorted(records) == sorted(p.name for p in gpu_check.PARTS)
    for name, record in records.items():
        assert record["status"] == "ok", (name, record.get("error"))
        assert record["seconds"] <= record["budget_s"] + gpu_check.GRACE_S
    assert records["install"]["status_reason"].startswith("skipped: the rehearsal")
    assert records["environment"]["data"]["doctor"]["cuda_available"] is False


def test_the_report_has_every_part_and_table(rehearsal):
    text = (rehearsal / "RESULTS-cuda.md").read_text()
    assert text.startswith("# GPU check results\n\n**Rehearsal on the CPU**")
    for part in gpu_check.PARTS:
        status = "skipped: the rehearsal uses this environment's packages" if part.name == "install" else "ok"
        assert f"\n## {part.title}\n" in text and f"\n| {part.name} | {status} |" in text
    found = tables(text)
    titles = list(found)
    expected = ["Installed wheels", "Machine", "`nfsd doctor --json`", "CUDA tests", "toy-shapes end to end",
                "NFSD at tiny-random scale", "Export", "SDS and SDI", "Projected whole runs", "Memory caps",
                "FLOPs per step", "Where the time goes", "nerfacc tests"]
    assert [next(i for i, t in enumerate(titles) if t.startswith(prefix)) for prefix in expected] == \
        sorted(range(len(expected)))
    rows = lambda prefix: next(rows for title, rows in found.items() if title.startswith(prefix))[:-1]  # noqa: E731
    for prefix in ("CUDA tests", "nerfacc tests"):  # one test each: its cpu twin passes, its cuda variant skips
        assert sorted(r["outcome"] for r in rows(prefix)) == ["passed", "skipped"], prefix
    assert [r["setting"] for r in rows("NFSD at")] == ["NFSD 32 px default", "NFSD 48 px --low-vram"]
    for row in rows("NFSD at") + rows("SDS and SDI"):
        assert float(row["it/s"]) > 0 and float(row["peak GiB"]) > 0 and row["render s"] != "—"
    assert rows("Export")[0]["result"] == "done"
    # NFSD's default at 32 and 48 px stand for 64 and 512: the high preset's rows can be projected.
    projected = rows("Projected")
    assert [(r["preset"], r["method"], r["setting"]) for r in projected] == [("high", "NFSD", "default")]
    assert float(projected[0]["total min"]) >= float(projected[0]["train min"]) > 0
    assert rows("Memory caps")[0]["no cap (CPU)"].startswith("fits (")
    assert rows("FLOPs per step")[0]["of the 790 TFLOP/s peak"] == "— (CPU)"
    assert len(rows("Where the time goes")) == 15


def test_a_part_over_its_budget_is_stopped_and_the_rest_still_run(tmp_path, monkeypatch):
    def overrun(ctx):
        ctx.result.note("measured before the overrun")
        while True:
            pass

    slow = gpu_check.Part("install", "environment", 1, 0, 1, overrun, "Overrunning")
    quick = gpu_check.Part("environment", "environment", 1, 0, 5, lambda ctx: ctx.result.note("ran"), "Quick")
    monkeypatch.setattr(gpu_check, "PARTS", [slow, quick])
    monkeypatch.setattr(gpu_check, "RESULT_FILES", ["environment"])
    monkeypatch.setattr(gpu_check, "GRACE_S", 0.5)
    out = tmp_path / "out"
    code = gpu_check.main(["--rehearse", "--in-process", "--out", str(out), "--work", str(tmp_path / "work")])
    assert code == 1
    parts = json.loads((out / "environment.json").read_text())["parts"]
    assert parts["install"]["status"].startswith("timed out") and parts["install"]["notes"] == [
        "measured before the overrun"]
    assert parts["environment"]["status"] == "ok" and parts["environment"]["notes"] == ["ran"]
    assert "| install | timed out" in (out / "RESULTS-cuda.md").read_text()


def test_parts_run_in_child_processes_as_on_the_device(tmp_path):
    """Without --in-process (the device's way) each part is a child process writing the same record."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--rehearse", "--only", "install",
                           "--out", str(out), "--work", str(tmp_path / "work")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "environment.json").read_text())["parts"]["install"]
    assert record["status"] == "ok" and record["seconds_inside"] < record["seconds"] <= record["budget_s"] + 10
    assert "| install | skipped: the rehearsal uses this environment's packages |" in (out / "RESULTS-cuda.md").read_text()
