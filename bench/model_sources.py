"""The diffusion models the benchmarks run, as `nfsd_backend.diffusion.DiffusionModel`s.

- `sd21-random`: Stable Diffusion 2.1-base's text encoder (OpenCLIP ViT-H's text tower as a
  CLIPTextModel), UNet and VAE architectures (configs/*.json, written from the published configs)
  with random weights. Compute does not depend on weight values, so this costs exactly what the
  real model costs, without a download. The tokenizer is a word-level stand-in padding to SD 2's
  77 tokens (tokenizing is not what is measured).
- `tiny-random`: the backend's tiny random SD (8x8 latents), for `--quick`.
- anything else: a real model id, folder or file, loaded by the backend's own `load_model`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from nfsd_backend.config import ModelConfig
from nfsd_backend.diffusion import DiffusionModel, build_tiny_random, load_model
from nfsd_backend.diffusion.loading import resolve_dtype
from nfsd_backend.diffusion.tokenizer import write_word_tokenizer

CONFIGS = Path(__file__).resolve().parent / "configs"
SD21_RANDOM = "sd21-random"
PROMPT = "a ceramic lion"


def _sd21_random_components(seed: int = 0):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    def config(name: str) -> dict:
        return json.loads((CONFIGS / f"sd21_base_{name}.json").read_text(encoding="utf-8"))

    unet_config = config("unet")
    with tempfile.TemporaryDirectory() as folder:
        # SD 2's tokenizer pads to 77 tokens; the words only need to cover the benchmark's prompts.
        tokenizer = write_word_tokenizer(PROMPT.split(), Path(folder), max_length=77)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(**config("text_encoder"))).eval()
        unet = UNet2DConditionModel.from_config(unet_config)
        vae = AutoencoderKL.from_config(config("vae"))
    scheduler = DDIMScheduler.from_config(config("scheduler"))
    return tokenizer, text_encoder, unet, scheduler, vae


class ModelSource:
    """Builds the named model at a precision and memory setting. The random models are built once
    and re-wrapped for each setting (building SD's UNet takes ~30 s); a real model is loaded anew."""

    def __init__(self, name: str, device: torch.device):
        self.name = name
        self.device = device
        self._components = None

    def build(self, precision: str, low_vram: bool = False) -> DiffusionModel:
        if self.name not in (SD21_RANDOM, "tiny-random"):
            return load_model(ModelConfig(name=self.name, device=self.device.type, precision=precision,
                                          low_vram=low_vram))
        if self._components is None:
            self._components = _sd21_random_components() if self.name == SD21_RANDOM else build_tiny_random()
        tokenizer, text_encoder, unet, scheduler, vae = self._components
        # Wrapping casts and re-lays the modules in place: undo a previous low-vram channels-last.
        unet.to(memory_format=torch.contiguous_format)
        vae.to(memory_format=torch.contiguous_format)
        return DiffusionModel(self.name, tokenizer, text_encoder, unet, scheduler, vae, device=self.device,
                              dtype=resolve_dtype(precision, self.device, low_vram), low_vram=low_vram)

    def release(self) -> None:
        self._components = None


def save_random_model(name: str, folder: Path, dtype: torch.dtype = torch.float16, device: str = "cpu") -> Path:
    """The random model `name` (sd21-random or tiny-random) written with `save_pretrained` as a
    diffusers folder, so that it loads through the backend's own loader as a downloaded model
    does. The UNet and VAE are saved in `dtype` (fp16 halves their 3.8 GB; the loader casts on load);
    they are drawn on `device` (on a GPU in a second rather than half a minute on the CPU)."""
    from diffusers import StableDiffusionPipeline

    with torch.device(device):
        tokenizer, text_encoder, unet, scheduler, vae = (_sd21_random_components() if name == SD21_RANDOM
                                                         else build_tiny_random())
    # The text encoder stays float32, as the published model's (the loader keeps a saved dtype).
    pipe = StableDiffusionPipeline(vae=vae.to("cpu", dtype), text_encoder=text_encoder.to("cpu"), tokenizer=tokenizer,
                                   unet=unet.to("cpu", dtype), scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return Path(folder)
