"""The add-on's properties: generation settings on the scene (saved with the .blend, so a scene
remembers how its asset was made) and the running job's state on the window manager (never
saved)."""

from __future__ import annotations

from typing import Any, TypeVar

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from . import command, job

METHOD_ITEMS = [
    ("nfsd", "NFSD", "Noise-Free Score Distillation: clean results at the usual guidance scale (7.5)"),
    ("sdi", "SDI", "Score Distillation via Inversion: noise found by DDIM inversion; slower, sharper"),
    ("sds", "SDS", "Plain Score Distillation Sampling (DreamFusion): the baseline, needs guidance 100"),
]
PRESET_ITEMS = [
    ("draft", "Draft", "Few steps at low resolution: a quick look"),
    ("standard", "Standard", "The usual balance of time and quality"),
    ("high", "High", "Many steps at high resolution: for the final asset"),
]
RENDER_SCHEDULE_ITEMS = [("preset", "From Preset", "The quality preset decides the render sizes")] + [
    (key, " then ".join(f"{size} px" for size in sizes), "Render size per phase of the run")
    for key, sizes in command.RENDER_SCHEDULES.items()]
TIMESTEP_RANGE_ITEMS = [
    ("method", "Method Default", "The method's own timestep range and schedule"),
    ("custom", "Custom", "Noise levels between Min and Max only"),
]


def _method_changed(self: Any, context: bpy.types.Context) -> None:
    """A new method brings its paper's guidance scale (SDS needs 100, NFSD and SDI 7.5) and its own
    timestep range, so a Custom range starts from the method's."""
    for name, value in command.method_defaults(self.method).items():
        setattr(self, name, value)


class NFSD_SceneSettings(bpy.types.PropertyGroup):
    """How to generate: the panel's fields. Model and device live in the preferences."""

    prompt: StringProperty(name="Prompt", description="What to make, e.g. \"a ceramic lion\"")
    negative_prompt: StringProperty(
        name="Negative", default=command.NFSD_NEGATIVE_PROMPT,
        description="What the result should not look like (NFSD uses it at high noise levels)")
    method: EnumProperty(name="Method", items=METHOD_ITEMS, default="nfsd", update=_method_changed)
    guidance_scale: FloatProperty(
        name="Guidance Scale", default=command.DEFAULT_GUIDANCE_SCALE["nfsd"], min=-50.0, max=500.0,
        soft_min=1.0, soft_max=150.0, description="How strongly the prompt steers the result "
        "(paper defaults: NFSD 7.5, SDI 7.5, SDS 100; changing the method resets it)")
    preset: EnumProperty(name="Quality", items=PRESET_ITEMS, default="standard")
    steps: IntProperty(name="Steps", default=0, min=0, soft_max=30000,
                       description="Optimisation steps; 0 = the quality preset's number")
    seed: IntProperty(name="Seed", default=0, min=0, description="Fixes every random choice of the run")
    render_schedule: EnumProperty(name="Render Size", items=RENDER_SCHEDULE_ITEMS, default="preset",
                                  description="Size of the NeRF renders shown to the diffusion model")
    timestep_range: EnumProperty(name="Timesteps", items=TIMESTEP_RANGE_ITEMS, default="method")
    t_min: FloatProperty(name="Min", default=command.DEFAULT_TIMESTEP_RANGE["nfsd"][0], min=0.0, max=1.0,
                         description="Lowest noise level, as a fraction of the diffusion time")
    t_max: FloatProperty(name="Max", default=command.DEFAULT_TIMESTEP_RANGE["nfsd"][1], min=0.0, max=1.0,
                         description="Highest noise level, as a fraction of the diffusion time")
    mesh_resolution: IntProperty(name="Mesh Resolution", default=0, min=0, max=command.MESH_RESOLUTION_RANGE[1],
                                 description="Marching-cubes grid size per axis: more detail, more faces; "
                                 "0 = the quality preset's (on Re-export: the run's own)")
    texture_size: IntProperty(name="Texture Size", default=0, min=0, max=command.TEXTURE_SIZE_RANGE[1],
                              description="Baked colour texture, pixels per side; "
                              "0 = the quality preset's (on Re-export: the run's own)")
    perp_neg: BoolProperty(
        name="Against multi-face (Perp-Neg)", default=False,
        description="Fights a face or front on every side: the other views' prompts steer away from "
        "themselves. Costs 2 more model evaluations per prediction, about twice the guidance time "
        "per step (on by default for SDI; choosing a method resets it)")
    low_vram: BoolProperty(name="Low VRAM", default=False,
                           description="Half precision and smaller renders, for 8 GB graphics cards")
    last_run_dir: StringProperty(name="Last Run", subtype="DIR_PATH",
                                 description="Run folder of this scene's latest generation")
    last_mesh: StringProperty(name="Last Mesh", subtype="FILE_PATH",
                              description="The mesh of this scene's latest finished generation")


