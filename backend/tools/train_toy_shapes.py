"""Train `toy-shapes`: a small pixel-space text-to-image diffusion model of coloured primitives.

    python backend/tools/train_toy_shapes.py --out backend/nfsd_backend/models/toy_shapes \\
        --work-dir WORK_DIR

Renders a seeded data set (toy_shapes_data.py), then trains a UNet2DConditionModel and a small
CLIPTextModel together on the standard epsilon objective over DDPM's 1000 noise levels (Stable
Diffusion's betas). Writes a diffusers folder without a VAE: unet/, text_encoder/, tokenizer/,
scheduler/, model_index.json; images are RGB in [-1, 1] at unet.config.sample_size. The saved
weights are the exponential moving average. The same seed and settings give the same weights
(on the same torch build and thread count).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import diffusers
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel

from nfsd_backend.diffusion import UNetDenoiser
from nfsd_backend.diffusion.tokenizer import write_word_tokenizer
from toy_shapes_check import sample_images
from toy_shapes_data import COLOUR_NAMES, SHAPES, WORDS, ToyShapesDataConfig, caption, make_dataset


@dataclass
class TrainConfig:
    """Everything that decides the trained weights."""

    seed: int = 0
    dataset_size: int = 12_000  # rendered images (the run cycles over them, flipped at random)
    steps: int = 4_500  # optimiser steps
    batch_size: int = 32
    learning_rate: float = 8e-4  # AdamW peak, after warm-up; cosine decay to a tenth of it
    warmup_steps: int = 100
    weight_decay: float = 0.01
    # The epsilon loss at timestep t is weighted by min(1 / abar_t, max_loss_weight). 1 gives the
    # plain epsilon objective, under which the high noise levels, where colour and shape are
    # decided, carry almost no gradient in pixel space (the text was ignored); 1 / abar_t alone is
    # the v-prediction loss (SNR + 1). The model still predicts epsilon.
    max_loss_weight: float = 20.0
    ema_max_decay: float = 0.999  # EMA with warm-up (decay grows with the step count up to this)
    image_size: int = 32  # the model's resolution (rendered at twice this, area-downsampled)
    unet_channels: tuple[int, ...] = (16, 32, 64)  # per resolution level: 32, 16, 8 pixels
    unet_attention_levels: tuple[bool, ...] = (False, False, True)  # cross-attention per level
    text_width: int = 64  # text encoder hidden size = UNet cross-attention width
    text_layers: int = 2
    max_tokens: int = 16  # tokenizer length: every object caption fits (NFSD's negative prompt is cut)
    threads: int = 1  # torch CPU threads (one: on a shared CPU, more threads wait on each other)


# Stable Diffusion's noise schedule (the lead's format: T = 1000, scaled_linear 0.00085..0.012).
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                        beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False,
                        steps_offset=1, timestep_spacing="leading")


def build_models(config: TrainConfig, vocab_size: int, bos: int, eos: int, pad: int,
                 max_length: int) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    """A freshly initialised UNet and text encoder (seed torch first for reproducibility)."""
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in config.unet_attention_levels)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.unet_attention_levels))
    unet = UNet2DConditionModel(
        sample_size=config.image_size, in_channels=3, out_channels=3,
        down_block_types=down, up_block_types=up, block_out_channels=config.unet_channels,
        layers_per_block=1, norm_num_groups=8, cross_attention_dim=config.text_width,
        attention_head_dim=8)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=config.text_width, intermediate_size=2 * config.text_width,
        num_hidden_layers=config.text_layers, num_attention_heads=4, max_position_embeddings=max_length,
        bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, projection_dim=config.text_width))
    # Every encoder layer starts as the identity (its output projections at zero), so from the first
    # step each caption position holds its own word's embedding, as distinct as learned word
    # embeddings. With the default initialisation the layers blur the captions together and the
    # UNet took hundreds of steps to notice the text at all.
    for layer in text_encoder.encoder.layers:
        for projection in (layer.self_attn.out_proj, layer.mlp.fc2):
            torch.nn.init.zeros_(projection.weight)
            torch.nn.init.zeros_(projection.bias)
    return unet, text_encoder


def write_model(out: Path, unet: UNet2DConditionModel, text_encoder: CLIPTextModel, words: tuple[str, ...],
                max_tokens: int) -> None:
    """Write the diffusers folder, replacing `out` only once everything is written."""
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    unet.save_pretrained(staging / "unet", safe_serialization=True)
    text_encoder.save_pretrained(staging / "text_encoder", safe_serialization=True)
    write_word_tokenizer(list(words), staging / "tokenizer", max_length=max_tokens)
    DDPMScheduler(**SCHEDULER_CONFIG).save_pretrained(staging / "scheduler")
    (staging / "model_index.json").write_text(json.dumps({
        "_class_name": "DiffusionPipeline", "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDPMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    }, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def token_ids(tokenizer, captions: list[str]) -> torch.Tensor:
    """Token ids [N,L] as Stable Diffusion makes them: padded to the tokenizer's length."""
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def progress_captions() -> list[str]:
    """Every colour x shape, front view: the captions of the progress grids."""
    return [caption(shape, colour, ", front view") for shape in SHAPES for colour in COLOUR_NAMES]


