"""The panel's buttons. Each operator is a few lines of glue around the pure modules."""

from __future__ import annotations

import json
import os
import random
import sys
import sysconfig
from datetime import datetime
from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from . import command, install, result, runtime
from .importer import import_result
from .job import Job
from .preferences import (backend_problem, backend_python, bundled_backend, output_folder, preferences,
                          user_dir, venv_dir)
from .process import CommandSequence, Step
from .protocol import CONTROL_EXPORT, CONTROL_STOP
from .properties import present, scene_settings

OVERRIDES_NAME = "blender_overrides.json"  # the Advanced settings that have no flag (--config)
CHECKPOINT_PATH = Path("checkpoints") / "last.pt"
LOW_VRAM_RENDER_SCHEDULE = "64-256"  # what "Use Low-VRAM Settings" sets besides --low-vram


def generate_settings(context: bpy.types.Context) -> command.GenerateSettings:
    """The panel's settings and the preferences as one `GenerateSettings`."""
    settings = scene_settings(context)
    prefs = preferences(context)
    return command.GenerateSettings(
        prompt=settings.prompt, negative_prompt=settings.negative_prompt, method=settings.method,
        guidance_scale=settings.guidance_scale, preset=settings.preset, steps=settings.steps,
        seed=settings.seed, model=prefs.model, device=prefs.device, precision=prefs.precision,
        low_vram=settings.low_vram, mesh_resolution=settings.mesh_resolution,
        texture_size=settings.texture_size, render_schedule=settings.render_schedule,
        timestep_range=settings.timestep_range, t_min=settings.t_min, t_max=settings.t_max,
        perp_neg=settings.perp_neg)


def backend_env() -> dict[str, str]:
    return command.backend_environment(os.environ, bpy.app.online_access)


def can_start_job(cls: type[bpy.types.Operator], context: bpy.types.Context) -> bool:
    """Poll shared by the operators that start the backend: no job running, backend present."""
    if runtime.job_active():
        cls.poll_message_set("A generation is running: cancel it or wait for it to finish.")
        return False
    if runtime.installing():
        cls.poll_message_set("The backend is being installed: wait for it to finish.")
        return False
    problem = backend_problem(preferences(context))
    if problem:
        cls.poll_message_set(problem)
        return False
    return True


def start_job_or_report(operator: bpy.types.Operator, job: Job) -> set[str]:
    if runtime.start_job(job, backend_env()):
        return {"FINISHED"}
    operator.report({"ERROR"}, job.status.error_message)
    return {"CANCELLED"}


def last_run_dir(context: bpy.types.Context) -> Path | None:
    run_dir = scene_settings(context).last_run_dir
    return Path(bpy.path.abspath(run_dir)) if run_dir else None


class NFSD_OT_generate(bpy.types.Operator):
    """Start the backend: text to a textured mesh, imported when done"""

    bl_idname = "nfsd.generate"
    bl_label = "Generate"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return can_start_job(cls, context)

    def execute(self, context: bpy.types.Context) -> set[str]:  # type: ignore[override]
        settings = generate_settings(context)
        problem = command.settings_problem(settings)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        run_dir = output_folder(preferences(context)) / command.run_folder_name(settings.prompt, datetime.now())
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            (run_dir / result.REQUEST_NAME).write_text(json.dumps(settings.to_dict(), indent=2), encoding="utf-8")
            overrides = command.override_config(settings)
            config_file = None
            if overrides:
                config_file = str(run_dir / OVERRIDES_NAME)
                Path(config_file).write_text(json.dumps(overrides, indent=2), encoding="utf-8")
        except OSError as exc:
            self.report({"ERROR"}, f"Cannot create the run folder {run_dir}: {exc.strerror or exc}. "
                                   "Choose another Output Folder in the preferences.")
            return {"CANCELLED"}
        python = str(backend_python(preferences(context)))
        job = Job("generate", command.generate_command(python, settings, str(run_dir), config_file), run_dir)
        scene_settings(context).last_run_dir = str(run_dir)
        return start_job_or_report(self, job)


class NFSD_OT_cancel(bpy.types.Operator):
    """Stop the backend after its current step; the checkpoint is kept, nothing is imported"""

    bl_idname = "nfsd.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return runtime.job_active()

    def execute(self, context: bpy.types.Context) -> set[str]:  # type: ignore[override]
        runtime.control_job(CONTROL_STOP)
        return {"FINISHED"}


