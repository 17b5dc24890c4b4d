"""Add-on tests. The pure modules are imported from the repository (`blender_nfsd.command`, ...);
the Blender tests use real Blender (the `bpy` module) with the extension built by build.py and
installed like a user would, through one session-wide Blender (bpy can be imported only once per
process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_BACKEND = Path(__file__).resolve().parent / "fake_backend"
REPO_MODULE = "nfsd_test"  # the temporary extension repository the tests install into
DRIVE_LIMIT_S = 300.0  # a guard against a hung backend, far above any expected run
# DESIGN.md, "Event stream": what every event carries, and the fields its table lists per kind.
# Restated here rather than taken from blender_nfsd.protocol, so a field that the protocol stops
# requiring (or the backend stops writing) is still caught.
EVENT_HEADER = ("v", "event", "time")
DESIGN_EVENT_FIELDS = {
    "start": ("run_dir", "total_steps", "method", "device", "config"),
    "stage": ("name", "message"),
    "progress": ("step", "total_steps", "loss", "timestep", "elapsed_s", "eta_s", "it_per_s"),
    "preview": ("step", "path"),
    "checkpoint": ("step", "path"),
    "done": ("mesh", "obj", "elapsed_s"),
    "cancelled": ("step", "checkpoint"),
    "error": ("kind", "message"),
    "warning": ("kind", "message"),  # docs/events.md (prompt_truncated also has tokens_given, tokens_kept)
}

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def drive_until(condition: Callable[[], bool], tick: Callable[[], Any], what: str) -> None:
    """Call `tick` (a poll or the add-on's drain function) until `condition` holds."""
    deadline = time.monotonic() + DRIVE_LIMIT_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        tick()
        time.sleep(0.02)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (a reaped child does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def check_backend_events(lines: list[str]) -> list[dict[str, Any]]:
    """Each line as the add-on parses it (`protocol.parse_line`, which must accept it as an
    event) and as a JSON record, which must carry every field DESIGN.md lists for its kind."""
    from blender_nfsd.protocol import MalformedEvent, parse_line

    records = []
    for number, line in enumerate(lines, 1):
        try:
            event = parse_line(line)
        except MalformedEvent as exc:
            raise AssertionError(f"line {number} does not parse ({exc}): {line!r}") from None
        assert event is not None, f"line {number} is blank"
        record = json.loads(line)
        missing = [name for name in (*EVENT_HEADER, *DESIGN_EVENT_FIELDS[event.kind]) if name not in record]
        assert not missing, f"line {number}: {event.kind} event without {missing}: {line!r}"
        records.append(record)
    return records


@pytest.fixture
def backend_events() -> Callable[[list[str]], list[dict[str, Any]]]:
    return check_backend_events


@pytest.fixture
def alive() -> Callable[[int], bool]:
    return process_alive


@pytest.fixture
def drive() -> Callable[[Callable[[], bool], Callable[[], Any], str], None]:
    return drive_until


@dataclass
class Blender:
    bpy: ModuleType
    zip_path: Path
    root: Path

    @property
    def package(self) -> str:
        return f"bl_ext.{REPO_MODULE}.blender_nfsd"

    def module(self, name: str) -> ModuleType:
        return sys.modules[f"{self.package}.{name}"]

    def repo_index(self) -> int:
        return [repo.module for repo in self.bpy.context.preferences.extensions.repos].index(REPO_MODULE)

    def installed(self) -> bool:
        return self.package in self.bpy.context.preferences.addons

    def install(self) -> None:
        result = self.bpy.ops.extensions.package_install_files(
            filepath=str(self.zip_path), repo=REPO_MODULE, enable_on_install=True)
        assert result == {"FINISHED"}

    def uninstall(self) -> None:
        result = self.bpy.ops.extensions.package_uninstall(repo_index=self.repo_index(), pkg_id="blender_nfsd")
        assert result == {"FINISHED"}


@pytest.fixture(scope="session")
def blender(tmp_path_factory: pytest.TempPathFactory) -> Blender:
    """Blender as a module, its user folders in a temporary place, and the extension zip built by
    build.py in a temporary extension repository (not yet installed)."""
    root = tmp_path_factory.mktemp("blender")
    os.environ["BLENDER_USER_RESOURCES"] = str(root / "user")
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")
    built = subprocess.run([sys.executable, str(ROOT / "build.py"), "--output-dir", str(root / "dist")],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr + built.stdout
    import bpy

    bpy.context.preferences.extensions.repos.new(
        name="NFSD tests", module=REPO_MODULE, custom_directory=str(root / "repo"), source="USER")
    return Blender(bpy, Path(built.stdout.strip().splitlines()[-1]), root)


@pytest.fixture
def addon(blender: Blender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Blender]:
    """The extension installed and enabled, a fresh scene, runs in `tmp_path/runs`, and the
    scripted fake backend run by this test's Python."""
    if not blender.installed():
        blender.install()
    bpy = blender.bpy
    scene = bpy.data.scenes.new("NFSD test")
    bpy.context.window.scene = scene
    prefs = bpy.context.preferences.addons[blender.package].preferences
    prefs.backend_python = sys.executable
    prefs.output_folder = str(tmp_path / "runs")
    prefs.model = "tiny-random"
    prefs.device = "cpu"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKE_BACKEND), os.environ.get("PYTHONPATH", "")]))
    yield blender
    if blender.installed():  # no backend outlives its test
        blender.module("runtime").shutdown()
