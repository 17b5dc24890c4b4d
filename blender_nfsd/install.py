"""Installing the backend: a virtual environment, a torch build that fits the machine's GPU driver,
and the backend source bundled in the extension. No bpy here.

The torch build follows the NVIDIA driver: `nvidia-smi` reports the newest CUDA version the
driver supports, and the newest PyTorch CUDA build not above it is installed (a CPU build when
there is no NVIDIA GPU; plain PyPI torch on macOS, which uses Metal).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .process import Step

TORCH_INDEX = "https://download.pytorch.org/whl/"
# PyTorch's CUDA builds (wheel index name, CUDA version), oldest first. pip picks the newest torch
# that the chosen index carries, so an old driver gets an older torch rather than none.
TORCH_CUDA_BUILDS = (("cu118", (11, 8)), ("cu121", (12, 1)), ("cu124", (12, 4)), ("cu126", (12, 6)),
                     ("cu128", (12, 8)), ("cu129", (12, 9)), ("cu130", (13, 0)))
NVIDIA_SMI_TIMEOUT_S = 20.0
PIP_QUIET = ["--disable-pip-version-check", "--progress-bar", "off"]
# Never copied out of a source tree: caches, build leftovers, hidden files.
SOURCE_EXCLUDE = ("__pycache__", "*.pyc", "*.pyo", "*.egg-info", ".*", "build", "dist")

SITE_PACKAGES = ("isolated", "system")  # system: the venv uses the base interpreter's packages (pip too)
# Run by the new venv's interpreter: list folders in a .pth file of its site-packages. venv's own
# --system-site-packages reaches the base *installation* only, not the packages of a base
# interpreter that is itself a virtual environment.
LINK_SITE_PACKAGES = ("import sys, sysconfig; from pathlib import Path; "
                      "Path(sysconfig.get_paths()['purelib'], 'nfsd-base-site-packages.pth')"
                      ".write_text(''.join(p + chr(10) for p in sys.argv[1:]), encoding='utf-8')")
DEPENDENCIES = ("install", "skip")  # skip: install the backend alone, offline (--no-deps)


@dataclass(frozen=True)
class TorchBuild:
    """Which torch to install: the pip index (None = PyPI) and a label for the panel."""

    index_url: str | None
    label: str


def parse_cuda_version(nvidia_smi_output: str) -> tuple[int, int] | None:
    """The "CUDA Version: 12.4" of nvidia-smi's header: the newest CUDA the driver can run."""
    match = re.search(r"CUDA Version\s*:\s*(\d+)\.(\d+)", nvidia_smi_output)
    return (int(match.group(1)), int(match.group(2))) if match else None


def detect_cuda(run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> tuple[int, int] | None:
    """The driver's CUDA version, or None without an NVIDIA GPU (no nvidia-smi, or it fails)."""
    try:
        result = run(["nvidia-smi"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_cuda_version(result.stdout) if result.returncode == 0 else None


def choose_torch_build(cuda: tuple[int, int] | None, platform: str) -> TorchBuild:
    """The torch build for a driver's CUDA version on a platform (`sys.platform` spelling)."""
    if platform == "darwin":
        return TorchBuild(None, "PyPI build (Metal on Apple silicon)")
    cpu = TorchBuild(TORCH_INDEX + "cpu", "CPU build (no NVIDIA GPU found)")
    if cuda is None:
        return cpu
    fitting = [(name, version) for name, version in TORCH_CUDA_BUILDS if version <= cuda]
    if not fitting:
        driver = f"{cuda[0]}.{cuda[1]}"
        return TorchBuild(TORCH_INDEX + "cpu", f"CPU build (the driver's CUDA {driver} is too old; update it)")
    name, (major, minor) = fitting[-1]
    return TorchBuild(TORCH_INDEX + name, f"CUDA {major}.{minor} build (driver supports {cuda[0]}.{cuda[1]})")


def venv_python(venv_dir: Path, platform: str = sys.platform) -> Path:
    """The interpreter inside a virtual environment."""
    if platform == "win32":
        return Path(venv_dir) / "Scripts" / "python.exe"
    return Path(venv_dir) / "bin" / "python"


def install_steps(base_python: str, venv_dir: Path, backend_source: Path, torch: TorchBuild, *,
                  site_packages: str = "isolated", base_site_packages: Sequence[str] = (),
                  dependencies: str = "install", platform: str = sys.platform) -> list[Step]:
    """The commands that create the venv and install the backend into it.

    `site_packages="system"` lets the venv import the base interpreter's packages
    (`base_site_packages`, its site-packages folders), pip included. `dependencies="skip"` installs the backend
    alone, without the network (`--no-deps --no-index`, built with the base interpreter's
    setuptools): for a base interpreter that already has torch and the rest."""
    if site_packages not in SITE_PACKAGES:
        raise ValueError(f"site_packages must be one of {SITE_PACKAGES}")
    if dependencies not in DEPENDENCIES:
        raise ValueError(f"dependencies must be one of {DEPENDENCIES}")
    python = str(venv_python(venv_dir, platform))
    # A venv that borrows the base's packages borrows its pip and setuptools too: a venv's own
    # bundled setuptools would shadow the base's and may be too old to build without `wheel`.
    venv = [base_python, "-m", "venv"]
    if site_packages == "system":
        venv += ["--system-site-packages", "--without-pip"]
    steps = [Step("Creating the virtual environment", venv + [str(venv_dir)])]
    if site_packages == "system":
        steps.append(Step("Linking the base interpreter's packages",
                          [python, "-c", LINK_SITE_PACKAGES, *base_site_packages]))
    pip = [python, "-m", "pip", "install"] + PIP_QUIET
    if dependencies == "skip":
        steps.append(Step("Installing the backend (no dependencies)",
                          pip + ["--no-deps", "--no-index", "--no-build-isolation", str(backend_source)]))
        return steps
    index = ["--index-url", torch.index_url] if torch.index_url else []
    steps.append(Step(f"Installing torch, {torch.label}", pip + ["torch"] + index))
    steps.append(Step("Installing the backend and its dependencies", pip + [str(backend_source)]))
    return steps


def copy_source_tree(source: Path, target: Path) -> None:
    """Copy a source folder without caches or build leftovers, replacing `target`. pip builds a
    source folder in place, so the backend is built from a copy outside the extension's folder."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*SOURCE_EXCLUDE))
