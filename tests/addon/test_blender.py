"""The extension in real Blender (bpy 5.0): installed from the built zip like a user would, driven
through its operators, with the scripted fake backend (fake_backend/) standing in for the GPU
backend. Timers do not run in Blender-as-a-module, so the tests call the timer's body,
`runtime.drain()`, themselves."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

LONG_RUN = 100_000  # steps: a run that only ends when it is told to
FAKE_BACKEND = Path(__file__).resolve().parent / "fake_backend"


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
    assert (scene.prompt, scene.method, scene.guidance_scale, scene.preset, scene.steps) == (
        "", "nfsd", 7.5, "standard", 0)
    assert (scene.mesh_resolution, scene.texture_size, scene.perp_neg) == (0, 0, False)  # the preset's; NFSD's
    assert job_state(addon).state == "idle"
    scene.method = "sds"
    assert scene.guidance_scale == 100.0  # the method's paper default comes with it
    scene.t_min, scene.t_max = 0.1, 0.4
    scene.method = "sdi"  # and its own timestep range, where a Custom range starts
    assert (scene.guidance_scale, scene.t_min, scene.t_max) == pytest.approx((7.5, 0.25, 0.98))
    assert scene.perp_neg  # SDI's reference setting
    scene.method = "nfsd"
    assert not scene.perp_neg


def test_generate_shows_progress_and_imports_the_result(addon, drive, alive):
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
    # the .glb stores the box's 36 face corners apart; merged, it is one closed box of 8 corners
    assert (len(obj.data.vertices), len(obj.data.edges), len(obj.data.polygons)) == (8, 18, 12)
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
    assert "--mesh-resolution" not in job.command and "--texture-size" not in job.command  # the preset's
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


def test_cancel_mid_run(addon, drive, alive):
    bpy = addon.bpy
    before = set(bpy.data.objects)
    generate(addon, "a long run", steps=LONG_RUN)
    drain_until(addon, drive, lambda: job_state(addon).step >= 2, "two steps")
    with pytest.raises(RuntimeError, match="A generation is running: cancel it or wait for it to finish."):
        bpy.ops.nfsd.generate()  # one job at a time
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
    settings(addon).mesh_resolution = 8
    with pytest.raises(RuntimeError, match="Mesh Resolution 8 is out of range"):
        bpy.ops.nfsd.reexport()
    settings(addon).mesh_resolution = 0
    assert bpy.ops.nfsd.reexport() == {"FINISHED"}
    assert job_state(addon).kind == "export"
    assert "--mesh-resolution" not in addon.module("runtime").current.job.command  # the run's own
    drain_until(addon, drive, lambda: finished(addon), "the export")
    assert job_state(addon).state == "done"
    objects = new_objects(addon, before)
    assert len(objects) == 1 and objects[0].users_collection[0].name == "export twice.001"
    assert objects[0]["steps"] == 2 and objects[0]["prompt"] == "export twice"


def test_import_last_result_keeps_its_own_runs_settings(addon, drive, monkeypatch):
    """A later run that failed (or still runs) is the scene's latest run, but the last result is
    still the earlier run's mesh: importing it again must carry that run's recipe."""
    bpy = addon.bpy
    generate(addon, "the first run", steps=2, seed=1)
    drain_until(addon, drive, lambda: job_state(addon).state == "done", "the first run")
    first_run = Path(job_state(addon).run_dir)
    monkeypatch.setenv("FAKE_NFSD_FAIL", "error")
    generate(addon, "a failing run", steps=4, seed=2)
    drain_until(addon, drive, lambda: finished(addon), "the failing run")
    assert job_state(addon).state == "failed" and Path(settings(addon).last_run_dir) != first_run
    before = set(bpy.data.objects)
    assert bpy.ops.nfsd.import_result() == {"FINISHED"}
    objects = new_objects(addon, before)
    assert [obj.users_collection[0].name for obj in objects] == ["the first run.001"]
    assert (objects[0]["prompt"], objects[0]["seed"], objects[0]["run_dir"]) == ("the first run", 1, str(first_run))


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


def test_the_error_fix_buttons_change_the_preferences(addon, tmp_path):
    bpy = addon.bpy
    prefs = bpy.context.preferences.addons[addon.package].preferences
    prefs.device = "auto"
    assert bpy.ops.nfsd.use_cpu() == {"FINISHED"}  # "Run on the CPU" (cuda_unavailable)
    assert prefs.device == "cpu"

    # "Choose a Model Folder" (model_not_found): a single checkpoint file, or a diffusers folder
    checkpoint = tmp_path / "models" / "my-model.safetensors"
    assert bpy.ops.nfsd.pick_model(filepath=str(checkpoint), directory=str(checkpoint.parent) + os.sep) \
        == {"FINISHED"}
    assert prefs.model == str(checkpoint)
    folder = tmp_path / "models" / "sd-diffusers"
    assert bpy.ops.nfsd.pick_model(filepath=str(folder / "model_index.json"), directory=str(folder) + os.sep) \
        == {"FINISHED"}
    assert Path(prefs.model) == folder
    with pytest.raises(RuntimeError, match="Choose a diffusers folder or a .safetensors file."):
        bpy.ops.nfsd.pick_model()
    assert Path(prefs.model) == folder  # nothing chosen, nothing changed


def test_the_backend_is_offline_when_online_access_is_off(addon, drive, monkeypatch):
    """Blender-as-a-module runs with online access off: the add-on must start the backend with
    HF_HUB_OFFLINE=1 itself, not rely on the environment it was started in."""
    assert not addon.bpy.app.online_access
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the test session's own setting
    generate(addon, "an offline run", steps=2)
    drain_until(addon, drive, lambda: finished(addon), "the run to finish")
    assert job_state(addon).state == "done"
    config = json.loads((Path(job_state(addon).run_dir) / "config.json").read_text(encoding="utf-8"))
    assert config["environment"] == {"HF_HUB_OFFLINE": "1"}  # as the fake backend saw its environment


def test_a_crash_is_reported_with_the_end_of_its_log(addon, drive, monkeypatch):
    monkeypatch.setenv("FAKE_NFSD_FAIL", "crash")
    generate(addon, "crash", steps=4)
    drain_until(addon, drive, lambda: finished(addon), "the crash")
    state = job_state(addon)
    assert state.state == "failed" and state.fix_operator == ""
    crash = "RuntimeError: fake backend crashed"
    assert state.error_message == f"The backend stopped without a result (exit code 1): {crash}"
    assert state.error_log.splitlines()[-2:] == ["Traceback (most recent call last):", crash]


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
    assert state.state == "failed"
    assert (state.fix_operator, state.fix_label) == ("nfsd.install_backend", "Install Backend")
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

    first_line = f"Python {platform.python_version()}, torch {torch.__version__} (CPU build)"
    assert state.doctor_text.splitlines()[0] == first_line
    assert state.doctor_text.splitlines()[-1] == "Model tiny-random: built in"
    venv_python = addon.module("preferences").backend_python(prefs)
    assert venv_python.is_file() and venv_python.parent.parent.name == "venv"
    import subprocess

    located = subprocess.run([str(venv_python), "-c", "import nfsd_backend; print(nfsd_backend.__file__)"],
                             capture_output=True, text=True)
    assert Path(located.stdout.strip()).is_relative_to(venv_python.parent.parent)
    assert bpy.ops.nfsd.generate.poll()  # the backend is found without setting an interpreter


def test_disable_and_uninstall_end_the_backend(addon, drive, alive):
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


QUIT_WHILE_RUNNING = """
import sys, time
zip_path, repo_dir, package, runs, teardown = sys.argv[1:]
repo = package.split(".")[1]
import bpy

