"""The sidebar tab "NFSD" in the 3D viewport: settings, the Generate button, progress with the
newest preview, errors with their fix, and the result buttons; an Advanced sub-panel."""

from __future__ import annotations

import bpy

from . import command, runtime
from .job import ACTIVE, FAILED
from .preferences import backend_problem, preferences
from .properties import NFSD_JobState, job_state, present, scene_settings

PREVIEW_SCALE = 10.0  # size of the preview image in the panel, in icon units


class NFSD_PT_main(bpy.types.Panel):
    bl_label = "Text to 3D"
    bl_idname = "NFSD_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "NFSD"

    def draw(self, context: bpy.types.Context) -> None:
        layout = present(self.layout, "layout")
        settings = scene_settings(context)
        state = job_state(context)

        problem = backend_problem(preferences(context))
        if state.install_state == "running":
            box = layout.box()
            box.label(text="Installing the backend...", icon="TIME")
            box.label(text=state.install_message)
        elif problem:
            box = layout.box()
            box.label(text=problem, icon="ERROR")
            box.operator("nfsd.install_backend", icon="IMPORT")

        layout.prop(settings, "prompt", text="")
        layout.prop(settings, "method", expand=True)
        if settings.method == "nfsd":
            layout.prop(settings, "negative_prompt")
        row = layout.row(align=True)
        row.prop(settings, "guidance_scale")
        default = command.DEFAULT_GUIDANCE_SCALE[settings.method]
        if settings.guidance_scale != default:
            row.label(text=f"default {default:g}")
        layout.prop(settings, "perp_neg")
        layout.prop(settings, "preset")
        layout.prop(settings, "steps")
        row = layout.row(align=True)
        row.prop(settings, "seed")
        row.operator("nfsd.randomize_seed", text="", icon="FILE_REFRESH")

        if state.state in ACTIVE:
            draw_progress(layout, state)
        else:
            layout.operator("nfsd.generate", icon="PLAY")
        if state.state == FAILED:
            draw_error(layout, state)

        row = layout.row(align=True)
        row.operator("nfsd.open_run_folder", text="", icon="FILE_FOLDER")
        row.operator("nfsd.import_result", icon="IMPORT")
        row.operator("nfsd.reexport", icon="MESH_DATA")



def draw_progress(layout: bpy.types.UILayout, state: NFSD_JobState) -> None:
    """Progress bar (step / total, speed, time left), the stage, the stop buttons, the preview."""
    layout.progress(factor=state.progress, type="BAR", text=state.progress_text)
    layout.label(text=state.message, icon="TIME")
    if state.warning:
        layout.label(text=state.warning, icon="INFO")
    row = layout.row(align=True)
    row.operator("nfsd.cancel", icon="CANCEL")
    row.operator("nfsd.stop_and_import", icon="IMPORT")
    image = bpy.data.images.get(state.preview_image) if state.preview_image else None
    if image is not None and image.preview is not None:
        layout.template_icon(icon_value=image.preview.icon_id, scale=PREVIEW_SCALE)


def draw_error(layout: bpy.types.UILayout, state: NFSD_JobState) -> None:
    """The error in one line, the end of the backend's log after a crash, the fix button."""
    box = layout.box()
    box.label(text=state.error_message, icon="ERROR")
    for line in state.error_log.splitlines():
        box.label(text=line)
    if state.fix_operator:
        box.operator(state.fix_operator, text=state.fix_label)


class NFSD_PT_advanced(bpy.types.Panel):
    bl_label = "Advanced"
    bl_idname = "NFSD_PT_advanced"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "NFSD"
    bl_parent_id = "NFSD_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = present(self.layout, "layout")
        settings = scene_settings(context)
        layout.prop(settings, "render_schedule")
        layout.prop(settings, "timestep_range")
        if settings.timestep_range == "custom":
            row = layout.row(align=True)
            row.prop(settings, "t_min")
            row.prop(settings, "t_max")
        layout.prop(settings, "mesh_resolution")
        layout.prop(settings, "texture_size")
        layout.prop(settings, "low_vram")
        layout.enabled = not runtime.job_active()


CLASSES = (NFSD_PT_main, NFSD_PT_advanced)
