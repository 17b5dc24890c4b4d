"""NerfField: the blob initialisation, the exporter's interface, normals, saving and restoring."""

import io

import pytest
import torch

from nfsd_backend.errors import BadConfig
from nfsd_backend.nerf.cameras import orbit_cameras, preview_cameras
from nfsd_backend.nerf.field import EnvironmentBackground, FieldConfig, NerfField, density_normals
from nfsd_backend.nerf.hashgrid import HashGridConfig
from nfsd_backend.nerf.renderer import RenderConfig, VolumeRenderer

SMALL = HashGridConfig(levels=4, log2_table_size=12, base_resolution=8, finest_resolution=64)


def small_field(seed: int = 0, **settings) -> NerfField:
    return NerfField(FieldConfig(encoding=SMALL, **settings), generator=torch.Generator().manual_seed(seed))


def silence_density_head(field: NerfField) -> NerfField:
    with torch.no_grad():
        field.density_head.weight.zero_()
        field.density_head.bias.zero_()
    return field


def test_starts_as_the_object_centric_blob():
    radii = torch.tensor([0.0, 0.25, 0.5, 1.0])
    points = torch.stack([torch.zeros(4), -radii, torch.zeros(4)], dim=-1)
    blob = torch.tensor([10.0, 5.0, 0.0, -10.0])  # 10 * (1 - r / 0.5)
    field = silence_density_head(small_field())
    assert torch.allclose(field.blob(points), blob)
    with torch.no_grad():
        assert torch.allclose(field.density(points), torch.nn.functional.softplus(blob))
        exp_field = silence_density_head(small_field(density_activation="exp", blob_density=5.0, blob_radius=0.25))
        assert torch.allclose(exp_field.density(points), torch.exp(5.0 * (1 - radii / 0.25)))
        # The untrained MLP only nudges the blob.
        untouched = small_field().density(points)
    assert torch.allclose(untouched.log(), torch.nn.functional.softplus(blob).log(), atol=1.0)


def test_exporter_interface_shapes_and_ranges():
    field = small_field()
    points = torch.rand(50, 3) * 2 - 1
    density, albedo = field.density_and_albedo(points)
    assert field.density(points).shape == (50,) and field.albedo(points).shape == (50, 3)
    assert torch.equal(field.density(points), density) and torch.equal(field.albedo(points), albedo)
    assert (density >= 0).all() and (albedo > 0).all() and (albedo < 1).all()


def test_renders_in_chunks_where_a_whole_chunk_misses_the_box():
    # 90 degree field of view from distance 3: the top rows of pixels pass above the box, so the
    # first chunk of 16 rays samples no point at all (this once crashed the hash grid).
    field = small_field()
    camera = orbit_cameras(0.0, 0.0, 3.0, 90.0)
    renderer = VolumeRenderer(RenderConfig(chunk_rays=16), bound=1.0)
    out = renderer.render(field, camera, 16, 16, shading="albedo", background="solid",
                          solid_color=(0.2, 0.4, 0.6))
    assert torch.equal(out.opacity[0, 0], torch.zeros(16)) and out.opacity.max() > 0.5
    out.rgb.sum().backward()
    assert field.encoding.table.grad.abs().sum() > 0


def test_density_normals_of_an_analytic_ball_are_radial():
    points = torch.nn.functional.normalize(torch.randn(100, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    points = points * 0.4

    def ball(p):
        return torch.sigmoid((0.4 - p.norm(dim=-1)) / 0.05) * 20

    normals = density_normals(ball, points, eps=1e-3)
    assert torch.allclose(normals, torch.nn.functional.normalize(points, dim=-1), atol=5e-3)


def test_initial_field_normals_point_outwards():
    field = small_field()
    points = torch.nn.functional.normalize(torch.randn(100, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    points = points * 0.3
    cosine = (field.normals(points) * torch.nn.functional.normalize(points, dim=-1)).sum(-1)
    assert cosine.min() > 0.9


def test_parameter_groups_cover_the_field_once():
    field = small_field()
    groups = field.parameter_groups()
    grouped = [id(p) for ps in groups.values() for p in ps]
    assert sorted(grouped) == sorted(id(p) for p in field.parameters())
    assert groups["encoding"] == [field.encoding.table]


def test_same_seed_same_field_and_background():
    a, b = small_field(seed=4), small_field(seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.encoding.table, small_field(seed=5).encoding.table)
    directions = torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    backgrounds = [EnvironmentBackground(generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(backgrounds[0](directions), backgrounds[1](directions))
    assert ((backgrounds[0](directions) > 0) & (backgrounds[0](directions) < 1)).all()


def test_state_dicts_restore_field_background_and_occupancy():
    field = small_field(seed=0)
    renderer = VolumeRenderer(RenderConfig(samples_per_ray=16, occupancy_resolution=16), generator=torch.Generator().manual_seed(0))
    renderer.update_occupancy(field, step=0, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    torch.save({"field": field.state_dict(), "renderer": renderer.state_dict()}, buffer)
    assert {"occupancy.density", "occupancy.occupied"} <= set(renderer.state_dict())

    restored_field = small_field(seed=9)
    restored_renderer = VolumeRenderer(RenderConfig(samples_per_ray=16, occupancy_resolution=16),
                                       generator=torch.Generator().manual_seed(9))
    buffer.seek(0)
    state = torch.load(buffer)
    restored_field.load_state_dict(state["field"])
    restored_renderer.load_state_dict(state["renderer"])
    assert torch.equal(restored_renderer.occupancy.occupied, renderer.occupancy.occupied)
    cameras = preview_cameras()
    with torch.no_grad():
        a = renderer.render(field, cameras, 8, 8, shading="diffuse", background="environment")
        b = restored_renderer.render(restored_field, cameras, 8, 8, shading="diffuse", background="environment")
    assert torch.equal(a.rgb, b.rgb)


def test_bad_settings_are_refused():
    with pytest.raises(BadConfig, match="density_activation 'relu'"):
        small_field(density_activation="relu")
    with pytest.raises(BadConfig, match="positive"):
        small_field(blob_radius=0.0)
    with pytest.raises(BadConfig, match="log2_table_size"):
        NerfField(FieldConfig(encoding=HashGridConfig(log2_table_size=40)))
    with pytest.raises(BadConfig, match="backend 'fast'"):
        NerfField(FieldConfig(encoding=HashGridConfig(backend="fast")))