def save_grid(images: torch.Tensor, path: Path, columns: int) -> None:
    rows = math.ceil(len(images) / columns)
    padded = torch.ones(rows * columns, *images.shape[1:])
    padded[:len(images)] = images
    size = images.shape[-1]
    grid = padded.reshape(rows, columns, 3, size, size).permute(0, 3, 1, 4, 2).reshape(rows * size, columns * size, 3)
    Image.fromarray((grid * 255).round().byte().numpy()).resize(
        (columns * size * 3, rows * size * 3), Image.NEAREST).save(path)


def lr_factor(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def train(config: TrainConfig, out: Path, work_dir: Path, sample_every: int, log_every: int) -> None:
    torch.set_num_threads(config.threads)
    work_dir.mkdir(parents=True, exist_ok=True)
    log = open(work_dir / "train.log", "a", buffering=1, encoding="utf-8")

    def say(message: str) -> None:
        print(message, file=log)
        print(message, file=sys.stderr)

    say(f"config {json.dumps(dataclasses.asdict(config))}")
    start = time.time()
    data = make_dataset(config.dataset_size, ToyShapesDataConfig(image_size=config.image_size,
                                                                 render_size=2 * config.image_size),
                        seed=config.seed)
    say(f"data: {len(data.captions)} images in {time.time() - start:.0f} s")
    tokenizer = write_word_tokenizer(list(WORDS), work_dir / "tokenizer", max_length=config.max_tokens)
    data_ids = token_ids(tokenizer, data.captions)

    torch.manual_seed(config.seed)
    unet, text_encoder = build_models(config, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id,
                                      tokenizer.pad_token_id, tokenizer.model_max_length)
    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    say(f"parameters: unet {sum(p.numel() for p in unet.parameters()):,}, "
        f"text encoder {sum(p.numel() for p in text_encoder.parameters()):,}")
    optimiser = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: lr_factor(step, config))
    ema = EMAModel(parameters, decay=config.ema_max_decay, use_ema_warmup=True, power=2 / 3)
    noise_schedule = DDPMScheduler(**SCHEDULER_CONFIG)
    generator = torch.Generator().manual_seed(config.seed + 1)

    def snapshot(step: int) -> None:
        ema.store(parameters)
        ema.copy_to(parameters)
        unet.eval(), text_encoder.eval()
        with torch.no_grad():
            cond = text_encoder(token_ids(tokenizer, progress_captions()))[0]
            uncond = text_encoder(token_ids(tokenizer, [""]))[0]
        images = sample_images(UNetDenoiser(unet, noise_schedule.alphas_cumprod), cond, uncond, config.image_size,
                               generator=torch.Generator().manual_seed(1234))
        save_grid(images, work_dir / f"samples_{step:06d}.png", columns=len(COLOUR_NAMES))
        write_model(work_dir / "checkpoint", unet, text_encoder, WORDS, config.max_tokens)
        unet.train(), text_encoder.train()
        ema.restore(parameters)

    train_start, running = time.time(), 0.0
    for step in range(config.steps):
        index = torch.randint(len(data.captions), (config.batch_size,), generator=generator)
        x0 = data.images[index].float() / 127.5 - 1
        flip = torch.rand(config.batch_size, generator=generator) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        t = torch.randint(noise_schedule.config.num_train_timesteps, (config.batch_size,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = noise_schedule.add_noise(x0, noise, t)
        embeddings = text_encoder(data_ids[index])[0]
        weight = (1 / noise_schedule.alphas_cumprod[t]).clamp(max=config.max_loss_weight)
        error = (unet(x_t, t, embeddings).sample - noise).pow(2).mean((1, 2, 3))
        loss = (weight * error).mean() / weight.mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimiser.step()
        schedule.step()
        ema.step(parameters)
        running += loss.item()
        if (step + 1) % log_every == 0:
            elapsed = time.time() - train_start
            say(f"step {step + 1} loss {running / log_every:.4f} lr {schedule.get_last_lr()[0]:.2e} "
                f"elapsed {elapsed:.0f} s ({elapsed / (step + 1):.2f} s/step)")
            running = 0.0
        if (step + 1) % sample_every == 0 and step + 1 < config.steps:
            snapshot(step + 1)
    say(f"training: {config.steps} steps in {time.time() - train_start:.0f} s")
    snapshot(config.steps)
    ema.copy_to(parameters)
    write_model(out, unet, text_encoder, WORDS, config.max_tokens)
    say(f"wrote {out}; whole run {time.time() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the model folder to write")
    parser.add_argument("--work-dir", type=Path, required=True,
                        help="log, progress grids and checkpoints (keep it outside the repository)")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--dataset-size", type=int, default=TrainConfig.dataset_size)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads,
                        help="torch CPU threads (the weights depend on it; the shipped ones used 1, 2 runs about 1.4x faster)")
    parser.add_argument("--sample-every", type=int, default=500, help="steps between progress grids")
    parser.add_argument("--log-every", type=int, default=25)
    args = parser.parse_args()
    config = TrainConfig(seed=args.seed, steps=args.steps, dataset_size=args.dataset_size, threads=args.threads)
    train(config, args.out, args.work_dir, args.sample_every, args.log_every)


if __name__ == "__main__":
    main()
