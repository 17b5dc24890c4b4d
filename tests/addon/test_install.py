"""Backend installation: the driver's CUDA version, the torch build chosen for it, the install
commands, copying the bundled source, and the background command sequence that runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from blender_nfsd.install import (LINK_SITE_PACKAGES, TorchBuild, choose_torch_build, copy_source_tree,
                                  detect_cuda, install_steps, parse_cuda_version, venv_python)
from blender_nfsd.process import CommandSequence, Step

NVIDIA_SMI_HEADER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.14              Driver Version: 550.54.14      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""


def test_cuda_version_from_nvidia_smi():
    assert parse_cuda_version(NVIDIA_SMI_HEADER) == (12, 4)
    assert parse_cuda_version("CUDA Version: 13.0") == (13, 0)
    assert parse_cuda_version("NVIDIA-SMI has failed because it couldn't communicate with the driver.") is None


def fake_run(returncode: int = 0, stdout: str = "", error: Exception | None = None):
    def run(command, **kwargs):
        assert command == ["nvidia-smi"] and kwargs["timeout"] > 0
        if error is not None:
            raise error
        return subprocess.CompletedProcess(command, returncode, stdout=stdout, stderr="")
    return run


def test_detect_cuda():
    assert detect_cuda(fake_run(stdout=NVIDIA_SMI_HEADER)) == (12, 4)
    assert detect_cuda(fake_run(error=FileNotFoundError("nvidia-smi"))) is None
    assert detect_cuda(fake_run(error=subprocess.TimeoutExpired("nvidia-smi", 20))) is None
    assert detect_cuda(fake_run(returncode=9, stdout=NVIDIA_SMI_HEADER)) is None


@pytest.mark.parametrize("cuda, platform, index", [
    ((12, 4), "linux", "https://download.pytorch.org/whl/cu124"),
    ((12, 5), "win32", "https://download.pytorch.org/whl/cu124"),
    ((12, 8), "linux", "https://download.pytorch.org/whl/cu128"),
    ((13, 2), "linux", "https://download.pytorch.org/whl/cu130"),
    ((11, 8), "linux", "https://download.pytorch.org/whl/cu118"),
    ((11, 4), "linux", "https://download.pytorch.org/whl/cpu"),
    (None, "linux", "https://download.pytorch.org/whl/cpu"),
    (None, "darwin", None),
])
def test_torch_build_follows_the_driver(cuda, platform, index):
    assert choose_torch_build(cuda, platform).index_url == index


def test_torch_build_labels():
    assert choose_torch_build((12, 5), "linux").label == "CUDA 12.4 build (driver supports 12.5)"
    assert choose_torch_build((11, 4), "linux").label == "CPU build (the driver's CUDA 11.4 is too old; update it)"
    assert choose_torch_build(None, "win32").label == "CPU build (no NVIDIA GPU found)"


def test_venv_python():
    assert venv_python(Path("/v"), "linux") == Path("/v/bin/python")
    assert venv_python(Path("/v"), "win32") == Path("/v/Scripts/python.exe")


def test_install_steps_with_dependencies():
    torch = TorchBuild("https://download.pytorch.org/whl/cu124", "CUDA 12.4 build")
    steps = install_steps("/blender/python", Path("/u/venv"), Path("/u/src"), torch, platform="linux")
    pip = ["/u/venv/bin/python", "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    assert [step.command for step in steps] == [
        ["/blender/python", "-m", "venv", "/u/venv"],
        pip + ["torch", "--index-url", "https://download.pytorch.org/whl/cu124"],
        pip + ["/u/src"],
    ]
    assert steps[1].title == "Installing torch, CUDA 12.4 build"


def test_install_steps_offline_with_the_base_packages():
    steps = install_steps("/py", Path("/u/venv"), Path("/u/src"), TorchBuild(None, "PyPI"),
                          site_packages="system", base_site_packages=["/base/site"], dependencies="skip",
                          platform="darwin")
    assert [step.command for step in steps] == [
        ["/py", "-m", "venv", "--system-site-packages", "--without-pip", "/u/venv"],
        ["/u/venv/bin/python", "-c", LINK_SITE_PACKAGES, "/base/site"],
        ["/u/venv/bin/python", "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
         "--no-deps", "--no-index", "--no-build-isolation", "/u/src"],
    ]
    with pytest.raises(ValueError):
        install_steps("/py", Path("/v"), Path("/s"), TorchBuild(None, ""), dependencies="some")


def test_link_site_packages_writes_a_pth_into_the_running_interpreter(tmp_path):
    """The snippet run by the new venv's Python: checked here on a throwaway purelib folder."""
    code = ("import sysconfig; sysconfig.get_paths = lambda: {'purelib': %r}; " % str(tmp_path)) + LINK_SITE_PACKAGES
    subprocess.run([sys.executable, "-c", code, "/a/site", "/b/site"], check=True)
    assert (tmp_path / "nfsd-base-site-packages.pth").read_text() == "/a/site\n/b/site\n"


def test_copy_source_tree_leaves_caches_behind(tmp_path):
    source = tmp_path / "src"
    (source / "pkg" / "__pycache__").mkdir(parents=True)
    (source / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"")
    (source / "pkg" / "m.py").write_text("x = 1\n")
    (source / "pkg" / "models").mkdir()
    (source / "pkg" / "models" / "w.safetensors").write_bytes(b"w")
    (source / "x.egg-info").mkdir()
    (source / ".pytest_cache").mkdir()
    (source / "pyproject.toml").write_text("[project]\n")
    target = tmp_path / "out"
    (target / "stale").mkdir(parents=True)
    copy_source_tree(source, target)
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*"))
    assert files == ["pkg", "pkg/m.py", "pkg/models", "pkg/models/w.safetensors", "pyproject.toml"]


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def run_sequence(drive, sequence: CommandSequence) -> None:
    sequence.start()
    drive(lambda: not sequence.active, sequence.poll, "the sequence to end")


def test_a_sequence_runs_its_steps_in_order_and_logs_them(tmp_path, drive):
    log = tmp_path / "install.log"
    sequence = CommandSequence([Step("one", py("print('first'); import sys; print('warn', file=sys.stderr)")),
                                Step("two", py("print('second')"))],
                               env=dict(os.environ), cwd=tmp_path, log_path=log, merge_stderr=True)
    run_sequence(drive, sequence)
    assert sequence.state == "done"
    assert [line.strip() for line in sequence.output] == ["second"]
    assert log.read_text().splitlines() == ["first", "warn", "second"]


def test_a_failing_step_stops_the_sequence(tmp_path, drive):
    marker = tmp_path / "ran"
    fails = py("import sys; print('no space left', file=sys.stderr); sys.exit(4)")
    sequence = CommandSequence([Step("Creating", fails), Step("never", py(f"open({str(marker)!r}, 'w')"))],
                               env=dict(os.environ), cwd=tmp_path, log_path=tmp_path / "l.log", merge_stderr=False)
    run_sequence(drive, sequence)
    assert sequence.state == "failed"
    assert sequence.message == "Creating failed (exit code 4): no space left"
    assert not marker.exists()


def test_a_step_that_cannot_start(tmp_path):
    sequence = CommandSequence([Step("Creating", [str(tmp_path / "nothing")])], env=dict(os.environ), cwd=tmp_path,
                               log_path=tmp_path / "l.log", merge_stderr=True)
    sequence.start()
    assert sequence.state == "failed"
    assert sequence.message.startswith(f"Creating failed: cannot run {tmp_path / 'nothing'}")
