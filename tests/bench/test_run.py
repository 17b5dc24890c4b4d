"""`bench/run.py --quick` runs every section end to end and writes the report's tables.

No timing is asserted (figures depend on the machine and its load); the structure is, and so are
the model-evaluation counts, which follow from the rules exactly (ALGORITHMS.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"^\d+(\.\d+)?(e-?\d+)?$")


def tables(markdown: str) -> dict[str, list[dict[str, str]]]:
    """Title -> rows (column -> cell) of every `### title` table in the report."""
    found: dict[str, list[dict[str, str]]] = {}
    for block in markdown.split("### ")[1:]:
        title, *lines = block.splitlines()
        rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines
                if line.startswith("|")]
        header, rule, *body = rows
        assert all(set(cell) == {"-"} for cell in rule), title
        found[title] = [dict(zip(header, row, strict=True)) for row in body]
    return found


def median_of(cell: str) -> float:
    """The median of '0.0598 (0.0584-0.0636)' or a lone '0.0598'."""
    value = cell.split(" ")[0]
    assert NUMBER.match(value), cell
    return float(value)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict[str, list[dict[str, str]]]:
    out = tmp_path_factory.mktemp("bench") / "results.md"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=850, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return tables(out.read_text(encoding="utf-8"))


def table(report, prefix: str) -> list[dict[str, str]]:
    (title,) = [t for t in report if t.startswith(prefix)]
    return report[title]


def test_machine_table_names_the_machine_and_versions(report):
    rows = {row["what"]: row["value"] for row in table(report, "Machine")}
    for key in ("date", "CPU", "memory", "GPU", "measured on", "torch", "diffusers",
                "load average at start (1 / 5 / 15 min)", "load average at end (1 / 5 / 15 min)"):
        assert rows[key] not in ("", "—"), key
    assert rows["measured on"] == "CPU"
    assert rows["torch threads"] == "1"


def test_guidance_table_has_every_method_timestep_and_precision_with_exact_evaluation_counts(report):
    rows = table(report, "Guidance step cost")
    # SDS: y and 0; NFSD: + neg from t = 200; SDI: 2 per inversion step ([0] + grid points below t
    # + [t_end], grid 1, 101, ...) plus 2 for the guided prediction.
    expected = {("SDS", t): 2 for t in (100, 300, 600, 900)}
    expected |= {("NFSD", 100): 2, ("NFSD", 300): 3, ("NFSD", 600): 3, ("NFSD", 900): 3}
    expected |= {("SDI", 100): 6, ("SDI", 300): 10, ("SDI", 600): 16, ("SDI", 900): 22}
    for precision in ("fp32", "bf16"):
        got = {(r["method"], int(r["t"])): int(r["model evals"]) for r in rows if r["precision"] == precision}
        assert got == expected, precision
    for row in rows:
        assert median_of(row["s / step: median (min-max)"]) > 0
        assert 0 <= int(row["UNet share"].rstrip("%")) <= 100


def test_ratio_table_divides_the_guidance_medians(report):
    cost = {(r["precision"], r["method"], r["t"]): median_of(r["s / step: median (min-max)"])
            for r in table(report, "Guidance step cost")}
    rows = table(report, "Cost relative to SDS")
    assert len(rows) == 8
    for row in rows:
        precision, t = row["precision"], row["t"]
        sds = cost[(precision, "SDS", t)]
        # The cells are rounded to 3 significant figures, the ratios to 2 decimals.
        for method in ("NFSD", "SDI"):
            shown = float(row[f"{method} / SDS"].rstrip("x"))
            assert shown == pytest.approx(cost[(precision, method, t)] / sds, rel=0.012, abs=0.006)


def test_training_step_table_splits_the_step_into_phases_for_both_settings(report):
    rows = table(report, "Training step")
    assert [(r["setting"], r["render size"]) for r in rows] == [
        ("default", "32"), ("default", "64"), ("low-vram", "32"), ("low-vram", "64")]
    for row in rows:
        phases = [median_of(row[f"{p} s"]) for p in ("encode", "guidance", "backward")]
        assert all(p > 0 for p in phases)
        assert median_of(row["peak RSS GiB"]) > 0
