"""Sampling the `toy-shapes` model, and judging its pictures: which colour is the object, which
primitive is its silhouette. Used by the training script (progress grids) and the tests."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer


def encode_captions(text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    """Token embeddings [B,L,D] the way Stable Diffusion makes them: padded to the tokenizer's
    length, no attention mask, the text encoder's last hidden state."""
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


@torch.no_grad()
def sample_images(unet: UNet2DConditionModel, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer,
                  scheduler_config: dict, captions: list[str], *, steps: int = 30,
                  guidance_scale: float = 5.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """DDIM samples [B,3,S,S] in [0,1] for `captions`, with classifier-free guidance."""
    scheduler = DDIMScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(steps)
    cond = encode_captions(text_encoder, tokenizer, captions)
    uncond = encode_captions(text_encoder, tokenizer, [""] * len(captions))
    embeddings = torch.cat([uncond, cond])
    size = unet.config.sample_size
    x = torch.randn(len(captions), unet.config.in_channels, size, size, generator=generator)
    for t in scheduler.timesteps:
        eps_uncond, eps_cond = unet(torch.cat([x, x]), t, embeddings).sample.chunk(2)
        eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        x = scheduler.step(eps, t, x).prev_sample
    return ((x + 1) / 2).clamp(0, 1)
