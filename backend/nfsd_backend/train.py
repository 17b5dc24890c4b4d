"""`nfsd generate`: text -> NeRF by score distillation -> textured mesh.

Each step: random camera -> render -> resize to the model's resolution -> encode -> guidance
direction -> backward through the renderer -> AdamW. Previews, checkpoints and stop requests are
handled between steps; the run ends with `export_mesh` into `OUT/mesh/`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .checkpoint import checkpoint_fits, load_checkpoint, save_checkpoint
from .cli import EXPORT_FLAGS, GUIDANCE_FLAGS, MODEL_FLAGS, RUN_FLAGS, Flag, add_common, add_flags, settings_from
from .config import VIEW_PROMPTS, GenerateConfig, GuidanceConfig, load_config_file, merge, resolve_generate, to_dict, validate_generate
from .control import EXPORT, RunControl
from .diffusion import DiffusionModel, load_model
from .diffusion.loading import resolve_device
from .errors import EXIT_CANCELLED, EXIT_OK, BadConfig, NonFinite, disk_full_means, out_of_memory_means
from .events import EventStream, StepTimer
from .export import ExportResult, export_mesh_with
from .guidance import Guidance, distillation_loss, make_guidance
from .guidance.views import ViewPrompts
from .imaging import tensor_to_image
from .nerf.cameras import VIEW_SUFFIXES, Cameras, preview_cameras, sample_cameras
from .nerf.field import NerfField
from .nerf.renderer import VolumeRenderer
from .prompts import fit_negative_prompt, fit_prompt
from .rundir import attach_log, lock_run_dir, prepare_run_dir, write_json, write_png

GENERATE_FLAGS = (
    Flag("--preset", "preset", "quality preset: sets steps and render sizes", choices=("draft", "standard", "high")),
    Flag("--render-size", "train.render_size", "render size early in the run", int),
    Flag("--render-size-late", "train.render_size_late", "render size after the switch", int),
    Flag("--preview-every", "train.preview_every", "steps between previews", int),
    Flag("--checkpoint-every", "train.checkpoint_every", "steps between checkpoints", int),
    Flag("--lr", "train.lr", "learning rate of the hash-grid encoding", float),
    Flag("--view-prompts", "guidance.view_prompts", "camera prompt: switch by azimuth, or interpolate "
         "front/side/back", choices=VIEW_PROMPTS),
    Flag("--perp-neg", "guidance.perp_neg", "Perp-Neg against multi-face results (default: on for SDI on "
         "Stable Diffusion); up to 2 more evaluations per prediction", bool),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", help="what to make (or give it in --config)")
    parser.add_argument("--out", type=Path, help="run folder to create (required unless --resume)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run from its last checkpoint")
    parser.add_argument("--control", choices=("stdin",), help="read `stop` / `export` lines from stdin")
    add_common(parser)
    add_flags(parser, MODEL_FLAGS + GUIDANCE_FLAGS + RUN_FLAGS + EXPORT_FLAGS + GENERATE_FLAGS)


def resolve_config(args: argparse.Namespace) -> tuple[GenerateConfig, Path, dict[str, Any] | None]:
    """The run's settings, its folder, and the checkpoint to continue from (None for a new run)."""
    given = settings_from(args)
    if args.prompt is not None:
        given["prompt"] = args.prompt
    if args.resume is not None:
        run_dir = Path(args.resume).expanduser().resolve()
        if not (run_dir / "config.json").is_file():
            raise BadConfig(f"{run_dir} is not a run folder (no config.json); give the --out folder of a run.")
        saved = load_config_file(run_dir / "config.json")
        # A run's config.json holds every setting of its version. The view-prompt settings are
        # newer than some runs: one they lack takes its plain default, the behaviour before it
        # existed (perp_neg off), not a method's newer default. Only these: a whole default config
        # under the saved one would put unset values (steps: null) over the preset's.
        if isinstance(saved.get("guidance"), dict):
            plain = to_dict(GuidanceConfig())
            for name in ("perp_neg", "view_prompts"):
                saved["guidance"].setdefault(name, plain[name])
        config = resolve_generate(merge(saved, given))
        validate_generate(config)
        lock_run_dir(run_dir)
        return config, run_dir, load_checkpoint(run_dir)
    if args.out is None:
        raise BadConfig("say where the run goes: --out FOLDER (or continue one with --resume FOLDER).")
    config = resolve_generate(given)
    validate_generate(config)
    return config, prepare_run_dir(args.out), None


