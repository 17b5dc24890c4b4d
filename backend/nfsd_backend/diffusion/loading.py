"""Loading a text-to-image diffusion model: a hub id, a local diffusers folder, a single
`.safetensors`/`.ckpt` checkpoint, or a built-in (`toy-shapes` ships in the package,
`tiny-random` is built in memory). Latent models (Stable Diffusion 1.x/2.x) and pixel-space models
(a folder without `vae/`, like `toy-shapes`) are both supported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import DEFAULT_MODEL, ModelConfig
from ..errors import CudaUnavailable, ModelNotFound
from .denoiser import UNetDenoiser
from .tokenizer import write_word_tokenizer

# The default model's revision, pinned so a run is reproducible even if the mirror changes.
PINNED_REVISIONS = {DEFAULT_MODEL: "4e63672c03103b6c636b8fb4119ba982469b2955"}
TOY_SHAPES_DIR = Path(__file__).resolve().parent.parent / "models" / "toy_shapes"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CudaUnavailable("--device cuda was asked for but PyTorch sees no CUDA GPU; install a CUDA build "
                              "of torch for your driver (see `nfsd doctor`) or use --device cpu.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CudaUnavailable("--device mps was asked for but this PyTorch has no Metal support; use --device cpu.")
    return torch.device(name)


def resolve_dtype(precision: str, device: torch.device, low_vram: bool = False) -> torch.dtype:
    """auto: fp16 on CUDA, fp32 elsewhere; --low-vram means fp16 on CUDA whatever the precision."""
    if low_vram and device.type == "cuda":
        return torch.float16
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]


class DiffusionModel:
    """A loaded model: text embeddings (cached per prompt), the `Denoiser`, and the image <-> model
    space codec (VAE for latent models, a [0,1] -> [-1,1] map for pixel-space ones)."""

    def __init__(self, name: str, tokenizer, text_encoder, unet, scheduler, vae=None, *,
                 device: torch.device, dtype: torch.dtype, low_vram: bool = False):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.name = name
        self.device, self.dtype = device, dtype
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.to(device).eval().requires_grad_(False)
        unet = _to(unet, device, dtype).eval().requires_grad_(False)
        unet.set_attn_processor(AttnProcessor2_0())  # PyTorch's fused scaled-dot-product attention
        self.vae = vae
        if vae is not None:
            self.vae = _to(vae, device, dtype).eval().requires_grad_(False)
            self.vae.set_attn_processor(AttnProcessor2_0())
        if low_vram:
            unet.to(memory_format=torch.channels_last)
            if self.vae is not None:
                self.vae.to(memory_format=torch.channels_last)
        self.unet = unet
        self.scheduler = scheduler
        self.denoiser = UNetDenoiser(unet, scheduler.alphas_cumprod, scheduler.config.prediction_type)
        self.latent_channels = unet.config.in_channels
        self.latent_size = unet.config.sample_size
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        self.image_size = self.latent_size * self.vae_scale  # what the model was trained to see
        self._embeddings: dict[str, Tensor] = {}

    @property
    def pixel_space(self) -> bool:
        return self.vae is None

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Tensor:
        """Embeddings [N, L, D] (float32, on the model's device); each distinct prompt runs through
        the text encoder once."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._embeddings]
        if missing:
            tokens = self.tokenizer(missing, padding="max_length", max_length=self.tokenizer.model_max_length,
                                    truncation=True, return_tensors="pt")
            encoder_device = next(self.text_encoder.parameters()).device
            hidden = self.text_encoder(tokens.input_ids.to(encoder_device))[0]
            for prompt, embedding in zip(missing, hidden):
                self._embeddings[prompt] = embedding[None].to(self.device, torch.float32)
        return torch.cat([self._embeddings[p] for p in prompts], dim=0)

    def offload_text_encoder(self) -> None:
        """Move the text encoder to the CPU once the run's prompts are encoded: it frees GPU memory
        for the renderer; a later new prompt is still encoded, on the CPU."""
        self.text_encoder.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def encode_images(self, rgb: Tensor) -> Tensor:
        """RGB [B,3,H,W] in [0,1] (float32, differentiable) -> model-space x [B,C,h,w] (float32).

        Images are resized to the model's resolution first. The VAE posterior's mean is used, not a
        sample: the encoding is then deterministic and the only noise is the guidance's own.
        """
        if rgb.shape[-1] != self.image_size or rgb.shape[-2] != self.image_size:
            rgb = F.interpolate(rgb, size=(self.image_size, self.image_size), mode="bilinear",
                                align_corners=False, antialias=rgb.shape[-1] > self.image_size)
        x = rgb * 2 - 1
        if self.vae is None:
            return x
        posterior = self.vae.encode(x.to(self.dtype)).latent_dist
        return posterior.mean.float() * self.vae.config.scaling_factor

    def decode_latents(self, latents: Tensor) -> Tensor:
        """Model-space x -> RGB [B,3,H,W] in [0,1], float32."""
        if self.vae is None:
            image = latents
        else:
            image = self.vae.decode((latents / self.vae.config.scaling_factor).to(self.dtype)).sample.float()
        return ((image + 1) / 2).clamp(0, 1)


def _to(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Move, casting only when the dtype differs (diffusers warns on every cast)."""
    if module.dtype != dtype:
        module = module.to(dtype=dtype)
    return module.to(device)


def load_model(config: ModelConfig) -> DiffusionModel:
    """The model named by `config` (built-in, file, folder or hub id) on the configured device."""
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.precision, device, config.low_vram)
    if config.name == "tiny-random":
        components = build_tiny_random()
    elif config.name == "toy-shapes":
        if not (TOY_SHAPES_DIR / "model_index.json").is_file():
            raise ModelNotFound("the toy-shapes weights are not in this installation (backend/nfsd_backend/models/"
                                "toy_shapes); train them with backend/tools/train_toy_shapes.py, or use another --model.")
        components = _load_diffusers(str(TOY_SHAPES_DIR), None, dtype, builtin="toy-shapes")
    elif Path(config.name).expanduser().is_file():
        components = _load_single_file(Path(config.name).expanduser(), dtype)
    else:
        local = Path(config.name).expanduser()
        source = str(local) if local.is_dir() else config.name
        revision = config.revision or (None if local.is_dir() else PINNED_REVISIONS.get(config.name))
        components = _load_diffusers(source, revision, dtype)
    return DiffusionModel(config.name, *components, device=device, dtype=dtype, low_vram=config.low_vram)


def _not_found(name: str, detail: str) -> ModelNotFound:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    how = ("it is not in the local Hugging Face cache and downloads are off (offline)" if offline
           else "it could not be found or downloaded")
    return ModelNotFound(
        f"cannot load the model {name}: {how} ({detail}). Download it once with "
        f"`hf download {name}` while online, or point --model to a local diffusers folder or a "
        f".safetensors checkpoint (--model toy-shapes runs without any download).")


def _load_diffusers(source: str, revision: str | None, dtype: torch.dtype, builtin: str | None = None):
    from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    name = builtin or source
    try:
        index = DiffusionPipeline.load_config(source, revision=revision)
    except Exception as exc:  # hub/offline/missing-folder errors all land here
        raise _not_found(name, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    needed = ("unet", "text_encoder", "tokenizer", "scheduler")
    missing = [part for part in needed if not index.get(part) or index[part][0] is None]
    if missing:
        raise ModelNotFound(f"{name} is not a Stable Diffusion-style model: its model_index.json lacks "
                            f"{', '.join(missing)}; point --model to a text-to-image diffusers folder.")
    has_vae = bool(index.get("vae")) and index["vae"][0] is not None
    kwargs = {"revision": revision}
    try:
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kwargs)
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", **kwargs)
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype, **kwargs)
        scheduler = DDIMScheduler.from_pretrained(source, subfolder="scheduler", **kwargs)
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=dtype, **kwargs) if has_vae else None
    except (OSError, ValueError) as exc:
        raise _not_found(name, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    return tokenizer, text_encoder, unet, scheduler, vae


def _load_single_file(path: Path, dtype: torch.dtype):
    """A single Stable Diffusion checkpoint. diffusers needs the matching pipeline's configuration
    files for it, from the Hugging Face cache (or the hub when online)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    if path.suffix not in (".safetensors", ".ckpt"):
        raise ModelNotFound(f"{path} is not a .safetensors or .ckpt checkpoint.")
    try:
        pipe = StableDiffusionPipeline.from_single_file(str(path), torch_dtype=dtype, safety_checker=None)
    except Exception as exc:
        raise ModelNotFound(
            f"cannot load the checkpoint {path} ({type(exc).__name__}): single-file checkpoints need their "
            "model's configuration files, which diffusers fetches once from the hub; run once online, or "
            "convert it to a diffusers folder and point --model there.") from None
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe.tokenizer, pipe.text_encoder, pipe.unet, scheduler, pipe.vae


TINY_WORDS = ["a", "an", "the", "of", "photo", "red", "blue", "green", "cube", "sphere", "horse", "lion",
              "front", "back", "side", "overhead", "view", "unrealistic", "blurry", "low", "quality"]


def build_tiny_random(prediction_type: str = "epsilon", seed: int = 0):
    """A tiny randomly initialised Stable Diffusion (8x VAE, 8x8 latents = 64x64 images): every
    code path of a real SD at a tiny cost. Returns (tokenizer, text_encoder, unet, scheduler, vae)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with tempfile.TemporaryDirectory() as folder:
        tokenizer = write_word_tokenizer(TINY_WORDS, Path(folder))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id))
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
            norm_num_groups=16)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 32, 32),
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1, norm_num_groups=8, sample_size=64)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type=prediction_type)
    return tokenizer, text_encoder, unet, scheduler, vae
