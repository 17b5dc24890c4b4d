"""NFSD Text to 3D: a sidebar panel that turns a prompt into a textured mesh with a separate
backend process (Noise-Free Score Distillation, Score Distillation via Inversion or SDS).

The pure-Python modules (command, protocol, job, process, install, doctor, result) import no bpy
and are tested on their own; the bpy glue (properties, preferences, operators, panels, runtime,
importer) is imported when Blender registers the add-on, so importing the package needs no bpy.
"""

from __future__ import annotations

import atexit
from typing import Any


def _classes() -> tuple[Any, ...]:
    from . import operators, panels, preferences

    return (preferences.NFSD_AddonPreferences, *operators.CLASSES, *panels.CLASSES)


def register() -> None:
    import bpy

    from . import properties, runtime

    properties.register()
    for cls in _classes():
        bpy.utils.register_class(cls)
    bpy.app.timers.register(runtime.timer, first_interval=runtime.IDLE_INTERVAL_S, persistent=True)
    atexit.register(runtime.shutdown)  # quitting Blender ends the backend too


def unregister() -> None:
    import bpy

    from . import properties, runtime

    runtime.shutdown()
    atexit.unregister(runtime.shutdown)
    if bpy.app.timers.is_registered(runtime.timer):
        bpy.app.timers.unregister(runtime.timer)
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
    properties.unregister()
