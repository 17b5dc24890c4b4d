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
NUMBER = re.compile(r"^\d+(\.\d+)?(e[-+]?\d+)?[kM]?$")


def tables(markdown: str) -> dict[str, list[dict[str, str]]]:
    """Title -> rows (column -> cell) of every `### title` table in the report; an empty table's
    placeholder row is dropped, and its notes are kept under the key "notes"."""
    found: dict[str, list[dict[str, str]]] = {}
    for block in markdown.split("### ")[1:]:
        title, *lines = block.splitlines()
        rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines
                if line.startswith("|")]
        header, rule, *body = rows
        assert all(set(cell) == {"-"} for cell in rule), title
        found[title] = [dict(zip(header, row, strict=True)) for row in body if set(row) != {"—"}]
        found[title].append({"notes": " ".join(line[2:] for line in lines if line.startswith("- "))})
    return found


def median_of(cell: str) -> float:
    """The median of '0.0598 (0.0584-0.0636)', a lone '0.0598', or a count like '94.7k'."""
    value = cell.split(" ")[0]
    assert NUMBER.match(value), cell
    scale = {"k": 1e3, "M": 1e6}.get(value[-1], 1.0)
    return float(value.rstrip("kM")) * scale


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict[str, list[dict[str, str]]]:
    out = tmp_path_factory.mktemp("bench") / "results.md"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=850, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return tables(out.read_text(encoding="utf-8"))


def table(report, prefix: str) -> list[dict[str, str]]:
    """The rows of the one table whose title starts with `prefix` (without its notes)."""
    (title,) = [t for t in report if t.startswith(prefix)]
    return report[title][:-1]


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
        phases = [median_of(row[f"{p} s"]) for p in ("render", "encode", "guidance", "backward")]
        assert all(p > 0 for p in phases)
        # The total is the median of the per-step sums, so it lies within the phases' spread.
        assert 0.5 * sum(phases) <= median_of(row["total s"]) <= 2 * sum(phases)
        assert median_of(row["peak RSS GiB"]) > 0


def test_nerf_table_counts_the_points_each_render_encodes(report):
    rows = table(report, "Hash grid, field and renderer")
    assert [(r["what"], r["size"]) for r in rows] == [
        ("hash grid", "—"), ("field (grid + MLP)", "—"),
        ("render, albedo shading", "16x16"), ("render, albedo shading", "32x32"),
        ("render, textureless shading", "16x16"), ("render, textureless shading", "32x32")]
    points = {(r["what"], r["size"]): int(r["points"]) for r in rows}
    assert points[("hash grid", "—")] == 2**14
    for size in ("16x16", "32x32"):
        albedo, textureless = points[("render, albedo shading", size)], points[("render, textureless shading", size)]
        # The same samples (same seed), plus three finite-difference positions per visible sample.
        assert albedo < textureless <= 4 * albedo
        assert (textureless - albedo) % 3 == 0
    # 4x the rays reach about 4x the samples (the blob fills the same share of both images).
    assert 3 < points[("render, albedo shading", "32x32")] / points[("render, albedo shading", "16x16")] < 5
    for row in rows:
        assert median_of(row["points / s"]) > 0


def test_speedup_table_compares_each_candidate_before_and_after(report):
    rows = table(report, "Speed-up candidates")
    assert [(r["before"], r["after"]) for r in rows] == [
        ("3 UNet calls at batch 1", "1 UNet call at batch 3"), ("text encoder every step", "cached per prompt"),
        ("contiguous", "channels-last"), ("contiguous", "channels-last"), ("plain", "gradient checkpointing"),
        ("4 chunks of 256 rays (recomputed)", "1 chunk of 1024 rays"), ("all points at once", "chunks of 16384 points")]
    for row in rows:
        shown = float(row["speed-up (before / after)"].rstrip("x"))
        assert shown == pytest.approx(median_of(row["before s"]) / median_of(row["after s"]), rel=0.012, abs=0.006)


def test_end_to_end_table_has_a_run(report):
    rows = table(report, "End to end")
    assert [r["run"] for r in rows] == ["1", "median"]
    assert median_of(rows[0]["wall s"]) > 0 and "train" in rows[0]["stages (s)"]


def test_export_table_has_each_resolution(report):
    rows = table(report, "Mesh export")
    assert [int(r["resolution"]) for r in rows] == [32, 48]
    assert all(int(r["faces"]) > 0 and median_of(r["wall s: median (min-max)"]) > 0 for r in rows)


def test_a_failing_section_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "bench"))
    import run

    def broken(*args, **kwargs):
        raise ValueError("no points")

    monkeypatch.setattr(run.section_nerf, "run", broken)
    monkeypatch.setattr(run.torch, "set_num_threads", lambda threads: None)  # keep this process's threads
    out = tmp_path / "results.md"
    assert run.main(["--quick", "--only", "nerf,export", "--out", str(out)]) == 1
    text = out.read_text(encoding="utf-8")
    assert "**Section `nerf` failed** (traceback in the run's output): ValueError: no points" in text
    assert any(title.startswith("Mesh export") for title in tables(text))
