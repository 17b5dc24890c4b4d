"""The extension in real Blender (bpy 5.0): installed from the built zip like a user would, driven
through its operators, with the scripted fake backend (fake_backend/) standing in for the GPU
backend. Timers do not run in Blender-as-a-module, so the tests call the timer's body,
`runtime.drain()`, themselves."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

LONG_RUN = 100_000  # steps: a run that only ends when it is told to


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def settings(addon):
    return addon.bpy.context.scene.nfsd


def job_state(addon):
    return addon.bpy.context.window_manager.nfsd_job


def generate(addon, prompt: str = "a red box", steps: int = 6, **values) -> None:
    scene = settings(addon)
    scene.prompt = prompt
    scene.steps = steps
    for name, value in values.items():
        setattr(scene, name, value)
    assert addon.bpy.ops.nfsd.generate() == {"FINISHED"}


def drain_until(addon, drive, condition, what: str) -> None:
    drive(condition, addon.module("runtime").drain, what)


def finished(addon) -> bool:
    return job_state(addon).state in ("done", "cancelled", "failed")


def new_objects(addon, before):
    return [obj for obj in addon.bpy.data.objects if obj not in before]


def test_installed_extension_registers_everything(addon):
    bpy = addon.bpy
    operators, panels, properties = addon.module("operators"), addon.module("panels"), addon.module("properties")
    assert all(cls.is_registered for cls in (*operators.CLASSES, *panels.CLASSES, *properties.CLASSES))
    assert {p.bl_category for p in panels.CLASSES} == {"NFSD"}
    assert bpy.app.timers.is_registered(addon.module("runtime").timer)
    scene = settings(addon)
    assert (scene.prompt, scene.method, scene.guidance_scale, scene.preset, scene.steps) == ("", "nfsd", 7.5, "standard", 0)
    assert job_state(addon).state == "idle"
    scene.method = "sds"
    assert scene.guidance_scale == 100.0  # the method's paper default comes with it


def test_generate_shows_progress_and_imports_the_result(addon, drive):
    bpy = addon.bpy
    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    before = set(bpy.data.objects)
    generate(addon, "a red box", steps=6, seed=11)
    state = job_state(addon)
    assert state.state == "starting"
    steps_seen, previews_seen = set(), set()

    def tick():
        addon.module("runtime").drain()
        steps_seen.add(state.step)
        previews_seen.add(state.preview_step)

    drive(lambda: state.state == "done", tick, "the run to finish")
    # several events may arrive within one tick, so only what was seen is checked, not that all was
    assert 6 in previews_seen and previews_seen <= {-1, 2, 4, 6} and steps_seen <= {0, 1, 2, 3, 4, 5, 6}
    assert (state.step, state.total_steps, state.progress) == (6, 6, 1.0)
    assert state.progress_text.startswith("Step 6 / 6 · 50.00 it/s")

    image = bpy.data.images[state.preview_image]
    run_dir = Path(state.run_dir)
    assert Path(bpy.path.abspath(image.filepath)) == run_dir / "previews" / "latest.png"
    assert tuple(image.size) == (8, 8) and not image.packed_file
    assert list(image.pixels[:4]) == pytest.approx([1.0, 0.0, 0.0, 1.0])  # the last preview, reloaded

    objects = new_objects(addon, before)
    assert [obj.type for obj in objects] == ["MESH"]
    obj = objects[0]
    assert [c.name for c in obj.users_collection] == ["a red box"]
    assert bpy.data.collections["a red box"].name in bpy.context.scene.collection.children
    assert tuple(obj.matrix_world.translation) == pytest.approx((1.0, 2.0, 3.0))
    assert len(obj.data.uv_layers) == 1
    images = [node.image for slot in obj.material_slots for node in slot.material.node_tree.nodes
              if node.type == "TEX_IMAGE"]
    assert len(images) == 1 and tuple(images[0].size) == (16, 16)
    assert {key: obj[key] for key in ("prompt", "method", "guidance_scale", "seed", "steps", "model", "run_dir")} == {
        "prompt": "a red box", "method": "nfsd", "guidance_scale": 7.5, "seed": 11, "steps": 6,
        "model": "tiny-random", "run_dir": str(run_dir)}
    assert obj["negative_prompt"].startswith("unrealistic, blurry")

    scene = settings(addon)
    assert Path(scene.last_run_dir) == run_dir and Path(scene.last_mesh) == run_dir / "mesh" / "model.glb"
    job = addon.module("runtime").current.job
    drive(lambda: job.exited, job.poll, "the backend to exit")
    assert job.process.returncode == 0 and not alive(job.process.pid)
    log = (run_dir / "blender-backend.log").read_text()
    assert "ignored stdout line (not JSON" in log and "a stray line from some library" in log


def test_import_is_one_undo_step(addon, drive):
    bpy = addon.bpy
    bpy.ops.ed.undo_push(message="before")  # background Blender starts without an undo system
    generate(addon, "an undo test", steps=2)
    drain_until(addon, drive, lambda: job_state(addon).state == "done", "the run to finish")
    assert "an undo test" in bpy.data.objects
    bpy.ops.ed.undo()
    assert "an undo test" not in bpy.data.objects and "an undo test" not in bpy.data.collections


def test_cancel_mid_run(addon, drive):
    bpy = addon.bpy
    before = set(bpy.data.objects)
    generate(addon, "a long run", steps=LONG_RUN)
    drain_until(addon, drive, lambda: job_state(addon).step >= 2, "two steps")
    assert bpy.ops.nfsd.cancel() == {"FINISHED"}
    drain_until(addon, drive, lambda: finished(addon), "the cancel")
    state = job_state(addon)
    assert state.state == "cancelled" and state.message.startswith("Cancelled at step ")
    job = addon.module("runtime").current.job
    drive(lambda: job.exited, job.poll, "the backend to exit")
    assert job.process.returncode == 3 and not alive(job.process.pid)
    assert (Path(state.run_dir) / "checkpoints" / "last.pt").is_file()
    for _ in range(5):
        addon.module("runtime").drain()
    assert new_objects(addon, before) == []


def test_stop_and_import_exports_the_current_state(addon, drive):
    bpy = addon.bpy
    before = set(bpy.data.objects)
    generate(addon, "stop early", steps=LONG_RUN)
    drain_until(addon, drive, lambda: job_state(addon).step >= 1, "a step")
    assert bpy.ops.nfsd.stop_and_import() == {"FINISHED"}
    assert job_state(addon).state == "exporting"
    drain_until(addon, drive, lambda: finished(addon), "the export")
    assert job_state(addon).state == "done" and job_state(addon).step < LONG_RUN
    assert [obj.name for obj in new_objects(addon, before)] == ["stop early"]


def test_reexport_imports_a_new_mesh(addon, drive):
    bpy = addon.bpy
    generate(addon, "export twice", steps=2)
    drain_until(addon, drive, lambda: job_state(addon).state == "done", "the run to finish")
    before = set(bpy.data.objects)
    assert bpy.ops.nfsd.reexport() == {"FINISHED"}
    assert job_state(addon).kind == "export"
    drain_until(addon, drive, lambda: finished(addon), "the export")
    assert job_state(addon).state == "done"
    objects = new_objects(addon, before)
    assert len(objects) == 1 and objects[0].users_collection[0].name == "export twice.001"
    assert objects[0]["steps"] == 2 and objects[0]["prompt"] == "export twice"


def test_an_error_event_is_reported_with_its_fix(addon, drive, monkeypatch):
    monkeypatch.setenv("FAKE_NFSD_FAIL", "error")
    generate(addon, "too big", steps=4)
    drain_until(addon, drive, lambda: finished(addon), "the error")
    state = job_state(addon)
    assert state.state == "failed"
    assert state.error_message == "Out of GPU memory at 512x512 renders; turn on Low VRAM."
    assert (state.fix_operator, state.fix_label) == ("nfsd.lower_memory", "Use Low-VRAM Settings")
    assert addon.bpy.ops.nfsd.lower_memory() == {"FINISHED"}
    assert settings(addon).low_vram and settings(addon).render_schedule == "64-256"


def test_a_crash_is_reported_with_the_end_of_its_log(addon, drive, monkeypatch):
    monkeypatch.setenv("FAKE_NFSD_FAIL", "crash")
    generate(addon, "crash", steps=4)
    drain_until(addon, drive, lambda: finished(addon), "the crash")
    state = job_state(addon)
    assert state.state == "failed" and state.fix_operator == ""
    assert state.error_message == "The backend stopped without a result (exit code 1): RuntimeError: fake backend crashed"
    assert state.error_log.splitlines()[-2:] == ["Traceback (most recent call last):", "RuntimeError: fake backend crashed"]


def test_a_missing_backend_disables_generate_with_the_reason(addon, tmp_path):
    bpy = addon.bpy
    prefs = bpy.context.preferences.addons[addon.package].preferences
    prefs.backend_python = str(tmp_path / "venv" / "bin" / "python")
    settings(addon).prompt = "anything"
    assert not bpy.ops.nfsd.generate.poll()
    with pytest.raises(RuntimeError) as error:
        bpy.ops.nfsd.generate()
    assert str(error.value) == (f"Operator bpy.ops.nfsd.generate.poll() The backend interpreter "
                                f"{tmp_path / 'venv' / 'bin' / 'python'} does not exist: fix it in the "
                                "preferences or Install Backend.")


def test_a_backend_that_cannot_start_is_a_one_line_error_with_a_fix(addon, tmp_path):
    bpy = addon.bpy
    python = tmp_path / "python"
    python.write_text("not a program")
    python.chmod(stat.S_IRUSR)
    bpy.context.preferences.addons[addon.package].preferences.backend_python = str(python)
    settings(addon).prompt = "anything"
    with pytest.raises(RuntimeError) as error:
        bpy.ops.nfsd.generate()
    assert str(error.value) == (f"Error: Cannot start the backend {python}: Permission denied. "
                                "Install the backend or choose another interpreter.\n")
    state = job_state(addon)
    assert state.state == "failed" and (state.fix_operator, state.fix_label) == ("nfsd.install_backend", "Install Backend")
    assert not addon.module("runtime").job_active()


def test_an_empty_prompt_is_refused(addon, tmp_path):
    runtime = addon.module("runtime")
    previous = runtime.current.job
    settings(addon).prompt = "   "
    with pytest.raises(RuntimeError, match="The prompt is empty"):
        addon.bpy.ops.nfsd.generate()
    assert runtime.current.job is previous and not (tmp_path / "runs").exists()


def test_install_backend_for_real_then_check_it(addon, drive, monkeypatch):
    """A venv made with this test's Python (seeing its packages, so torch is not downloaded), the
    bundled backend installed into it offline, then its `nfsd doctor --json`."""
    bpy = addon.bpy
    monkeypatch.delenv("PYTHONPATH")  # the installed backend must be the one that runs
    prefs = bpy.context.preferences.addons[addon.package].preferences
    prefs.backend_python = ""
    with pytest.raises(RuntimeError, match="online access is off"):
        bpy.ops.nfsd.install_backend()  # downloading is refused: Blender's online access is off here
    assert bpy.ops.nfsd.install_backend(site_packages="system", dependencies="skip") == {"FINISHED"}
    runtime = addon.module("runtime")
    state = job_state(addon)
    drain_until(addon, drive, lambda: runtime.current.install is None and runtime.current.check is None,
                "the install and the check")
    assert state.install_state == "done", state.install_message
    assert state.doctor_state == "done", state.doctor_text
    import platform

    import torch

    assert state.doctor_text.splitlines()[0] == f"Python {platform.python_version()}, torch {torch.__version__} (CPU build)"
    assert state.doctor_text.splitlines()[-1] == "Model tiny-random: built in"
    venv_python = addon.module("preferences").backend_python(prefs)
    assert venv_python.is_file() and venv_python.parent.parent.name == "venv"
    import subprocess

    located = subprocess.run([str(venv_python), "-c", "import nfsd_backend; print(nfsd_backend.__file__)"],
                             capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert Path(located.stdout.strip()).is_relative_to(venv_python.parent.parent)
    assert bpy.ops.nfsd.generate.poll()  # the backend is found without setting an interpreter


def test_disable_and_uninstall_end_the_backend(addon, drive):
    bpy = addon.bpy
    classes = (*addon.module("operators").CLASSES, *addon.module("panels").CLASSES)
    runtime = addon.module("runtime")
    for remove in ("disable", "uninstall"):
        generate(addon, f"running at {remove}", steps=LONG_RUN)
        drain_until(addon, drive, lambda: job_state(addon).step >= 1, "a step")
        job = runtime.current.job
        if remove == "disable":
            assert bpy.ops.preferences.addon_disable(module=addon.package) == {"FINISHED"}
        else:
            addon.uninstall()
        assert job.process.returncode is not None and not alive(job.process.pid)
        assert not any(cls.is_registered for cls in classes)
        assert not hasattr(bpy.types.Scene, "nfsd") and not bpy.app.timers.is_registered(runtime.timer)
        if remove == "disable":
            assert bpy.ops.preferences.addon_enable(module=addon.package) == {"FINISHED"}
            runtime = addon.module("runtime")
            bpy.context.preferences.addons[addon.package].preferences.backend_python = sys.executable
    assert not addon.installed()
