"""A finished run as the add-on sees it: where its mesh is, and the generation settings stored on
the imported objects so any asset can be regenerated. No bpy here."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any, Mapping

REQUEST_NAME = "blender_request.json"  # the add-on's settings for the run, written at start
CONFIG_NAME = "config.json"  # the backend's fully resolved settings
MESH_PATH = Path("mesh") / "model.glb"
MAX_NAME_LENGTH = 63  # Blender's limit for datablock names, in UTF-8 bytes (before 5.0)

# custom property -> where the backend's resolved config.json keeps it, and the add-on's name
PROPERTY_SOURCES: dict[str, tuple[tuple[str, ...], str]] = {
    "prompt": (("prompt",), "prompt"),
    "negative_prompt": (("guidance", "negative_prompt"), "negative_prompt"),
    "method": (("guidance", "method"), "method"),
    "guidance_scale": (("guidance", "guidance_scale"), "guidance_scale"),
    "seed": (("seed",), "seed"),
    "steps": (("steps",), "steps"),
    "model": (("model", "name"), "model"),
}


def generation_properties(requested: Mapping[str, Any], resolved: Mapping[str, Any], run_dir: str) -> dict[str, Any]:
    """The custom properties of an imported result: the backend's resolved value where it wrote
    one (e.g. the preset's step count), else what the add-on asked for."""
    properties: dict[str, Any] = {}
    for name, (path, request_key) in PROPERTY_SOURCES.items():
        value = _lookup(resolved, path)
        if value is None:
            value = requested.get(request_key)
        if value is not None:
            properties[name] = value
    properties["run_dir"] = run_dir
    return properties


def _lookup(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file; empty when the file is missing or unreadable (a run folder
    from an older or interrupted run lacks some files)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_properties(run_dir: Path) -> dict[str, Any]:
    """The custom properties for a run folder's result, from the files it holds."""
    return generation_properties(read_json(run_dir / REQUEST_NAME), read_json(run_dir / CONFIG_NAME), str(run_dir))


def run_dir_of(mesh: Path) -> Path:
    """The run folder a result mesh belongs to (generate and re-export both write RUN/MESH_PATH).
    Not the scene's latest run: that one may still be running, or have failed, when its
    predecessor's mesh is imported."""
    return mesh.parents[len(MESH_PATH.parts) - 1]


def collection_name(prompt: str) -> str:
    """The collection a result goes into: the prompt, on one line, NFC-normalised, cut to Blender's
    name limit in bytes at a whole character (Blender would cut a longer name itself, mid-character)."""
    name = unicodedata.normalize("NFC", " ".join(prompt.split())) or "NFSD result"
    encoded = name.encode("utf-8")
    if len(encoded) <= MAX_NAME_LENGTH:
        return name
    return encoded[:MAX_NAME_LENGTH - 3].decode("utf-8", errors="ignore").rstrip() + "..."