class NFSD_OT_stop_and_import(bpy.types.Operator):
    """Stop training now, export the mesh as it is and import it"""

    bl_idname = "nfsd.stop_and_import"
    bl_label = "Stop & Import"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        job = runtime.current.job
        return job is not None and job.kind == "generate" and job.status.state == "running" \
            and not job.status.requested

    def execute(self, context: bpy.types.Context) -> set[str]:  # type: ignore[override]
        runtime.control_job(CONTROL_EXPORT)
        return {"FINISHED"}


class NFSD_OT_open_run_folder(bpy.types.Operator):
    """Open the latest run's folder (previews, checkpoints, meshes, logs) in the file browser"""

    bl_idname = "nfsd.open_run_folder"
    bl_label = "Open Run Folder"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        run_dir = last_run_dir(context)
        return run_dir is not None and run_dir.is_dir()

    def execute(self, context: bpy.types.Context) -> set[str]:  # type: ignore[override]
        bpy.ops.wm.path_open(filepath=str(last_run_dir(context)))
        return {"FINISHED"}


class NFSD_OT_import_result(bpy.types.Operator):
    """Import this scene's latest finished result at the 3D cursor"""

    bl_idname = "nfsd.import_result"
    bl_label = "Import Last Result"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        mesh = scene_settings(context).last_mesh
        return bool(mesh) and Path(bpy.path.abspath(mesh)).is_file()

    def execute(self, context: bpy.types.Context) -> set[str]:  # type: ignore[override]
        settings = scene_settings(context)
        mesh = Path(bpy.path.abspath(settings.last_mesh))
        try:
            objects = import_result(context, mesh, result.run_properties(result.run_dir_of(mesh)))
        except RuntimeError as exc:  # the glTF importer's own report
            self.report({"ERROR"}, f"Cannot import {mesh}: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Imported {len(objects)} object(s) from {mesh.name}")
        return {"FINISHED"}


class NFSD_OT_reexport(bpy.types.Operator):
    """Make a new mesh from the latest run's checkpoint with the current mesh resolution and
    texture size, then import it"""

    bl_idname = "nfsd.reexport"
    bl_label = "Re-export"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        run_dir = last_run_dir(context)
        if run_dir is None or not (run_dir / CHECKPOINT_PATH).is_file():
            cls.poll_message_set("The latest run has no checkpoint to export from.")
            return False
        return can_start_job(cls, context)

    def execute(self, context: bpy.types.Context) -> set[str]:  # type: ignore[override]
        run_dir = last_run_dir(context)
        assert run_dir is not None
        settings = scene_settings(context)
        problem = command.export_sizes_problem(settings.mesh_resolution, settings.texture_size)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        python = str(backend_python(preferences(context)))
        job = Job("export", command.export_command(python, str(run_dir), settings.mesh_resolution,
                                                   settings.texture_size), run_dir)
        return start_job_or_report(self, job)


class NFSD_OT_install_backend(bpy.types.Operator):
    """Create the backend's Python environment and install the backend with a torch build for
    this machine's GPU (downloads about 3 GB)"""

    bl_idname = "nfsd.install_backend"
    bl_label = "Install Backend"

    site_packages: EnumProperty(
        name="Site Packages", items=[(v, v.title(), "") for v in install.SITE_PACKAGES], default="isolated",
        options={"SKIP_SAVE"}, description="System: the environment also sees Blender's Python packages")
    dependencies: EnumProperty(
        name="Dependencies", items=[(v, v.title(), "") for v in install.DEPENDENCIES], default="install",
        options={"SKIP_SAVE"}, description="Skip: install the backend alone, offline")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if runtime.installing() or runtime.job_active():
            cls.poll_message_set("Wait for the running install or generation to finish.")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:  # type: ignore[override]
        if self.dependencies == "install" and not bpy.app.online_access:
            self.report({"ERROR"}, "Installing the backend downloads packages, but online access is off: "
                                   "allow it in Preferences > System > Network, then try again.")
            return {"CANCELLED"}
        source = bundled_backend()
        if not (source / "pyproject.toml").is_file():
            self.report({"ERROR"}, f"This build of the add-on has no bundled backend ({source}); "
                                   "reinstall it from a zip made by build.py.")
            return {"CANCELLED"}
        folder = user_dir()
        try:
            install.copy_source_tree(source, folder / "backend-src")
        except OSError as exc:
            self.report({"ERROR"}, f"Cannot copy the backend into {folder}: {exc.strerror or exc}.")
            return {"CANCELLED"}
        torch = install.choose_torch_build(install.detect_cuda() if self.dependencies == "install" else None,
                                           sys.platform)
        base_site_packages = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
        steps = install.install_steps(sys.executable, venv_dir(), folder / "backend-src", torch,
                                      site_packages=self.site_packages, base_site_packages=base_site_packages,
                                      dependencies=self.dependencies)
        (folder / "install.log").unlink(missing_ok=True)
        sequence = CommandSequence(steps, env=backend_env(), cwd=folder, log_path=folder / "install.log",
                                   merge_stderr=True)
        runtime.current.install = sequence
        runtime.current.check_after_install = doctor_sequence(str(install.venv_python(venv_dir())))
        runtime.current.check_model = preferences(context).model
        sequence.start()
        self.report({"INFO"}, f"Installing the backend into {venv_dir()} (log: {folder / 'install.log'})")
        return {"FINISHED"}


