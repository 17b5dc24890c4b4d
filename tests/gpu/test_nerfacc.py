"""nerfacc's compositing is the torch sampler's: the same samples and densities give the same
weights T_i * alpha_i (renderer.py's two samplers share the occupancy grid and the shading; only
the sampling and this step are nerfacc's).

The torch sampler's weights are checked against the closed form, computed ray by ray in float64,
on every device (the cpu twin runs in CI, where nerfacc is not installed). On CUDA with nerfacc
importable and its CUDA code built (it compiles on first use; the test allows 5 minutes), its
packed `render_weight_from_density` must give the same weights, and renders of a ball through
the two samplers the same silhouette. Tolerances: weights 1e-5 absolute (float32 sums of a few
dozen terms); the renders' opacities 0.02 mean absolute difference (the samplers place their
samples differently: nerfacc at a fixed step, the torch sampler spread between entry and exit).
"""

from __future__ import annotations

import pytest
import torch

from nfsd_backend.nerf.cameras import orbit_cameras
from nfsd_backend.nerf.renderer import (OccupancyGrid, RaySamples, RenderConfig, TorchSampler, VolumeRenderer,
                                        ray_box_intersection)

from .conftest import DEVICES, needs_cuda

pytestmark = pytest.mark.gpu

SAMPLES_PER_RAY = 24


def culled_samples(device: str) -> tuple[TorchSampler, RaySamples, torch.Tensor, int]:
    """A torch sampler's samples of 64 random rays through a grid with every other cell empty,
    and a random density at each kept sample."""
    generator = torch.Generator().manual_seed(0)
    occupancy = OccupancyGrid(8, 1.0).to(device)
    occupancy.occupied.copy_((torch.arange(8**3).reshape(8, 8, 8) % 2 == 0).to(device))
    sampler = TorchSampler(occupancy, SAMPLES_PER_RAY)
    n_rays = 64
    origins = (torch.randn(n_rays, 3, generator=generator) * 0.3 + torch.tensor([0.0, 0.0, 3.0])).to(device)
    directions = torch.nn.functional.normalize(-origins + torch.randn(n_rays, 3, generator=generator).to(device) * 0.2,
                                               dim=-1)
    near, far, hit = ray_box_intersection(origins, directions, 1.0)
    jitter = torch.rand(n_rays, SAMPLES_PER_RAY, generator=generator).to(device)
    samples = sampler.sample(origins, directions, near, far, hit, jitter)
    sigmas = (torch.rand(samples.ray_indices.shape[0], generator=generator) * 5).to(device)
    return sampler, samples, sigmas, n_rays


def closed_form_weights(samples: RaySamples, sigmas: torch.Tensor, n_rays: int) -> torch.Tensor:
    """w_i = exp(-sum_{j<i} sigma_j delta_j) * (1 - exp(-sigma_i delta_i)) along each ray, float64."""
    rays, sigmas = samples.ray_indices.cpu(), sigmas.double().cpu()
    deltas = (samples.t_ends - samples.t_starts).double().cpu()
    weights = torch.zeros_like(sigmas)
    for ray in range(n_rays):
        depth = 0.0
        for i in (rays == ray).nonzero()[:, 0].tolist():
            weights[i] = torch.exp(torch.tensor(-depth)) * (1 - torch.exp(-sigmas[i] * deltas[i]))
            depth += float(sigmas[i] * deltas[i])
    return weights


@pytest.mark.parametrize("device", DEVICES)
def test_the_torch_sampler_composites_by_the_closed_form(device):
    sampler, samples, sigmas, n_rays = culled_samples(device)
    assert 0 < samples.ray_indices.shape[0] < n_rays * SAMPLES_PER_RAY  # some samples were culled
    weights = sampler.weights(samples, sigmas, n_rays)
    torch.testing.assert_close(weights.double().cpu(), closed_form_weights(samples, sigmas, n_rays),
                               rtol=0, atol=1e-5)


def built_nerfacc():
    """nerfacc with its CUDA code compiled, or skip saying why not."""
    nerfacc = pytest.importorskip("nerfacc")
    from nfsd_backend.doctor import check_nerfacc

    status = check_nerfacc()
    if status != "ok":
        pytest.skip(f"nerfacc cannot run here: {status}")
    return nerfacc


@needs_cuda
@pytest.mark.timeout(300)
def test_nerfacc_composites_like_the_torch_sampler():
    nerfacc = built_nerfacc()
    sampler, samples, sigmas, n_rays = culled_samples("cuda")
    weights, _, _ = nerfacc.render_weight_from_density(samples.t_starts, samples.t_ends, sigmas,
                                                       ray_indices=samples.ray_indices, n_rays=n_rays)
    torch.testing.assert_close(weights, sampler.weights(samples, sigmas, n_rays), rtol=0, atol=1e-5)


class Ball:
    """A ball of density 50 with a soft edge (width ~0.02) and a coloured albedo: sharp enough that
    both samplers find the same silhouette."""

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return 50.0 * torch.sigmoid((0.5 - (points - points.new_tensor([0.1, 0.0, 0.0])).norm(dim=-1)) / 0.02)

    def density_and_albedo(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.density(points), torch.sigmoid(points * 3 + 0.5)


@needs_cuda
@pytest.mark.timeout(300)
def test_renders_through_nerfacc_and_the_torch_sampler_agree():
    built_nerfacc()
    opacities = {}
    for sampler in ("torch", "nerfacc"):
        renderer = VolumeRenderer(RenderConfig(samples_per_ray=256, sampler=sampler), device="cuda")
        assert type(renderer.sampler).__name__ == {"torch": "TorchSampler", "nerfacc": "NerfaccSampler"}[sampler]
        renderer.update_occupancy(Ball(), 0, torch.Generator().manual_seed(0))
        cameras = orbit_cameras(torch.tensor([20.0]), torch.tensor([10.0]), torch.tensor([2.5]), torch.tensor([45.0]))
        with torch.no_grad():
            opacities[sampler] = renderer.render(Ball(), cameras, 64, 64, shading="albedo", background="solid").opacity
    assert 0.1 < float(opacities["torch"].mean()) < 0.9
    assert float((opacities["torch"] - opacities["nerfacc"]).abs().mean()) <= 0.02
