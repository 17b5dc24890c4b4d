"""The volume renderer against analytic answers."""

import math

import pytest
import torch

from nfsd_backend.errors import BadConfig
from nfsd_backend.nerf.cameras import Cameras, orbit_cameras, generate_rays
from nfsd_backend.nerf.renderer import (OccupancyGrid, RenderConfig, TorchSampler, VolumeRenderer,
                                        make_sampler, ray_box_intersection, shade)


def constant_color(points):
    return torch.full((points.shape[0], 3), 0.5)


def renderer_with(**settings) -> VolumeRenderer:
    return VolumeRenderer(RenderConfig(**settings), bound=1.0, generator=torch.Generator().manual_seed(0))


def test_ray_box_intersection():
    origins = torch.tensor([[0.0, -3.0, 0.0], [0.0, -3.0, 0.0], [0.2, 0.1, 0.0], [0.0, -3.0, 0.999]])
    directions = torch.nn.functional.normalize(torch.tensor(
        [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), dim=-1)
    near, far, hit = ray_box_intersection(origins, directions, bound=1.0)
    assert torch.allclose(near[[0, 2, 3]], torch.tensor([2.0, 0.0, 2.0]))
    assert torch.allclose(far[[0, 2, 3]], torch.tensor([4.0, 0.8, 4.0]))
    assert hit.tolist() == [True, False, True, True]  # ray 1 points away; ray 2 starts inside


def test_uniform_density_gives_exp_minus_sigma_d(analytic_field):
    sigma = 1.7
    field = analytic_field(lambda p: torch.full((p.shape[0],), sigma), constant_color)
    cameras = orbit_cameras(torch.tensor([0.0, 30.0, 200.0]), torch.tensor([0.0, 40.0, -10.0]), 2.5, 60.0)
    renderer = renderer_with(samples_per_ray=16)
    out = renderer.render(field, cameras, 12, 12, generator=torch.Generator().manual_seed(1))
    origins, directions = generate_rays(cameras, 12, 12)
    near, far, hit = ray_box_intersection(origins.reshape(-1, 3), directions.reshape(-1, 3), 1.0)
    chord = torch.where(hit, far - near, torch.zeros_like(far)).reshape(3, 12, 12)
    assert hit.float().mean() > 0.5 and (~hit).any()
    # The steps add up to the chord exactly, so the answer is exact whatever the sample count.
    assert torch.allclose(1 - out.opacity, torch.exp(-sigma * chord), atol=1e-6)


def test_slab_transmittance_and_depth(analytic_field):
    half_thickness, steps = 0.3, 400
    camera = orbit_cameras(0.0, 90.0, 2.0, 50.0)  # straight above, looking down -Z

    def slab(sigma):
        return lambda p: torch.where(p[:, 2].abs() < half_thickness, sigma, 0.0)

    renderer = renderer_with(samples_per_ray=steps)
    origins, directions = generate_rays(camera, 9, 9)
    near, far, _ = ray_box_intersection(origins.reshape(-1, 3), directions.reshape(-1, 3), 1.0)
    cos_angle = -directions.reshape(-1, 3)[:, 2]
    path = (2 * half_thickness / cos_angle).reshape(1, 9, 9)  # slanted path through the slab
    step = ((far - near) / steps).reshape(1, 9, 9)

    out = renderer.render(analytic_field(slab(2.0), constant_color), camera, 9, 9,
                          shading="albedo", background="solid")
    optical_depth = -torch.log(1 - out.opacity)
    # Only the two steps that straddle the slab's faces can be misjudged.
    assert (optical_depth - 2.0 * path).abs().max() <= 2 * 2.0 * step.max()

    # An opaque slab: the expected depth is the entry distance (plus 1/sigma).
    dense = renderer.render(analytic_field(slab(500.0), constant_color), camera, 9, 9,
                            shading="albedo", background="solid")
    entry = ((2.0 - half_thickness) / cos_angle).reshape(1, 9, 9)
    assert torch.allclose(dense.opacity, torch.ones_like(dense.opacity), atol=1e-6)
    assert (dense.depth - entry - 1 / 500.0).abs().max() <= step.max()


def look_away(cameras: Cameras) -> Cameras:
    """The same cameras turned around (right-handed: flip right and backward)."""
    c2w = cameras.c2w.clone()
    c2w[:, :3, 0] *= -1
    c2w[:, :3, 2] *= -1
    return Cameras(c2w, cameras.fovy, cameras.azimuth_deg, cameras.elevation_deg, cameras.distance)


def test_rays_missing_the_box_return_the_background_exactly(analytic_field):
    field = analytic_field(lambda p: torch.full((p.shape[0],), 50.0), constant_color)
    renderer = renderer_with()
    cameras = look_away(orbit_cameras(torch.tensor([0.0, 120.0]), 10.0, 2.0, 40.0))
    solid = renderer.render(field, cameras, 8, 8, shading="albedo", background="solid",
                            solid_color=(0.2, 0.4, 0.6))
    assert torch.equal(solid.rgb, torch.tensor([0.2, 0.4, 0.6]).expand(2, 8, 8, 3))
    assert torch.equal(solid.opacity, torch.zeros(2, 8, 8)) and field.queried_points == 0

    # With a generator (training), a named solid colour is still that colour ...
    trained = renderer.render(field, cameras, 8, 8, generator=torch.Generator().manual_seed(0),
                              shading="albedo", background="solid", solid_color=(0.2, 0.4, 0.6))
    assert torch.equal(trained.rgb, solid.rgb)
    # ... and a drawn solid background is a random colour per image.
    renderer.config.solid_background_probability = 1.0
    drawn = renderer.render(field, cameras, 8, 8, generator=torch.Generator().manual_seed(0))
    assert drawn.background == "solid" and not torch.equal(drawn.rgb[0, 0, 0], drawn.rgb[1, 0, 0])
    assert torch.equal(drawn.rgb, drawn.rgb[:, :1, :1].expand(2, 8, 8, 3))

    environment = renderer.render(field, cameras, 8, 8, shading="diffuse", background="environment")
    _, directions = generate_rays(cameras, 8, 8)
    with torch.no_grad():
        expected = renderer.background(directions.reshape(-1, 3)).reshape(2, 8, 8, 3)
    assert torch.equal(environment.rgb.detach(), expected)

    # A camera that sees part of the box: the pixels whose rays miss it show the background.
    wide = orbit_cameras(0.0, 0.0, 3.0, 90.0)
    out = renderer.render(field, wide, 16, 16, shading="albedo", background="solid", solid_color=(0.2, 0.4, 0.6))
    origins, directions = generate_rays(wide, 16, 16)
    _, _, hit = ray_box_intersection(origins.reshape(-1, 3), directions.reshape(-1, 3), 1.0)
    missed = ~hit.reshape(1, 16, 16)
    assert missed.any() and (~missed).any()
    assert torch.equal(out.rgb[missed], torch.tensor([0.2, 0.4, 0.6]).expand(int(missed.sum()), 3))


def test_occupancy_grid_never_culls_occupied_cells(ball_density):
    center, radius, resolution = (0.13, -0.21, 0.05), 0.4, 32
    density = ball_density(center, radius, peak=10.0, softness=1e-4)  # a hard ball
    grid = OccupancyGrid(resolution, bound=1.0, threshold=0.01, samples_per_cell=1, dilation=1)
    assert grid.occupied.all()  # before any update nothing is culled
    grid.update(density, torch.Generator().manual_seed(0))

    # Distance from the ball's centre to each cell (a box): zero inside it.
    cell = 2.0 / resolution
    lows = grid.cell_centers() - cell / 2
    nearest = torch.maximum(torch.minimum(torch.tensor(center), lows + cell), lows)
    distance = (nearest - torch.tensor(center)).norm(dim=-1)
    touches_ball = distance < radius
    kept = grid.occupied.reshape(-1)
    assert kept[touches_ball].all()
    # And it does cull: every cell further than the dilation margin from the ball is empty.
    assert not kept[distance > radius + 2 * cell].any()
    assert kept.float().mean() < 0.2


def test_occupancy_grid_decays_and_follows_the_field(ball_density):
    grid = OccupancyGrid(16, bound=1.0, threshold=0.01, decay=0.5, dilation=0)
    generator = torch.Generator().manual_seed(0)
    grid.update(lambda p: torch.full((p.shape[0],), 0.03), generator)
    assert grid.occupied.all()
    grid.update(lambda p: torch.zeros(p.shape[0]), generator)  # 0.015 left: still occupied
    assert grid.occupied.all() and torch.allclose(grid.density, torch.full_like(grid.density, 0.015))
    grid.update(lambda p: torch.zeros(p.shape[0]), generator)  # 0.0075: empty
    assert not grid.occupied.any()


def test_culling_does_not_change_the_image(analytic_field):
    def ball(points):  # zero outside radius 0.5, rising linearly to 30 over 0.02
        return 30.0 * ((0.5 - points.norm(dim=-1)) / 0.02).clamp(0.0, 1.0)

    field = analytic_field(ball, lambda p: (p + 1) / 2)
    cameras = orbit_cameras(torch.tensor([20.0, 200.0]), 15.0, 2.0, 45.0)
    culled = renderer_with(samples_per_ray=48, occupancy_resolution=32)
    culled.update_occupancy(field, step=0, generator=torch.Generator().manual_seed(0))
    assert culled.occupancy.occupied.float().mean() < 0.3
    full = renderer_with(samples_per_ray=48, occupancy_resolution=32)  # never updated: nothing culled
    field.queried_points = 0
    a = culled.render(field, cameras, 16, 16, shading="diffuse", background="solid")
    culled_queries, field.queried_points = field.queried_points, 0
    b = full.render(field, cameras, 16, 16, shading="diffuse", background="solid")
    assert culled_queries < 0.5 * field.queried_points
    # Every sample with any density lies in a kept cell, so only rounding differs.
    assert torch.allclose(a.rgb, b.rgb, atol=1e-6) and torch.allclose(a.depth, b.depth, atol=1e-6)
    assert torch.allclose(a.normal, b.normal, atol=1e-6) and a.opacity.max() > 0.99


def test_chunks_change_neither_images_nor_gradients(analytic_field, ball_density):
    scale = torch.tensor(1.0, requires_grad=True)
    base = ball_density((0.0, 0.0, 0.0), 0.5, peak=20.0, softness=0.05)
    field = analytic_field(lambda p: base(p) * scale, lambda p: torch.sigmoid(p * scale))
    cameras = orbit_cameras(torch.tensor([0.0, 90.0]), 10.0, 2.0, 50.0)
    results = []
    for chunk in (10_000, 37):  # one chunk; many chunks, recomputed in backward
        renderer = renderer_with(samples_per_ray=24, chunk_rays=chunk)
        out = renderer.render(field, cameras, 10, 10, generator=torch.Generator().manual_seed(5))
        (gradient,) = torch.autograd.grad(out.rgb.square().sum(), [scale])
        results.append((out.rgb.detach(), out.shading, out.background, gradient))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
    assert results[0][1:3] == results[1][1:3]
    assert torch.allclose(results[0][3], results[1][3], rtol=1e-4) and results[0][3] != 0


def test_shade():
    albedo = torch.tensor([[0.5, 0.2, 1.0], [0.5, 0.2, 1.0]])
    normals = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    points = torch.zeros(2, 3)
    lights = torch.tensor([[0.0, 3.0, 3.0], [0.0, 3.0, 3.0]])  # 45 degrees off the first normal
    lit = 0.1 + 0.9 * math.cos(math.pi / 4)
    assert torch.equal(shade(albedo, normals, points, lights, "albedo", 0.1), albedo)
    assert torch.allclose(shade(albedo, normals, points, lights, "diffuse", 0.1),
                          torch.stack([albedo[0] * lit, albedo[1] * 0.1]))
    assert torch.allclose(shade(albedo, normals, points, lights, "textureless", 0.1),
                          torch.tensor([[lit] * 3, [0.1] * 3]))


def test_textureless_sphere_lit_from_the_camera_is_white_in_the_middle(analytic_field, ball_density):
    field = analytic_field(ball_density((0.0, 0.0, 0.0), 0.5, peak=200.0, softness=0.005),
                           lambda p: torch.zeros(p.shape[0], 3))
    camera = orbit_cameras(0.0, 0.0, 2.0, 30.0)
    out = renderer_with(samples_per_ray=128).render(field, camera, 9, 9, shading="textureless",
                                                    background="solid", solid_color=(0.0, 0.0, 0.0))
    # The light sits on the camera's axis: the sphere faces it squarely at the image centre.
    assert out.rgb[0, 4, 4].tolist() == pytest.approx([1.0] * 3, abs=0.02)
    assert out.normal[0, 4, 4].tolist() == pytest.approx([0.0, -1.0, 0.0], abs=0.02)
    assert out.rgb[0, 0, 0].tolist() == [0.0, 0.0, 0.0]  # the corner misses the sphere


def test_shading_and_background_are_drawn_with_the_configured_probabilities(analytic_field):
    field = analytic_field(lambda p: torch.zeros(p.shape[0]), constant_color)
    camera = orbit_cameras(0.0, 0.0, 2.0, 40.0)
    renderer = renderer_with(samples_per_ray=2, albedo_probability=0.2, diffuse_probability=0.3,
                             textureless_probability=0.5, solid_background_probability=0.25)
    generator = torch.Generator().manual_seed(3)
    draws = [renderer.render(field, camera, 1, 1, generator=generator) for _ in range(1200)]
    shading = [d.shading for d in draws]
    for name, probability in (("albedo", 0.2), ("diffuse", 0.3), ("textureless", 0.5)):
        assert shading.count(name) / 1200 == pytest.approx(probability, abs=0.045)
    assert [d.background for d in draws].count("solid") / 1200 == pytest.approx(0.25, abs=0.045)
    # The same seed gives the same choices.
    again = torch.Generator().manual_seed(3)
    assert [renderer.render(field, camera, 1, 1, generator=again).shading for _ in range(50)] == shading[:50]
    with pytest.raises(ValueError, match="needs a generator"):
        renderer.render(field, camera, 1, 1)


def test_sampler_choice_on_cpu_is_the_torch_sampler():
    grid = OccupancyGrid(8, bound=1.0)
    assert isinstance(make_sampler(RenderConfig(), grid, 1.0, "cpu"), TorchSampler)
    with pytest.raises(Exception, match="nerfacc was requested"):
        make_sampler(RenderConfig(sampler="nerfacc"), grid, 1.0, "cpu")


def test_bad_settings_are_refused():
    with pytest.raises(BadConfig, match="sum to 1"):
        VolumeRenderer(RenderConfig(albedo_probability=0.5))
    with pytest.raises(BadConfig, match="samples_per_ray"):
        VolumeRenderer(RenderConfig(samples_per_ray=0))
    with pytest.raises(BadConfig, match="occupancy_dilation"):
        VolumeRenderer(RenderConfig(occupancy_dilation=-1))
    with pytest.raises(BadConfig, match="ambient"):
        VolumeRenderer(RenderConfig(ambient=1.5))
    with pytest.raises(BadConfig, match="sampler 'fast'"):
        VolumeRenderer(RenderConfig(sampler="fast"))


@pytest.mark.parametrize("samples_per_cell, found", [(1, False), (2, True)])
def test_occupancy_grid_finds_a_wall_thinner_than_a_cell_between_the_centres(samples_per_cell, found):
    # A wall 0.012 thick at x in (0, 0.012): the centre planes of a 64-cell grid over [-1, 1] lie at
    # x = -1/64 and +1/64, so the centres never see it; random points in the cells do, over updates.
    def wall(points):
        inside = (points[:, 0] > 0.0) & (points[:, 0] < 0.012)
        return torch.where(inside, 200.0, 0.0)

    grid = OccupancyGrid(64, bound=1.0, threshold=0.01, samples_per_cell=samples_per_cell, dilation=1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(8):
        grid.update(wall, generator)
    wall_cells = grid.occupied[32]  # the cells spanning x in (0, 1/32)
    assert bool(wall_cells.all()) == found
