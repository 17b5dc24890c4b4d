"""fp16 (the CUDA default) gives the guidance directions of fp32: the half-precision UNet, the casts
into and out of it, and the float32 guidance arithmetic around it (diffusion/denoiser.py).

The cpu twin runs the same comparison with fp16 on the CPU, which this torch supports: dtype
mismatches, the commonest way half-precision code breaks unseen, show there too. Bound: cosine
similarity >= 0.999 per direction and relative L2 error <= 0.05, on the tiny random model at the
same seed (fp16 keeps 11 bits: a relative error near 1e-3 per operation). Measured with fp16 on the
CPU: cosines 0.99996-0.99999, relative errors 0.005-0.008.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from .conftest import DEVICES, relative_error, tiny_model
from .test_agreement import guidance_direction

pytestmark = pytest.mark.gpu

COSINE, RELATIVE = 0.999, 0.05


@pytest.mark.parametrize("method", ["sds", "nfsd", "sdi"])
@pytest.mark.parametrize("device", DEVICES)
def test_fp16_guidance_directions_point_where_fp32_ones_do(tiny_components, device, method):
    half = guidance_direction(tiny_model(tiny_components, device, torch.float16), method)
    full = guidance_direction(tiny_model(tiny_components, device, torch.float32), method)
    assert half.grad.dtype == torch.float32  # guidance arithmetic stays float32 around the fp16 UNet
    assert torch.isfinite(half.grad).all()
    assert torch.equal(half.timestep, full.timestep)
    for one_half, one_full in zip(half.grad, full.grad):
        cosine = F.cosine_similarity(one_half.flatten().double(), one_full.flatten().double(), dim=0)
        assert cosine >= COSINE, f"{method}: cosine {float(cosine):.5f}"
    assert relative_error(half.grad, full.grad) <= RELATIVE


@pytest.mark.parametrize("device", DEVICES)
def test_the_fp16_vae_encodes_renders_differentiably_in_float32(tiny_components, device):
    """A render's gradient comes back through the half-precision VAE as float32 and finite, and the
    latents match fp32's."""
    rgb = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(7)).to(device)
    latents = {}
    for dtype in (torch.float16, torch.float32):
        image = rgb.clone().requires_grad_(True)
        x = tiny_model(tiny_components, device, dtype).encode_images(image)
        x.square().mean().backward()
        assert x.dtype == torch.float32 and image.grad.dtype == torch.float32
        assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
        latents[dtype] = x.detach()
    assert relative_error(latents[torch.float16], latents[torch.float32]) <= RELATIVE