def doctor_sequence(python: str) -> CommandSequence:
    folder = user_dir()
    return CommandSequence([Step("Checking the backend", command.doctor_command(python))],
                           env=backend_env(), cwd=folder, log_path=folder / "doctor.log", merge_stderr=False)


class NFSD_OT_check_backend(bpy.types.Operator):
    """Run the backend's self-check: torch, GPU and free memory, accelerators, the model"""

    bl_idname = "nfsd.check_backend"
    bl_label = "Check Backend"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if runtime.current.check is not None or runtime.installing():
            cls.poll_message_set("Wait for the running install or backend check to finish.")
            return False
        problem = backend_problem(preferences(context))
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:  # type: ignore[override]
        prefs = preferences(context)
        runtime.start_check(doctor_sequence(str(backend_python(prefs))), prefs.model)
        return {"FINISHED"}


class NFSD_OT_randomize_seed(bpy.types.Operator):
    """Pick a new random seed"""

    bl_idname = "nfsd.randomize_seed"
    bl_label = "Random Seed"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:  # type: ignore[override]
        scene_settings(context).seed = random.randrange(2**31 - 1)
        return {"FINISHED"}


class NFSD_OT_pick_model(bpy.types.Operator):
    """Choose a local model: a diffusers folder or a .safetensors checkpoint"""

    bl_idname = "nfsd.pick_model"
    bl_label = "Choose a Model Folder"

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE"})

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:  # type: ignore[override]
        present(context.window_manager, "window manager").fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:  # type: ignore[override]
        chosen = self.filepath if self.filepath.endswith((".safetensors", ".ckpt")) else self.directory
        if not chosen:
            self.report({"ERROR"}, "Choose a diffusers folder or a .safetensors file.")
            return {"CANCELLED"}
        preferences(context).model = bpy.path.abspath(chosen)
        return {"FINISHED"}


class NFSD_OT_lower_memory(bpy.types.Operator):
    """Turn on the low-VRAM settings and smaller renders, for graphics cards with little memory"""

    bl_idname = "nfsd.lower_memory"
    bl_label = "Use Low-VRAM Settings"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:  # type: ignore[override]
        settings = scene_settings(context)
        settings.low_vram = True
        settings.render_schedule = LOW_VRAM_RENDER_SCHEDULE
        return {"FINISHED"}


class NFSD_OT_use_cpu(bpy.types.Operator):
    """Run the backend on the CPU (slow): for machines without a usable GPU"""

    bl_idname = "nfsd.use_cpu"
    bl_label = "Run on the CPU"

    def execute(self, context: bpy.types.Context) -> set[str]:  # type: ignore[override]
        preferences(context).device = "cpu"
        return {"FINISHED"}


CLASSES = (NFSD_OT_generate, NFSD_OT_cancel, NFSD_OT_stop_and_import, NFSD_OT_open_run_folder,
           NFSD_OT_import_result, NFSD_OT_reexport, NFSD_OT_install_backend, NFSD_OT_check_backend,
           NFSD_OT_randomize_seed, NFSD_OT_pick_model, NFSD_OT_lower_memory, NFSD_OT_use_cpu)
