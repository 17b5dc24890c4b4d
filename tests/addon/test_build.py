"""build.py: the extension zip (manifest at the root, add-on files, backend source), the same
with Blender's extension tool and without it, and Blender's own validation of both."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import nfsd_backend
from nfsd_backend.cli import main as nfsd_main

ROOT = Path(__file__).resolve().parents[2]


def load_build():
    spec = importlib.util.spec_from_file_location("nfsd_build_script", ROOT / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = load_build()
MANIFEST = tomllib.loads((ROOT / "blender_manifest.toml").read_text())


def run_build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "build.py"), *args], capture_output=True, text=True)


def test_the_manifest_has_what_blender_and_the_project_require():
    assert build.manifest_problems(MANIFEST) == []
    assert MANIFEST["schema_version"] == "1.0.0" and MANIFEST["id"] == "blender_nfsd"
    assert MANIFEST["blender_version_min"] == "4.2.0" and MANIFEST["license"] == ["SPDX:GPL-3.0-or-later"]


def test_the_version_has_one_source_that_everything_reads(capsys):
    version = nfsd_backend.__version__
    assert build.VERSION.match(version)
    assert build.backend_version() == version  # read from the source, without importing the backend
    assert MANIFEST["version"] == version  # checked by manifest_problems, so build and --check refuse a mismatch
    project = tomllib.loads((ROOT / "backend" / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "nfsd_backend.__version__"}
    with pytest.raises(SystemExit) as exit_:
        nfsd_main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"nfsd {version}\n"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{version}]" in changelog  # every version has its entry


@pytest.mark.parametrize("change, problem", [
    ({"tagline": "Text to 3D."}, "tagline: must not end with punctuation or spaces"),
    ({"tagline": "x" * 65}, "tagline: at most 64 characters, found 65"),
    ({"license": ["GPL-3.0"]}, "license must be a list of SPDX identifiers"),
    ({"version": "1.0"}, "version must be three numbers"),
    ({"version": "9.9.9"}, "version '9.9.9' differs from the backend's __version__"),
    ({"type": "theme"}, "type must be 'add-on'"),
    ({"maintainer": ""}, "missing field 'maintainer'"),
    ({"permissions": {"files": "Write runs"}}, "permission 'network' must be declared with its reason"),
])
def test_manifest_problems_are_named(change, problem):
    assert problem in "\n".join(build.manifest_problems({**MANIFEST, **change}))


def test_check_validates_with_blenders_tool():
    assert build.extension_tool() is not None  # the bpy package ships blender_ext.py
    result = run_build("--check")
    assert result.returncode == 0, result.stderr
    assert "Success parsing TOML" in result.stdout


@pytest.fixture(scope="module")
def zips(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    made = {}
    for tool in ("auto", "builtin"):
        result = run_build("--tool", tool, "--output-dir", str(out / tool))
        assert result.returncode == 0, result.stderr
        made[tool] = Path(result.stdout.strip().splitlines()[-1])
    return made


def test_zip_layout(zips):
    for path in zips.values():
        assert path.name == f"blender_nfsd-{nfsd_backend.__version__}.zip"
        names = set(zipfile.ZipFile(path).namelist())
        assert {"blender_manifest.toml", "__init__.py", "job.py", "operators.py", "backend/pyproject.toml",
                "backend/nfsd_backend/__init__.py", "backend/nfsd_backend/cli.py"} <= names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "egg-info" in n]
        repo_files = {p.name for p in (ROOT / "blender_nfsd").glob("*.py")}
        assert {n for n in names if "/" not in n and n.endswith(".py")} == repo_files


def test_builtin_zip_matches_blenders_and_passes_its_validation(zips):
    names = {tool: sorted(zipfile.ZipFile(path).namelist()) for tool, path in zips.items()}
    assert names["auto"] == names["builtin"]
    tool = build.extension_tool()
    for path in zips.values():
        result = subprocess.run(tool + ["validate", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
