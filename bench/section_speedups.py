"""Section 6: candidate speed-ups, each measured before and after in the same run (ratios from one
run, never a timed test). A candidate only becomes a default when this table shows it pays.

- every condition of a step in one UNet call (what `predict_conditions` does), or one call per
  condition: NFSD at t >= 200 evaluates the empty, the prompt's and the negative prompt's
  condition;
- prompt embeddings cached per distinct prompt (what `encode_prompts` does), or the text
  encoder run on the step's prompts at every step;
- channels-last memory format for the UNet and the VAE (what `--low-vram` turns on);
- gradient checkpointing of the VAE encoder (memory for time: the encoder's activations are
  the largest tensors of a 512x512 step);
- renderer chunk size (one chunk, or several chunks recomputed in backward);
- the pure-torch hash grid's vertex arithmetic over all points at once, or in chunks of
  `hashgrid.POINTS_PER_CHUNK` (the default since it paid: see the table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from nfsd_backend.config import NFSD_NEGATIVE_PROMPT
from nfsd_backend.diffusion.denoiser import predict_conditions
from nfsd_backend.nerf import hashgrid
from section_nerf import make_field, render_step
from harness import PeakMemory, Table, Timing, log, ratio, time_runs
from model_sources import PROMPT, ModelSource


@dataclass
class Variant:
    label: str
    prepare: Callable[[], None]  # puts the modules into this variant's state
    run: Callable[[], None]  # one timed run


def measure(variant: Variant, repeats: int, device: torch.device) -> tuple[Timing, PeakMemory]:
    variant.prepare()
    run = variant.run
    run()  # warm-up outside the memory window: first-call allocations are not the step's
    with PeakMemory(device) as peak:
        timing = time_runs(run, repeats, device, warmup=0)
    return timing, peak


def compare(table: Table, what: str, baseline: Variant, candidate: Variant, repeats: int,
            device: torch.device) -> None:
    log(f"speed-up {what}: {baseline.label} vs {candidate.label}, {repeats} runs each")
    before, before_peak = measure(baseline, repeats, device)
    after, after_peak = measure(candidate, repeats, device)
    table.add(what, baseline.label, before.cell(), before_peak.cell(), candidate.label, after.cell(),
              after_peak.cell(), ratio(before.median, after.median))


def run(source: ModelSource, render_size: int, log2_table_size: int, repeats: int,
        device: torch.device) -> list[Table]:
    table = Table(f"Speed-up candidates, before and after ({source.name}, {device.type})",
                  ["what", "before", "before s", "before peak GiB", "after", "after s", "after peak GiB",
                   "speed-up (before / after)"])
    model = source.build("auto")
    unet, vae = model.unet, model.vae
    generator = torch.Generator().manual_seed(0)
    size = model.latent_size
    z = torch.randn(2, model.latent_channels, size, size, generator=generator).to(device)
    t = torch.full((2,), 500, device=device)
    embeddings = model.encode_prompts([PROMPT, ""])
    # One NFSD step at t >= 200: one latent, three conditions.
    step_prompts = [f"{PROMPT}, front view", "", NFSD_NEGATIVE_PROMPT]
    conditions = list(model.encode_prompts(step_prompts)[:, None])
    z1, t1 = z[:1], t[:1]
    image = torch.rand(1, 3, model.image_size, model.image_size, generator=generator).to(device)

    def unet_call() -> None:
        with torch.no_grad():
            model.denoiser.predict_eps(z, t, embeddings)

    def conditions_one_call_each() -> None:
        with torch.no_grad():
            for condition in conditions:
                model.denoiser.predict_eps(z1, t1, condition)

    def conditions_batched() -> None:
        with torch.no_grad():
            predict_conditions(model.denoiser, z1, t1, conditions)

    def prompts_encoded() -> None:
        model._embeddings.clear()  # forget the cache: the text encoder runs on every prompt again
        model.encode_prompts(step_prompts)

    def prompts_cached() -> None:
        model.encode_prompts(step_prompts)

    def encode_step() -> None:
        rgb = image.clone().requires_grad_()
        model.encode_images(rgb).square().sum().backward()

    def layout(memory_format: torch.memory_format) -> Callable[[], None]:
        def prepare() -> None:
            unet.to(memory_format=memory_format)
            vae.to(memory_format=memory_format)
        return prepare

    def checkpointing(enabled: bool) -> Callable[[], None]:
        def prepare() -> None:
            vae.to(memory_format=torch.contiguous_format)
            vae.enable_gradient_checkpointing() if enabled else vae.disable_gradient_checkpointing()
        return prepare

    contiguous, channels_last = layout(torch.contiguous_format), layout(torch.channels_last)
    compare(table, "NFSD conditions at t >= 200 (empty, prompt, negative)",
            Variant("3 UNet calls at batch 1", contiguous, conditions_one_call_each),
            Variant("1 UNet call at batch 3", contiguous, conditions_batched), repeats, device)
    compare(table, "prompt embeddings of a step (view prompt, empty, negative)",
            Variant("text encoder every step", contiguous, prompts_encoded),
            Variant("cached per prompt", contiguous, prompts_cached), repeats, device)
    compare(table, "UNet call, batch 2", Variant("contiguous", contiguous, unet_call),
            Variant("channels-last", channels_last, unet_call), repeats, device)
    compare(table, f"VAE encode + backward, {model.image_size}px", Variant("contiguous", contiguous, encode_step),
            Variant("channels-last", channels_last, encode_step), repeats, device)
    compare(table, f"VAE encode + backward, {model.image_size}px", Variant("plain", checkpointing(False), encode_step),
            Variant("gradient checkpointing", checkpointing(True), encode_step), repeats, device)
    vae.disable_gradient_checkpointing()
    del model, unet, vae

    field, renderer = make_field("torch", "torch", log2_table_size, device)
    chunk = render_size * render_size

    def chunks(rays: int) -> Callable[[], None]:
        def prepare() -> None:
            renderer.config.chunk_rays = rays
        return prepare

    def render() -> None:
        render_step(field, renderer, render_size, "textureless")

    compare(table, f"render {render_size}x{render_size} textureless + backward",
            Variant(f"4 chunks of {chunk // 4} rays (recomputed)", chunks(chunk // 4), render),
            Variant(f"1 chunk of {chunk} rays", chunks(chunk), render), repeats, device)
    # As many points as one render of that size samples (64 per ray).
    points = (torch.rand(chunk * 64, 3, generator=generator) * 2 - 1).to(device)
    chunked = hashgrid.POINTS_PER_CHUNK

    def points_per_chunk(count: int) -> Callable[[], None]:
        def prepare() -> None:
            hashgrid.POINTS_PER_CHUNK = count
        return prepare

    def encode() -> None:
        field.encoding(points).square().sum().backward()

    compare(table, f"hash grid forward + backward, {len(points)} points",
            Variant("all points at once", points_per_chunk(len(points)), encode),
            Variant(f"chunks of {chunked} points", points_per_chunk(chunked), encode), repeats, device)
    hashgrid.POINTS_PER_CHUNK = chunked
    table.notes += [
        f"median of {repeats} runs after a warm-up, each variant in turn on the same modules; peak memory "
        "as in the training-step table, measured over the timed runs.",
        "NFSD conditions = the model calls of one NFSD step at t >= 200 for one render; prompt "
        "embeddings = the text encoder on the step's three prompts, or the cache's lookup.",
        "UNet call = one `predict_eps` at batch 2 (an SDS step's model call); VAE encode + backward = "
        "`encode_images` of a full-resolution image and the gradient back into the image.",
    ]
    return [table]