bpy.context.preferences.extensions.repos.new(name="NFSD tests", module=repo, custom_directory=repo_dir,
                                             source="USER")
assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo=repo, enable_on_install=True) == {"FINISHED"}
prefs = bpy.context.preferences.addons[package].preferences
prefs.backend_python, prefs.output_folder, prefs.model, prefs.device = sys.executable, runs, "tiny-random", "cpu"
bpy.context.scene.nfsd.prompt, bpy.context.scene.nfsd.steps = "quit while running", 100_000
assert bpy.ops.nfsd.generate() == {"FINISHED"}
runtime, state = sys.modules[package + ".runtime"], bpy.context.window_manager.nfsd_job
deadline = time.monotonic() + 60
while state.state != "running":
    assert time.monotonic() < deadline, state.message
    runtime.drain()
    time.sleep(0.02)
print("backend pid", runtime.current.job.process.pid, flush=True)
if teardown == "skipped":  # Blender's exit (addon_utils.disable_all) then leaves this add-on alone
    sys.modules[package].__addon_enabled__ = False
"""  # then the script ends and Python quits, as Blender does when its window is closed


@pytest.mark.parametrize("teardown", ["done", "skipped"])
def test_quitting_blender_ends_the_backend(blender, tmp_path, alive, teardown):
    """A Blender (the bpy module, in its own process) with the extension installed and a run going,
    which then quits. The fake backend is in a minute-long step and reads its stdin only between
    steps, so Blender's end (its pipes closing) does not stop it: the add-on has to, with SIGTERM
    after the grace time. Blender's exit disables every enabled add-on, and unregister ends the
    backend; with that teardown skipped for this add-on, its atexit hook must still end it."""
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(FAKE_BACKEND), os.environ.get("PYTHONPATH", "")]),
               FAKE_NFSD_STEP_S="60")
    quit_blender = subprocess.run(
        [sys.executable, "-c", QUIT_WHILE_RUNNING, str(blender.zip_path), str(tmp_path / "repo"), blender.package,
         str(tmp_path / "runs"), teardown], capture_output=True, text=True, env=env, timeout=120)
    assert quit_blender.returncode == 0, quit_blender.stderr
    pids = [int(line.split()[-1]) for line in quit_blender.stdout.splitlines() if line.startswith("backend pid ")]
    assert len(pids) == 1, quit_blender.stdout
    try:
        deadline = time.monotonic() + 5.0
        while alive(pids[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pids[0]), "the backend outlived Blender"
    finally:
        if alive(pids[0]):
            os.kill(pids[0], signal.SIGKILL)


class RecordingLayout:
    """Stands in for a UILayout, which only exists while Blender's UI draws (never in the bpy
    module): each call is checked against UILayout's RNA definition (function, keyword names,
    icon names) and recorded."""

    def __init__(self, bpy, calls: list):
        object.__setattr__(self, "_bpy", bpy)
        object.__setattr__(self, "calls", calls)

    def __setattr__(self, name, value):
        assert name in self._bpy.types.UILayout.bl_rna.properties, f"UILayout has no property {name}"

    def __getattr__(self, name):
        functions = self._bpy.types.UILayout.bl_rna.functions
        assert name in functions, f"UILayout has no function {name}"
        parameters = functions[name].parameters

        def call(*args, **kwargs):
            assert set(kwargs) <= set(parameters.keys()), f"{name}() has no {set(kwargs) - set(parameters.keys())}"
            if "icon" in kwargs:
                assert kwargs["icon"] in parameters["icon"].enum_items.keys(), f"no icon {kwargs['icon']}"
            self.calls.append((name, args, kwargs))
            return RecordingLayout(self._bpy, self.calls)
        return call


class DrawSelf:
    """`self` for a draw method: a recording layout, everything else from `target`."""

    def __init__(self, layout, target=None):
        self.layout, self._target = layout, target

    def __getattr__(self, name):
        return getattr(self._target, name)


def draw(addon, draw_function, target=None) -> list:
    calls: list = []
    draw_function(DrawSelf(RecordingLayout(addon.bpy, calls), target), addon.bpy.context)
    bpy = addon.bpy
    for name, args, kwargs in calls:
        if name == "prop":
            data, prop = args
            assert prop in data.bl_rna.properties, f"{prop} is not a property of {data}"
        if name == "operator":
            namespace, op = args[0].split(".")
            assert namespace == "nfsd" and getattr(bpy.types, f"NFSD_OT_{op}").is_registered, args[0]
    return calls


def drawn(calls, kind: str) -> list:
    return [args[1] if kind == "prop" else args[0] if args else kwargs.get("text")
            for name, args, kwargs in calls if name == kind]


def test_panels_and_preferences_draw_what_exists(addon, tmp_path):
    bpy = addon.bpy
    panels = addon.module("panels")
    prefs = bpy.context.preferences.addons[addon.package].preferences
    state = job_state(addon)
    state.state, state.install_state, state.doctor_text = "idle", "idle", "Python 3.11\nGPU: none"
    settings(addon).method = "sds"

    idle = draw(addon, panels.NFSD_PT_main.draw)
    assert drawn(idle, "prop") == ["prompt", "method", "guidance_scale", "perp_neg", "preset", "steps", "seed"]
    assert drawn(idle, "operator") == ["nfsd.randomize_seed", "nfsd.generate", "nfsd.open_run_folder",
                                       "nfsd.import_result", "nfsd.reexport"]

    settings(addon).method = "nfsd"
    settings(addon).guidance_scale = 12.0
    prefs.backend_python = str(tmp_path / "missing")
    from PIL import Image

    Image.new("RGB", (4, 4), (0, 255, 0)).save(tmp_path / "preview.png")
    image = addon.module("runtime").show_preview(tmp_path / "preview.png")
    state.state, state.preview_image, state.progress_text = "running", image.name, "Step 3 / 9"
    running = draw(addon, panels.NFSD_PT_main.draw)
    assert drawn(running, "operator")[:1] == ["nfsd.install_backend"]
    assert "negative_prompt" in drawn(running, "prop") and "default 7.5" in drawn(running, "label")
    assert {"nfsd.cancel", "nfsd.stop_and_import"} <= set(drawn(running, "operator"))
    assert [kwargs["text"] for name, args, kwargs in running if name == "progress"] == ["Step 3 / 9"]
    assert [name for name, args, kwargs in running if name == "template_icon"] == ["template_icon"]

    state.state, state.error_message, state.error_log = "failed", "Out of memory", "line 1\nline 2"
    state.fix_operator, state.fix_label = "nfsd.lower_memory", "Use Low-VRAM Settings"
    failed = draw(addon, panels.NFSD_PT_main.draw)
    assert {"Out of memory", "line 1", "line 2"} <= set(drawn(failed, "label"))
    assert "nfsd.lower_memory" in drawn(failed, "operator")

    settings(addon).timestep_range = "custom"
    advanced = draw(addon, panels.NFSD_PT_advanced.draw)
    assert drawn(advanced, "prop") == ["render_schedule", "timestep_range", "t_min", "t_max", "mesh_resolution",
                                       "texture_size", "low_vram"]
    preferences = draw(addon, type(prefs).draw, prefs)
    assert drawn(preferences, "prop") == ["backend_python", "model", "device", "precision", "output_folder"]
    assert drawn(preferences, "operator") == ["nfsd.install_backend", "nfsd.check_backend"]
    assert {"Python 3.11", "GPU: none"} <= set(drawn(preferences, "label"))


def test_a_job_survives_opening_another_file(addon, drive, tmp_path):
    bpy = addon.bpy
    blend = tmp_path / "other.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    generate(addon, "keeps running", steps=LONG_RUN)
    drain_until(addon, drive, lambda: job_state(addon).step >= 1, "a step")
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    runtime = addon.module("runtime")
    assert bpy.app.timers.is_registered(runtime.timer) and runtime.job_active()
    step = runtime.current.job.status.step
    drain_until(addon, drive, lambda: job_state(addon).step > step, "more steps after the file changed")
    assert job_state(addon).state == "running"
    assert bpy.ops.nfsd.cancel() == {"FINISHED"}
    drain_until(addon, drive, lambda: finished(addon), "the cancel")
    assert job_state(addon).state == "cancelled"