class NFSD_JobState(bpy.types.PropertyGroup):
    """The running (or last) job, mirrored from the job object by the timer for the panel."""

    state: EnumProperty(name="State", items=[(s, s.title(), "") for s in job.STATES], default=job.IDLE)
    kind: StringProperty(name="Kind")
    stage: StringProperty(name="Stage")
    message: StringProperty(name="Status")
    step: IntProperty(name="Step")
    total_steps: IntProperty(name="Total Steps")
    progress: FloatProperty(name="Progress", min=0.0, max=1.0)
    progress_text: StringProperty(name="Progress Text")
    loss: FloatProperty(name="Loss")
    it_per_s: FloatProperty(name="Iterations per Second")
    eta_s: FloatProperty(name="Time Left")
    run_dir: StringProperty(name="Run Folder", subtype="DIR_PATH")
    preview_image: StringProperty(name="Preview Image", description="Name of the preview image datablock")
    preview_step: IntProperty(name="Preview Step", default=-1)
    error_message: StringProperty(name="Error")
    warning: StringProperty(name="Warning", description="The backend's newest warning; the run goes on")
    error_log: StringProperty(name="Error Log", description="The last lines of the backend's log, one per line")
    fix_operator: StringProperty(name="Fix", description="Operator that fixes the error")
    fix_label: StringProperty(name="Fix Label")
    install_state: StringProperty(name="Install State", default="idle")
    install_message: StringProperty(name="Install Status")
    doctor_state: StringProperty(name="Check State", default="idle")
    doctor_text: StringProperty(name="Backend Check", description="The backend check's result, one line per line")


T = TypeVar("T")


def present(value: T | None, what: str) -> T:
    """`value`, which Blender's API may declare optional but which is always there where the
    add-on asks for it (the scene of an operator's context, a panel's layout)."""
    if value is None:
        raise RuntimeError(f"Blender gave no {what} here")
    return value


def scene_settings(context: bpy.types.Context) -> NFSD_SceneSettings:
    return present(context.scene, "scene").nfsd  # type: ignore[attr-defined,no-any-return]


def job_state(context: bpy.types.Context) -> NFSD_JobState:
    return present(context.window_manager, "window manager").nfsd_job  # type: ignore[attr-defined,no-any-return]


CLASSES = (NFSD_SceneSettings, NFSD_JobState)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    # (the stubs declare PointerProperty as returning None, and these attributes as unknown)
    bpy.types.Scene.nfsd = bpy.props.PointerProperty(  # type: ignore[attr-defined,func-returns-value]
        type=NFSD_SceneSettings)
    bpy.types.WindowManager.nfsd_job = bpy.props.PointerProperty(  # type: ignore[attr-defined,func-returns-value]
        type=NFSD_JobState)


def unregister() -> None:
    del bpy.types.WindowManager.nfsd_job  # type: ignore[attr-defined]
    del bpy.types.Scene.nfsd  # type: ignore[attr-defined]
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
