"""bench/harness.py's child runs: the peak RSS of a child is its own, not its parent's."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from harness import rss_high_water_bytes, run_child  # noqa: E402

MIB = 2**20


def test_a_child_reports_its_own_peak_not_the_parents(tmp_path):
    held = b"x" * (1024 * MIB)  # written, so resident: this process holds over 1 GiB, which a fork inherits
    assert rss_high_water_bytes() > 1024 * MIB
    script = tmp_path / "allocate.py"
    script.write_text("import sys\nblock = b'x' * (300 * 2**20)\nprint(sys.argv[1:])\n")
    child = run_child([sys.executable, str(script), "a", "b"])
    assert child.returncode == 0 and child.stdout.strip() == "['a', 'b']", child.stderr
    assert 300 * MIB < child.peak_rss_bytes < 600 * MIB
    module = run_child([sys.executable, "-m", "json.tool", "--help"])
    assert module.returncode == 0 and "usage" in module.stdout
    assert module.peak_rss_bytes < 200 * MIB
    del held
