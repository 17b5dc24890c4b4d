"""Build the installable extension: `dist/blender_nfsd-<version>.zip`.

    python build.py            build (and validate) the zip
    python build.py --check    validate the manifest and the package contents only

The zip holds the manifest and the add-on's files at its root and the backend's source under
`backend/` (so "Install Backend" can pip-install it from the extension's folder). Blender's own
extension tool builds and validates it when one is found (`blender` on PATH, or the
`blender_ext.py` script inside the `bpy` package); otherwise this script writes the same zip itself
after checking the manifest's required fields.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from blender_nfsd.install import copy_source_tree

ROOT = Path(__file__).resolve().parent
MANIFEST = "blender_manifest.toml"
ADDON_DIR = ROOT / "blender_nfsd"
BACKEND_DIR = ROOT / "backend"
BACKEND_FILES = ("pyproject.toml",)  # beside the package, what pip needs to install the backend
BACKEND_PACKAGE = "nfsd_backend"
VERSION_FILE = BACKEND_DIR / BACKEND_PACKAGE / "__init__.py"  # `__version__`: the version's one place
REQUIRED_FIELDS = ("schema_version", "id", "version", "name", "tagline", "maintainer", "type", "license",
                   "blender_version_min")
REQUIRED_PERMISSIONS = ("network", "files")
TAGLINE_MAX = 64  # Blender's limit for the tagline and for permission reasons
VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def backend_version() -> str:
    """`nfsd_backend.__version__`, read from its source (building needs none of the backend's
    dependencies)."""
    tree = ast.parse(VERSION_FILE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__version__"]:
            return ast.literal_eval(node.value)
    raise ValueError(f"{VERSION_FILE} does not set __version__")


def manifest_problems(manifest: dict) -> list[str]:
    """What Blender (and this project) require of the manifest; empty when it is fine."""
    problems = [f"missing field {name!r}" for name in REQUIRED_FIELDS if not manifest.get(name)]
    version = backend_version()
    if manifest.get("version") and manifest["version"] != version:
        problems.append(f"version {manifest['version']!r} differs from the backend's __version__ {version!r} "
                        f"({VERSION_FILE.relative_to(ROOT).as_posix()}): set the manifest's to {version!r}")
    if manifest.get("type") not in (None, "add-on"):
        problems.append(f"type must be 'add-on', not {manifest['type']!r}")
    for name in ("version", "blender_version_min", "schema_version"):
        if manifest.get(name) and not VERSION.match(str(manifest[name])):
            problems.append(f"{name} must be three numbers like 4.2.0, not {manifest[name]!r}")
    tagline = str(manifest.get("tagline", ""))
    if tagline:
        problems += [f"tagline: {p}" for p in _terse_text_problems(tagline)]
    license_ = manifest.get("license")
    if license_ and not (isinstance(license_, list) and all(str(item).startswith("SPDX:") for item in license_)):
        problems.append("license must be a list of SPDX identifiers like [\"SPDX:GPL-3.0-or-later\"]")
    permissions = manifest.get("permissions", {})
    for name in REQUIRED_PERMISSIONS:
        reason = permissions.get(name) if isinstance(permissions, dict) else None
        if not reason:
            problems.append(f"permission {name!r} must be declared with its reason")
        else:
            problems += [f"permission {name!r}: {p}" for p in _terse_text_problems(str(reason))]
    return problems


def _terse_text_problems(text: str) -> list[str]:
    problems = []
    if len(text) > TAGLINE_MAX:
        problems.append(f"at most {TAGLINE_MAX} characters, found {len(text)}")
    if text != text.strip() or not text[-1:].isalnum() and text[-1:] not in ")]}":
        problems.append("must not end with punctuation or spaces")
    return problems


def stage(target: Path) -> None:
    """Lay out the extension's files as they go into the zip."""
    copy_source_tree(ADDON_DIR, target)
    shutil.copy2(ROOT / MANIFEST, target / MANIFEST)
    copy_source_tree(BACKEND_DIR / BACKEND_PACKAGE, target / "backend" / BACKEND_PACKAGE)
    for name in BACKEND_FILES:
        shutil.copy2(BACKEND_DIR / name, target / "backend" / name)


def extension_tool() -> list[str] | None:
    """The command of Blender's extension tool: `blender --command extension`, else the script
    shipped in the bpy package, run with this interpreter; None when neither exists."""
    blender = shutil.which("blender")
    if blender:
        return [blender, "--factory-startup", "--command", "extension"]
    spec = importlib.util.find_spec("bpy")  # locates bpy without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        scripts = sorted(Path(location).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if scripts:
            return [sys.executable, str(scripts[-1])]
    return None


def write_zip(source: Path, zip_path: Path) -> None:
    """The zip Blender's tool would write: every staged file, relative to the stage's root."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(source).as_posix())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="validate only, write nothing")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist", help="where the zip goes (default dist/)")
    parser.add_argument("--tool", choices=("auto", "builtin"), default="auto",
                        help="auto: Blender's extension tool when found; builtin: this script's own zip writer")
    args = parser.parse_args(argv)

    manifest = tomllib.loads((ROOT / MANIFEST).read_text(encoding="utf-8"))
    problems = manifest_problems(manifest)
    if problems:
        for problem in problems:
            print(f"{MANIFEST}: {problem}", file=sys.stderr)
        return 1
    tool = extension_tool() if args.tool == "auto" else None
    zip_path = args.output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    with tempfile.TemporaryDirectory(prefix="nfsd-build-") as tmp:
        staged = Path(tmp) / manifest["id"]
        stage(staged)
        if args.check:
            if tool is not None:
                return subprocess.run(tool + ["validate", str(staged)]).returncode
            print(f"{MANIFEST}: required fields present (Blender's extension tool not found)")
            return 0
        args.output_dir.mkdir(parents=True, exist_ok=True)
        zip_path.unlink(missing_ok=True)
        if tool is None:
            write_zip(staged, zip_path)
        else:
            code = subprocess.run(tool + ["build", "--source-dir", str(staged),
                                          "--output-dir", str(args.output_dir)]).returncode
            if code != 0:
                return code
            code = subprocess.run(tool + ["validate", str(zip_path)]).returncode
            if code != 0:
                return code
    print(zip_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
