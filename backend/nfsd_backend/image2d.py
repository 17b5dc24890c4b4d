"""`nfsd image`: distil the diffusion model into one image (NFSD paper, figure 7).

The optimised parameter is the model-space image itself (a latent for Stable Diffusion, pixels
for a pixel-space model), so this shows in seconds-to-minutes what a guidance rule does, without
any 3-D. `--compare sds,nfsd,sdi` runs each rule from the same seed (same start, timesteps and
noise) and writes a labelled side-by-side grid.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from .cli import GUIDANCE_FLAGS, MODEL_FLAGS, RUN_FLAGS, Flag, _csv, add_common, add_flags, settings_from
from .config import ImageConfig, from_dict, resolve_guidance, to_dict, validate_image
from .diffusion import DiffusionModel, load_model
from .diffusion.loading import resolve_device
from .errors import EXIT_OK, out_of_memory_means
from .events import EventStream, StepTimer
from .guidance import Prompts, distillation_loss, make_guidance
from .imaging import labelled_row, tensor_to_image
from .prompts import fit_negative_prompt, fit_prompt
from .rundir import attach_log, prepare_run_dir, write_json, write_png

# Adam's step on the image when `lr` is unset, by the space the model works in. Adam moves every
# value by about lr per step whatever the gradient's size, so this is how far 1,000 steps can
# carry a pixel. Measured on toy-shapes (32 px in [-1, 1], "a red cube, front view", seed 0):
# 0.05 and 0.01 drive SDS and NFSD to saturated, noisy colours; 0.003, 0.002 and 0.001 give the
# object on a flat background, 0.001 still converging at step 1,000.
IMAGE_LR = {"latent": 0.05, "pixel": 0.002}


def image_lr(config: ImageConfig, model: DiffusionModel) -> float:
    """The learning rate a run uses: the configured one, else IMAGE_LR for the model's space."""
    if config.lr is not None:
        return config.lr
    return IMAGE_LR["pixel" if model.pixel_space else "latent"]


IMAGE_FLAGS = (
    Flag("--lr", "lr", f"Adam learning rate on the image (default: {IMAGE_LR['latent']:g} on latents, "
                       f"{IMAGE_LR['pixel']:g} on pixels)", float),
    Flag("--preview-every", "preview_every", "steps between previews", int),
    Flag("--compare", "compare", "comma-separated methods to run side by side, e.g. sds,nfsd,sdi", _csv),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", help="what the image shows (or give it in --config)")
    parser.add_argument("--out", type=Path, required=True, help="run folder to create")
    add_common(parser)
    add_flags(parser, MODEL_FLAGS + GUIDANCE_FLAGS + RUN_FLAGS + IMAGE_FLAGS)


def resolve_config(args: argparse.Namespace) -> ImageConfig:
    settings = settings_from(args)
    if args.prompt is not None:
        settings["prompt"] = args.prompt
    config = from_dict(ImageConfig, settings)
    if not config.compare:  # a comparison keeps the scale unset so each rule takes its own default
        config = dataclasses.replace(config, guidance=resolve_guidance(config.guidance))
    validate_image(dataclasses.replace(config, guidance=resolve_guidance(config.guidance)))
    return config


def run(args: argparse.Namespace, events: EventStream) -> int:
    config = resolve_config(args)
    out = prepare_run_dir(args.out)
    attach_log(out)
    events.attach_run_dir(out)
    methods = config.compare or [config.guidance.method]
    started = time.perf_counter()
    events.emit("start", run_dir=str(out), total_steps=config.steps * len(methods), method=",".join(methods),
                device=str(resolve_device(config.model.device)), config=to_dict(config))
    events.emit("stage", name="load_model", message=f"loading {config.model.name}")
    with out_of_memory_means("turn on --low-vram, or run on the CPU with --device cpu."):
        return distill_and_write(config, out, methods, events, started)


def distill_and_write(config: ImageConfig, out: Path, methods: list[str], events: EventStream, started: float) -> int:
    """Load the model, distil one image per method, write the finals (and the comparison row)."""
    model = load_model(config.model)
    # Written once the run can start (see train.py): a failed start leaves the --out reusable.
    write_json(out / "config.json", to_dict(config))
    config = dataclasses.replace(config, lr=image_lr(config, model))
    texts = [fit_prompt(model.tokenizer, config.prompt, events), "",
             fit_negative_prompt(model.tokenizer, config.guidance.negative_prompt, events)]
    prompts = Prompts(*(e[None] for e in model.encode_prompts(texts)))
    model.offload_text_encoder()
    timer = StepTimer(config.steps * len(methods))
    finals = []
    for index, method in enumerate(methods):
        events.emit("stage", name="train", message=f"{method}: {config.steps} steps, lr {config.lr:g}")
        guidance = make_guidance(method, model.denoiser, **config.guidance.settings())
        x = distill_image(model, guidance, prompts, config, events, timer, out, index, method)
        final = tensor_to_image(model.decode_latents(x)[0])
        name = "final.png" if len(methods) == 1 else f"final_{method}.png"
        write_png(out / name, final)
        finals.append((final, f"{method.upper()}  s={guidance.settings.guidance_scale:g}"))
    result = out / "final.png"
    if len(methods) > 1:
        result = out / "compare.png"
        write_png(result, labelled_row([f for f, _ in finals], [label for _, label in finals]))
    events.emit("done", image=str(result), mesh=None, obj=None, elapsed_s=round(time.perf_counter() - started, 3))
    return EXIT_OK


def distill_image(model: DiffusionModel, guidance, prompts: Prompts, config: ImageConfig, events: EventStream,
                  timer: StepTimer, out: Path, run_index: int, method: str) -> torch.Tensor:
    """Optimise one model-space image with `guidance` from the seeded start; returns it."""
    generator = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():  # start from a flat grey image, the same for every rule
        grey = torch.full((1, 3, model.image_size, model.image_size), 0.5, device=model.device)
        x = model.encode_images(grey).clone()
    x.requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=config.lr)
    offset = run_index * config.steps
    for step in range(config.steps):
        result = guidance.direction(x, prompts, step, config.steps, generator)
        optimizer.zero_grad(set_to_none=True)
        loss = distillation_loss(x, result.grad)
        loss.backward()
        optimizer.step()
        done = offset + step + 1
        events.emit("progress", step=done, total_steps=timer.total_steps, loss=round(loss.item(), 6),
                    timestep=int(result.timestep[0]), **timer.fields(done))
        if (step + 1) % config.preview_every == 0 or step + 1 == config.steps:
            with torch.no_grad():
                image = tensor_to_image(model.decode_latents(x.detach())[0])
            prefix = f"{method}_" if config.compare else ""
            path = out / "previews" / f"{prefix}step_{step + 1:06d}.png"
            write_png(path, image)
            write_png(out / "previews" / "latest.png", image)
            events.emit("preview", step=done, path=str(path))
    return x.detach()