class Trainer:
    """The NeRF, its optimiser and the guidance, stepped one camera at a time."""

    def __init__(self, config: GenerateConfig, model: DiffusionModel, events: EventStream | None = None):
        self.config = config
        self.model = model
        self.device = model.device
        self.generator = torch.Generator().manual_seed(config.seed)
        t = config.train
        self.field = NerfField(t.field, generator=self.generator, device=self.device)
        self.renderer = VolumeRenderer(t.render, bound=t.field.bound, generator=self.generator, device=self.device)
        groups = self.field.parameter_groups()
        self.optimizer = torch.optim.AdamW(
            [{"params": groups["encoding"], "lr": t.lr}, {"params": groups["mlp"], "lr": t.lr_mlp},
             {"params": list(self.renderer.background.parameters()), "lr": t.lr_background}],
            betas=(0.9, 0.99), eps=1e-15, weight_decay=0.0)
        self.guidance: Guidance = make_guidance(config.guidance.method, model.denoiser, **config.guidance.settings())
        # A prompt longer than the encoder takes is cut (a `warning` event when `events` is given).
        prompt = fit_prompt(model.tokenizer, config.prompt, events, reserved=max(VIEW_SUFFIXES, key=len))
        negative = fit_negative_prompt(model.tokenizer, config.guidance.negative_prompt, events)
        texts = [prompt + suffix for suffix in VIEW_SUFFIXES] + ["", negative]
        embeddings = model.encode_prompts(texts)
        model.offload_text_encoder()
        self.view_prompts = ViewPrompts({suffix: embeddings[i:i + 1] for i, suffix in enumerate(VIEW_SUFFIXES)},
                                        uncond=embeddings[-2:-1], neg=embeddings[-1:], settings=config.guidance)
        self.step = 0  # steps completed

    # --- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "field": self.field.state_dict(), "renderer": self.renderer.state_dict(),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.field.load_state_dict(state["field"])
        self.renderer.load_state_dict(state["renderer"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step = state["step"]

    def parameters_finite(self) -> bool:
        return all(torch.isfinite(p).all() for p in (*self.field.parameters(), *self.renderer.parameters()))

    # --- one step ------------------------------------------------------------------------------

    def render_size(self, step: int) -> int:
        t = self.config.train
        if t.render_size_late is not None and step >= t.render_size_switch_at * self.config.steps:
            return t.render_size_late
        return t.render_size

    def train_step(self, timings: dict[str, float] | None = None) -> tuple[float, int]:
        """One optimisation step; returns (loss, timestep). `timings`, when given, receives the
        seconds spent in "render", "encode", "guidance" and "backward" (for benchmarks)."""
        clock = PhaseClock(timings, self.device)
        t = self.config.train
        step, total = self.step, self.config.steps
        cameras = sample_cameras(1, t.cameras, self.generator)
        prompts = self.view_prompts.for_camera(float(cameras.azimuth_deg[0]), float(cameras.elevation_deg[0]))
        size = self.render_size(step)
        clock.start()
        self.renderer.update_occupancy(self.field, step, self.generator)
        rendered = self.renderer.render(self.field, cameras.to(self.device), size, size, generator=self.generator)
        clock.lap("render")
        x = self.model.encode_images(rendered.rgb.permute(0, 3, 1, 2))
        clock.lap("encode")
        result = self.guidance.direction(x, prompts, step, total, self.generator)
        clock.lap("guidance")
        loss = distillation_loss(x, result.grad)
        opacity = rendered.opacity.clamp(1e-5, 1 - 1e-5)
        if t.lambda_sparsity > 0:
            loss = loss + t.lambda_sparsity * opacity.mean()
        if t.lambda_opacity > 0:
            entropy = -(opacity * opacity.log() + (1 - opacity) * (1 - opacity).log()).mean()
            loss = loss + t.lambda_opacity * entropy
        if not torch.isfinite(loss):
            raise NonFinite(f"the loss became {loss.item()} at step {step + 1}; the last checkpoint is kept. "
                            "Try a lower --lr or --guidance-scale, or another --seed.")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        clock.lap("backward")
        self.step += 1
        return loss.item(), int(result.timestep[0])

    @torch.no_grad()
    def preview(self) -> Any:
        """The preview sheet of the field as it is now (`preview_sheet`)."""
        def render_views(cameras: Cameras, size: int) -> list[Any]:
            # Albedo on white: the colours the exported texture will carry, without lighting.
            views = self.renderer.render(self.field, cameras.to(self.device), size, size, shading="albedo",
                                         background="solid")
            return [tensor_to_image(v) for v in views.rgb]

        return preview_sheet(render_views, self.config.train.preview_size)


def preview_sheet(render_views: Callable[[Cameras, int], list[Any]], size: int) -> Any:
    """Front view on top (size px, drawn at 2 x size), a strip of front / right / back / left
    underneath at size / 2 each. `render_views(cameras, pixels)` gives one PIL image per camera.

    The strip is rendered at the size it is drawn: rendering it at full size and shrinking it cost
    twice the rays of the whole sheet, a third of a CPU draft's wall time.
    """
    from PIL import Image

    cameras = preview_cameras()
    front = render_views(cameras[:1], size)[0]
    strip = render_views(cameras, size // 2)
    canvas = Image.new("RGB", (2 * size, 2 * size + size // 2), "white")
    canvas.paste(front.resize((2 * size, 2 * size), Image.BILINEAR), (0, 0))
    for i, image in enumerate(strip):
        canvas.paste(image, (i * size // 2, 2 * size))
    return canvas


class PhaseClock:
    """Wall time per phase of a step, synchronising CUDA so the GPU's queued work is counted."""

    def __init__(self, timings: dict[str, float] | None, device: torch.device):
        self.timings, self.device = timings, device
        self.last = 0.0

    def start(self) -> None:
        if self.timings is not None:
            self._sync()
            self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        if self.timings is not None:
            self._sync()
            now = time.perf_counter()
            self.timings[phase] = self.timings.get(phase, 0.0) + now - self.last
            self.last = now

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def run(args: argparse.Namespace, events: EventStream) -> int:
    config, out, checkpoint = resolve_config(args)
    attach_log(out)
    events.attach_run_dir(out)
    control = RunControl()
    if args.control == "stdin":
        control.watch_stream()
    with control.handling_signals():
        return train_and_export(config, out, checkpoint, events, control)


def train_and_export(config: GenerateConfig, out: Path, checkpoint: dict[str, Any] | None, events: EventStream,
                     control: RunControl) -> int:
    started = time.perf_counter()
    device = resolve_device(config.model.device)
    events.emit("start", run_dir=str(out), total_steps=config.steps, method=config.guidance.method,
                device=str(device), config=to_dict(config))
    events.emit("stage", name="load_model", message=f"loading {config.model.name}")
    with out_of_memory_means("lower --render-size-late or --mesh-resolution, or turn on --low-vram (the last "
                             "checkpoint is kept, continue with --resume)."):
        trainer = Trainer(config, load_model(config.model), events)
        if checkpoint is not None:
            with checkpoint_fits(out):
                trainer.load_state_dict(checkpoint)
        # Written once the run can start: a folder left by a failed start (a wrong model name, no
        # GPU) holds no config.json, so the same --out can be used again.
        write_json(out / "config.json", to_dict(config))
        events.emit("stage", name="train", message=f"{config.guidance.method}: steps {trainer.step + 1}-{config.steps}")
        timer = StepTimer(config.steps, first_step=trainer.step + 1)
        while trainer.step < config.steps and control.requested is None:
            loss, timestep = trainer.train_step()
            step = trainer.step
            events.emit("progress", step=step, total_steps=config.steps, loss=round(loss, 6), timestep=timestep,
                        **timer.fields(step))
            if step % config.train.preview_every == 0 or step == config.steps:
                write_preview(trainer, out, events)
            if step % config.train.checkpoint_every == 0 or step == config.steps:
                write_checkpoint(trainer, out, events)
    if control.requested is not None and control.requested != EXPORT:
        path = write_checkpoint(trainer, out, events)
        events.emit("cancelled", step=trainer.step, checkpoint=str(path))
        return EXIT_CANCELLED
    if trainer.step < config.steps:  # `export` asked: keep the state reached so far, then export it
        write_checkpoint(trainer, out, events)
    events.emit("stage", name="export", message=f"marching cubes at {config.export.mesh_resolution}^3, "
                                                f"texture {config.export.texture_size} px")
    with out_of_memory_means(f"the trained field is kept: export it again with a lower --mesh-resolution or "
                             f"--texture-size, `nfsd export {out} --mesh-resolution 128`."):
        result = export_field(trainer.field, out / "mesh", config, events)
    events.emit("done", mesh=str(result.glb), obj=str(result.obj), elapsed_s=round(time.perf_counter() - started, 3))
    return EXIT_OK


def write_preview(trainer: Trainer, out: Path, events: EventStream) -> None:
    image = trainer.preview()
    path = out / "previews" / f"step_{trainer.step:06d}.png"
    write_png(path, image)
    write_png(out / "previews" / "latest.png", image)
    events.emit("preview", step=trainer.step, path=str(path))


def write_checkpoint(trainer: Trainer, out: Path, events: EventStream) -> Path:
    if not trainer.parameters_finite():
        raise NonFinite(f"the model's parameters became non-finite by step {trainer.step}; they were not saved "
                        "and the last checkpoint is kept. Try a lower --lr or --guidance-scale.")
    with disk_full_means(f"the checkpoint of step {trainer.step} was not written and the previous one is kept: free "
                         f"some space, then continue with `nfsd generate --resume {out}`."):
        path = save_checkpoint(out, trainer.state_dict())
    events.emit("checkpoint", step=trainer.step, path=str(path))
    return path


def field_from_state(config: GenerateConfig, state: dict[str, Any], device: torch.device, run_dir: Path) -> NerfField:
    """The trained field of a checkpoint, ready to evaluate."""
    field = NerfField(config.train.field, device=device)
    with checkpoint_fits(run_dir):
        field.load_state_dict(state["field"])
    return field.eval()


def export_field(field: NerfField, mesh_dir: Path, config: GenerateConfig, events: EventStream) -> ExportResult:
    """The textured mesh of `field` into `mesh_dir`, each export stage reported as an `export` stage event."""
    with disk_full_means(f"the mesh files are written all at once, so any earlier ones in {mesh_dir} are kept: free "
                         f"some space, then export again with `nfsd export {mesh_dir.parent}`."):
        return export_mesh_with(field, mesh_dir, bound=config.train.field.bound, config=config.export,
                                on_stage=lambda name, message: events.emit("stage", name="export", message=message))
