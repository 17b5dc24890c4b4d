"""Image-supervised fit, no diffusion: renderer, field, cameras and optimiser together.

The field learns an analytic coloured ball from renders of random cameras (drawn by the same
renderer from the analytic field) and must reproduce views it never trained on.
"""

import math

import torch

from nfsd_backend.nerf.cameras import CameraRanges, preview_cameras, sample_cameras
from nfsd_backend.nerf.field import FieldConfig, NerfField
from nfsd_backend.nerf.hashgrid import HashGridConfig
from nfsd_backend.nerf.renderer import RenderConfig, VolumeRenderer

SIZE, STEPS = 24, 200


def colored(points: torch.Tensor) -> torch.Tensor:
    x, y, z = points.unbind(-1)
    return torch.stack([0.5 + 0.4 * torch.sin(3 * x), 0.5 + 0.4 * torch.cos(3 * y), 0.5 + 0.4 * z], dim=-1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(((a - b) ** 2).mean().item())


def test_fit_an_analytic_colored_ball(analytic_field, ball_density):
    generator = torch.Generator().manual_seed(0)
    target = analytic_field(ball_density((0.1, 0.0, 0.05), 0.45, peak=40.0, softness=0.02), colored)
    target_renderer = VolumeRenderer(RenderConfig(samples_per_ray=64), generator=generator)
    # A smaller grid than the default keeps the test quick on a CPU.
    encoding = HashGridConfig(levels=8, log2_table_size=14, base_resolution=8, finest_resolution=256)
    field = NerfField(FieldConfig(encoding=encoding, mlp_width=32, mlp_depth=1), generator=generator)
    renderer = VolumeRenderer(RenderConfig(samples_per_ray=24, occupancy_resolution=32), generator=generator)
    optimizer = torch.optim.Adam([{"params": group} for group in field.parameter_groups().values()],
                                 lr=0.01, betas=(0.9, 0.99), eps=1e-15)

    held_out = preview_cameras()
    with torch.no_grad():
        expected = target_renderer.render(target, held_out, SIZE, SIZE, shading="albedo", background="solid").rgb
        before = renderer.render(field, held_out, SIZE, SIZE, shading="albedo", background="solid").rgb
    for step in range(STEPS):
        renderer.update_occupancy(field, step, generator)
        cameras = sample_cameras(1, CameraRanges(), generator)
        # A random solid background each step, the same for both: empty space must stay empty.
        color = tuple(torch.rand(3, generator=generator).tolist())
        with torch.no_grad():
            goal = target_renderer.render(target, cameras, SIZE, SIZE, shading="albedo", background="solid",
                                          solid_color=color).rgb
        out = renderer.render(field, cameras, SIZE, SIZE, generator=generator, shading="albedo",
                              background="solid", solid_color=color)
        loss = ((out.rgb - goal) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        after = renderer.render(field, held_out, SIZE, SIZE, shading="albedo", background="solid").rgb
    assert psnr(before, expected) < 21
    assert psnr(after, expected) >= 25
    # The occupancy grid has learned the empty space around the ball.
    assert renderer.occupancy.occupied.float().mean() < 0.5
