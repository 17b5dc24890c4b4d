"""The field, the renderer and the guidance compute on `device` what they compute on the CPU.

The same seed gives both sides the same initial weights, cameras, timesteps and noise: every
random draw of the backend is taken from a CPU `torch.Generator` and only then moved to the
device (renderer.py, guidance/base.py), so what is left to differ is the device's arithmetic.
The reference is float64 on the CPU where the code runs in float64 (field, guidance), which makes
the cpu twins real checks of float32 too; the renderer builds some float32 tensors of its own, so
its reference is float32 on the CPU (the cpu twin then checks that the same seed gives the same
render and gradients bit for bit: a draw from anything but the generators passed in fails it).

Tolerances (relative L2 error, ||a - ref|| / ||ref||; TF32 is off, conftest.py): float32
arithmetic lands far under 1e-4 (density, albedo, images, guidance directions); the normals are
finite differences of step 0.01 and the gradients pass through atomics adds on CUDA, so they get
1e-3. Measured on the CPU: density 8e-8, albedo 4e-8, normals 7e-6.
"""

from __future__ import annotations

import pytest
import torch

from nfsd_backend.config import GuidanceConfig, resolve_guidance
from nfsd_backend.guidance import Prompts, make_guidance
from nfsd_backend.nerf.cameras import orbit_cameras
from nfsd_backend.nerf.field import FieldConfig, NerfField
from nfsd_backend.nerf.hashgrid import HashGridConfig
from nfsd_backend.nerf.renderer import RenderConfig, VolumeRenderer

from .conftest import DEVICES, relative_error, tiny_model

pytestmark = pytest.mark.gpu

FIELD = FieldConfig(encoding=HashGridConfig(levels=8, log2_table_size=14, finest_resolution=256, backend="torch"),
                    mlp_width=32)
VALUES, DERIVED = 1e-4, 1e-3


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def field_on(device: str, dtype: torch.dtype = torch.float32) -> NerfField:
    return NerfField(FIELD, generator=seeded(), device=device).to(dtype)


def field_outputs_and_gradients(field: NerfField, points: torch.Tensor) -> dict[str, torch.Tensor]:
    density, albedo = field.density_and_albedo(points)
    normals = field.normals(points, density)
    (density.mean() + albedo.mean() + normals[:, 0].mean()).backward()
    grads = {f"grad {name}": p.grad for name, p in field.named_parameters()}
    return {"density": density, "albedo": albedo, "normals": normals, **grads}


@pytest.mark.parametrize("device", DEVICES)
def test_the_field_and_its_gradients_agree_with_float64_on_the_cpu(device):
    points = torch.rand(8192, 3, generator=seeded(1)) * 2 - 1
    got = field_outputs_and_gradients(field_on(device), points.to(device))
    want = field_outputs_and_gradients(field_on("cpu", torch.float64), points.double())
    assert got.keys() == want.keys() and len(got) > 3
    for name in got:
        tolerance = VALUES if name in ("density", "albedo") else DERIVED
        assert relative_error(got[name], want[name]) <= tolerance, name


def render_and_gradients(device: str, shading: str) -> dict[str, torch.Tensor]:
    config = RenderConfig(samples_per_ray=32, occupancy_resolution=32, sampler="torch", chunk_rays=512)
    field = field_on(device)
    renderer = VolumeRenderer(config, generator=seeded(2), device=device)
    renderer.update_occupancy(field, 0, seeded(3))  # random points of the grid update: CPU draws too
    cameras = orbit_cameras(torch.tensor([30.0, 200.0]), torch.tensor([15.0, 40.0]), torch.tensor([2.0, 2.5]),
                            torch.tensor([45.0, 50.0]))
    out = renderer.render(field, cameras, 24, 24, generator=seeded(4), shading=shading, background="environment")
    loss = out.rgb.mean() + out.opacity.mean() + out.depth.mean()
    loss.backward()
    images = {"rgb": out.rgb, "opacity": out.opacity, "depth": out.depth,
              "occupied cells": renderer.occupancy.occupied.float()}
    if out.normal is not None:
        images["normal"] = out.normal
    parameters = [*field.named_parameters(), *renderer.background.named_parameters()]
    # Textureless shading never reads the albedo head: its gradient stays None on every device.
    return images | {f"grad {name}": p.grad for name, p in parameters if p.grad is not None}


@pytest.mark.parametrize("shading", ["albedo", "textureless"])
@pytest.mark.parametrize("device", DEVICES)
def test_renders_and_their_gradients_agree_with_the_cpu(device, shading):
    got, want = render_and_gradients(device, shading), render_and_gradients("cpu", shading)
    assert got.keys() == want.keys()
    assert torch.equal(got["occupied cells"].cpu(), want["occupied cells"])
    assert 0.05 < float(want["opacity"].detach().mean()) < 0.95  # the blob is in view: the images are not trivial
    for name in got:
        tolerance = VALUES if not name.startswith("grad") and name != "normal" else DERIVED
        assert relative_error(got[name], want[name]) <= (0.0 if device == "cpu" else tolerance), name


@pytest.mark.parametrize("method", ["sds", "nfsd", "sdi"])
@pytest.mark.parametrize("device", DEVICES)
def test_guidance_directions_agree_with_float64_on_the_cpu(tiny_components, device, method):
    got = guidance_direction(tiny_model(tiny_components, device, torch.float32), method)
    want = guidance_direction(tiny_model(tiny_components, "cpu", torch.float64), method)
    assert torch.equal(got.timestep.cpu(), want.timestep.cpu()) and got.model_evals == want.model_evals
    assert relative_error(got.grad, want.grad) <= VALUES


def guidance_direction(model, method: str, step: int = 80, total_steps: int = 100):
    """One direction of `method` at a latent of the tiny model, everything drawn from one seed (late in
    the run: SDI's t is then low, its inversion short)."""
    settings = resolve_guidance(GuidanceConfig(method=method))
    guidance = make_guidance(method, model.denoiser, **settings.settings())
    embeddings = model.encode_prompts(["a red cube", "", "blurry"])  # float32, as the trainer's
    prompts = Prompts(cond=embeddings[0:1], uncond=embeddings[1:2], neg=embeddings[2:3])
    # Latents are float32 whatever the model's precision (encode_images), float64 for the reference.
    dtype = torch.float64 if model.dtype == torch.float64 else torch.float32
    x = torch.randn(2, 4, 8, 8, generator=seeded(5), dtype=torch.float64).to(model.device, dtype)
    return guidance.direction(x, prompts, step, total_steps, seeded(6))
