"""Preferences: where the backend is, which model and device it uses, where runs go; the buttons
that install and check the backend."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from . import command, install
from .properties import job_state, present

DEVICE_ITEMS = [
    ("auto", "Automatic", "The NVIDIA GPU when there is one, else the CPU"),
    ("cuda", "CUDA GPU", "An NVIDIA GPU"),
    ("mps", "Apple GPU", "Metal on Apple silicon"),
    ("cpu", "CPU", "Slow, but works everywhere"),
]
PRECISION_ITEMS = [
    ("auto", "Automatic", "Half precision on the GPU, full precision on the CPU"),
    ("fp16", "Half (fp16)", ""),
    ("bf16", "BFloat16", ""),
    ("fp32", "Full (fp32)", ""),
]


class NFSD_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__  # type: ignore[assignment]

    backend_python: StringProperty(
        name="Backend Interpreter", subtype="FILE_PATH",
        description="Python of the backend's environment; empty = the one Install Backend creates")
    model: StringProperty(
        name="Model", default=command.DEFAULT_MODEL,
        description="Hugging Face id, diffusers folder or .safetensors file; toy-shapes runs on any CPU")
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="auto")
    precision: EnumProperty(name="Precision", items=PRECISION_ITEMS, default="auto")
    output_folder: StringProperty(
        name="Output Folder", subtype="DIR_PATH",
        description="Where run folders go; empty = the add-on's user folder (runs)")

    def draw(self, context: bpy.types.Context) -> None:
        layout = present(self.layout, "layout")
        layout.prop(self, "backend_python")
        layout.prop(self, "model")
        row = layout.row()
        row.prop(self, "device")
        row.prop(self, "precision")
        layout.prop(self, "output_folder")
        state = job_state(context)
        row = layout.row()
        row.operator("nfsd.install_backend", icon="IMPORT")
        row.operator("nfsd.check_backend", icon="CHECKMARK")
        if state.install_state != "idle":
            box = layout.box()
            box.label(text=f"Install: {state.install_state}",
                      icon="ERROR" if state.install_state == "failed" else "INFO")
            box.label(text=state.install_message)
        if state.doctor_text:
            box = layout.box()
            for line in state.doctor_text.splitlines():
                box.label(text=line)


def preferences(context: bpy.types.Context) -> NFSD_AddonPreferences:
    addons = present(context.preferences, "preferences").addons
    return addons[__package__].preferences  # type: ignore[index,return-value]


def user_dir() -> Path:
    """The add-on's writable folder (venv, logs, default runs): never the extension's own folder."""
    return Path(bpy.utils.extension_path_user(__package__, create=True))  # type: ignore[arg-type]


def venv_dir() -> Path:
    return user_dir() / "venv"


def backend_python(prefs: NFSD_AddonPreferences) -> Path:
    """The interpreter that runs the backend: the preference, else the installed venv's."""
    if prefs.backend_python:
        return Path(bpy.path.abspath(prefs.backend_python))
    return install.venv_python(venv_dir())


def backend_problem(prefs: NFSD_AddonPreferences) -> str | None:
    """Why the backend cannot run, as an instruction; None when its interpreter is there."""
    python = backend_python(prefs)
    if python.is_file():
        return None
    if prefs.backend_python:
        return f"The backend interpreter {python} does not exist: fix it in the preferences or Install Backend."
    return "The backend is not installed: click Install Backend (in the panel or the preferences)."


def output_folder(prefs: NFSD_AddonPreferences) -> Path:
    if prefs.output_folder:
        return Path(bpy.path.abspath(prefs.output_folder))
    return user_dir() / "runs"


def bundled_backend() -> Path:
    """The backend source that build.py packs into the extension."""
    return Path(__file__).resolve().parent / "backend"
