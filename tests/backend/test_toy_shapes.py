"""The `toy-shapes` model: its data generator (exact geometry, cameras, captions), the picture
judge (checked on renders with known labels), and the shipped model (format, and that its own
DDIM samples show the prompt's colour and shape)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import trimesh
from toy_shapes_check import (
    background_estimate, classify, classify_colour, classify_shape, classify_solid, object_mask, sample_images,
    silhouette, solid_measures)
from toy_shapes_data import (
    COLOUR_NAMES, COLOURS, SHAPES, WORDS, ToyShapesDataConfig, caption, make_dataset, posed_scenes, render,
    sample_scenes, signed_distance)

from nfsd_backend.config import ModelConfig
from nfsd_backend.diffusion import load_model
from nfsd_backend.diffusion.tokenizer import write_word_tokenizer
from nfsd_backend.export import export_mesh
from nfsd_backend.nerf.cameras import CameraRanges

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "backend" / "nfsd_backend" / "models" / "toy_shapes"


def distance(shape: str, points, size) -> torch.Tensor:
    p = torch.tensor(points, dtype=torch.float32)
    return signed_distance(p, SHAPES.index(shape), torch.tensor([size] * len(p), dtype=torch.float32))


# --- geometry ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, size, points, expected", [
    ("sphere", (0.5, 0.0), [(0, 0, 0.6), (0, 0, 0), (0.3, 0.4, 0)], [0.1, -0.5, 0.0]),
    ("cube", (0.4, 0.0), [(0.5, 0, 0), (0.5, 0.5, 0.5), (0, 0, 0), (0.1, 0, 0.3)],
     [0.1, 0.1 * math.sqrt(3), -0.4, -0.1]),
    ("cylinder", (0.3, 0.5), [(0.4, 0, 0), (0, 0, 0.6), (0.4, 0, 0.6), (0, 0, 0), (0, 0.25, 0.1)],
     [0.1, 0.1, 0.1 * math.sqrt(2), -0.3, -0.05]),
    # cone: base radius 0.5 at z = -0.5, apex at z = +0.5; its side's outward normal is (2, 1) / sqrt(5)
    ("cone", (0.5, 0.5), [(0, 0, 0.6), (0, 0, -0.6), (0.6, 0, -0.5), (0, 0, 0), (0.5, 0, 0)],
     [0.1, 0.1, 0.1, -0.5 / math.sqrt(5), 0.5 / math.sqrt(5)]),
    ("torus", (0.45, 0.15), [(0.45, 0, 0), (0, 0, 0), (0, 0.45, 0.25), (0.7, 0, 0)], [-0.15, 0.3, 0.1, 0.1]),
])
def test_signed_distances_are_exact(shape, size, points, expected):
    assert torch.allclose(distance(shape, points, size), torch.tensor(expected), atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_distance_gradients_have_unit_length(shape):
    """An exact distance field has |grad| = 1 almost everywhere (what sphere tracing relies on)."""
    p = (torch.rand(2000, 3, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8).requires_grad_()
    size = torch.tensor([[0.4, 0.35]]).expand(len(p), 2)
    signed_distance(p, SHAPES.index(shape), size).sum().backward()
    norm = p.grad.norm(dim=-1)
    assert (norm - 1).abs().lt(1e-4).float().mean() > 0.99


def test_render_covers_the_projected_sphere():
    scenes, config = posed_scenes("sphere", (0.5, 0.0), azimuth=30.0, elevation=20.0)
    _, coverage = render(scenes, config)
    # A sphere of radius r at distance d projects to a disc of angular radius asin(r / d).
    radius_px = math.tan(math.asin(0.5 / 2.0)) / math.tan(math.radians(25.0)) * 32 / 2
    assert coverage.sum().item() == pytest.approx(math.pi * radius_px ** 2, rel=0.02)


def test_render_of_the_cube_front_is_its_front_face():
    """From the front at eye level a cube shows only its front face: a square at distance d - b."""
    scenes, config = posed_scenes("cube", (0.4, 0.0), azimuth=0.0, elevation=0.0)
    _, coverage = render(scenes, config)
    half_px = 0.4 / (2.0 - 0.4) / math.tan(math.radians(25.0)) * 32 / 2
    assert coverage.sum().item() == pytest.approx((2 * half_px) ** 2, rel=0.02)


def test_primitives_stand_upright_along_z():
    scenes, config = posed_scenes("cone", (0.5, 0.5), azimuth=90.0, elevation=0.0)
    _, coverage = render(scenes, config)
    rows = coverage.sum(-1)[0]
    occupied = rows.nonzero().squeeze(1)
    top, bottom = rows[occupied[:3]].mean(), rows[occupied[-3:]].mean()
    assert bottom > 3 * top  # apex up, base down
    # The torus lies in the XY plane: from above, its hole is at the image centre.
    scenes, config = posed_scenes("torus", (0.45, 0.15), azimuth=0.0, elevation=85.0)
    _, coverage = render(scenes, config)
    assert coverage[0, 14:18, 14:18].max() == 0 and coverage[0].sum() > 100


def test_dataset_is_seeded():
    config = ToyShapesDataConfig()
    a, b = make_dataset(12, config, seed=3), make_dataset(12, config, seed=3)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, make_dataset(12, config, seed=4).images)
    assert a.images.shape == (12, 3, 32, 32) and a.images.dtype == torch.uint8


def test_backgrounds_keep_away_from_the_object_colour():
    config = ToyShapesDataConfig()
    scenes = sample_scenes(2000, config, torch.Generator().manual_seed(1))
    gap = (scenes.background_colours - scenes.albedo[:, None]).norm(dim=-1).min(1).values
    assert (gap >= config.min_background_distance).float().mean() > 0.99


def test_captions_use_only_words_the_tokenizer_knows(tmp_path):
    assert caption("cube", "orange", ", front view") == "an orange cube, front view"
    assert caption("torus", None, None) == "a torus"
    tokenizer = write_word_tokenizer(list(WORDS), tmp_path)
    data = make_dataset(64, ToyShapesDataConfig(), seed=0)
    assert "" in data.captions
    for text in set(data.captions):
        words = text.replace(",", " ").replace("-", " ").split()
        ids = tokenizer(text).input_ids[1:-1]
        assert len(ids) == len(words) + text.count(",") + text.count("-"), text  # one token per word


# --- judging pictures --------------------------------------------------------------------------

def drawn(kind: str, size: int = 32) -> torch.Tensor:
    """A hand-drawn silhouette [H,W] of each kind, centred."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5 - size / 2, torch.arange(size) + 0.5 - size / 2,
                            indexing="ij")
    if kind == "disc":
        return xx ** 2 + yy ** 2 <= 9 ** 2
    if kind == "square":
        return (xx.abs() <= 8) & (yy.abs() <= 8)
    if kind == "tall_box":
        return (xx.abs() <= 6) & (yy.abs() <= 10)
    if kind == "triangle":
        return (yy.abs() <= 9) & (xx.abs() <= (yy + 9) / 2)
    if kind == "ring":
        r2 = xx ** 2 + yy ** 2
        return (r2 <= 11 ** 2) & (r2 >= 5 ** 2)
    return (xx / 12) ** 2 + (yy / 4) ** 2 <= 1  # a flat ellipse: a ring seen edge-on


@pytest.mark.parametrize("kind, shape", [("disc", "sphere"), ("square", "cube"), ("tall_box", "cylinder"),
                                         ("triangle", "cone"), ("ring", "torus"), ("flat", "torus")])
def test_silhouette_classes_of_drawn_shapes(kind, shape):
    assert classify_shape(silhouette(drawn(kind))) == shape


@pytest.mark.parametrize("name", COLOUR_NAMES)
def test_colour_of_a_flat_and_a_shaded_object(name):
    mask = drawn("disc")
    shade = torch.linspace(0.4, 1.0, 32)[None, :]  # a Lambert-like falloff across the object
    for factor in (torch.ones(32, 32), shade.expand(32, 32)):
        image = torch.full((3, 32, 32), 0.3)
        image[:, mask] = (torch.tensor(COLOURS[name])[:, None, None] * factor)[:, mask]
        assert classify_colour(image, object_mask(image)) == name


def test_background_ramp_is_recovered_around_an_object():
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    ramp = torch.stack([0.5 + 0.3 * xx, 0.4 - 0.2 * yy, 0.6 + 0.1 * xx - 0.1 * yy])
    image = ramp.clone()
    image[:, drawn("square")] = torch.tensor([0.9, 0.1, 0.1])[:, None]
    assert torch.allclose(background_estimate(image), ramp, atol=1e-4)
    assert torch.equal(object_mask(image), drawn("square"))


def test_judge_is_right_on_rendered_data():
    """On renders with known labels, from the NeRF training cameras, colour and shape are both
    right for at least 95% (from straight above a cylinder, cone and sphere all look round, so
    the judge is only asked about the elevations the NeRF sees)."""
    config = ToyShapesDataConfig(overhead_share=0.0, cameras=CameraRanges())
    scenes = sample_scenes(250, config, torch.Generator().manual_seed(5))
    images, _ = render(scenes, config)
    right = [classify(image) == (COLOUR_NAMES[c], SHAPES[s])
             for image, c, s in zip(images, scenes.colour, scenes.shape)]
    assert sum(right) / len(right) >= 0.95



# --- judging a mesh: the exporter's own output for exact primitives ------------------------------

class PrimitiveField:
    """A data-set primitive as an exporter field: a steep density step at its surface, one colour,
    turned `yaw` degrees about +Z."""

    def __init__(self, shape: str, size: tuple[float, float], colour: str, yaw: float = 0.0):
        self.shape, self.size, self.colour = SHAPES.index(shape), size, torch.tensor(COLOURS[colour])
        angle = math.radians(yaw)
        self.turn = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0],
                                  [math.sin(angle), math.cos(angle), 0.0], [0.0, 0.0, 1.0]])

    def density(self, points: torch.Tensor) -> torch.Tensor:
        size = torch.tensor([self.size] * len(points), dtype=torch.float32)
        return 50.0 * torch.sigmoid(-signed_distance(points @ self.turn, self.shape, size) / 0.01)

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        return self.colour.expand(len(points), 3)


@pytest.mark.parametrize("shape, size, colour, yaw", [
    ("sphere", (0.5, 0.0), "red", 0.0), ("cube", (0.35, 0.0), "blue", 0.0), ("cube", (0.35, 0.0), "green", 40.0),
    ("cylinder", (0.3, 0.48), "yellow", 0.0), ("cone", (0.44, 0.44), "orange", 0.0),
    ("torus", (0.45, 0.15), "purple", 0.0), ("sphere", (0.5, 0.0), "white", 0.0)])
def test_solid_judge_on_exported_primitives(tmp_path, shape, size, colour, yaw):
    """Exact primitives through `export_mesh` (marching cubes, UV atlas, baked texture, glb) and
    back: the judge names the primitive and the texture's colour, whatever the turn about +Z."""
    export_mesh(PrimitiveField(shape, size, colour, yaw), tmp_path, bound=1.0, resolution=64, texture_size=128)
    solid = solid_measures(trimesh.load(tmp_path / "model.glb", force="mesh"))
    assert (classify_solid(solid), solid.colour) == (shape, colour), solid
    assert solid.genus == (1 if shape == "torus" else 0)
    albedo = COLOURS[colour]
    assert solid.saturation == pytest.approx((max(albedo) - min(albedo)) / max(albedo), abs=0.03)


# --- the shipped model -------------------------------------------------------------------------

def test_model_folder_has_the_agreed_format():
    assert not (MODEL / "vae").exists()  # pixel space
    unet = json.loads((MODEL / "unet" / "config.json").read_text())
    assert (unet["in_channels"], unet["out_channels"], unet["sample_size"]) == (3, 3, 32)
    scheduler = json.loads((MODEL / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "DDPMScheduler"
    assert (scheduler["num_train_timesteps"], scheduler["beta_schedule"], scheduler["beta_start"],
            scheduler["beta_end"], scheduler["prediction_type"]) == (1000, "scaled_linear", 0.00085, 0.012,
                                                                      "epsilon")
    index = json.loads((MODEL / "model_index.json").read_text())
    assert {"unet", "text_encoder", "tokenizer", "scheduler"} <= set(index) and "vae" not in index
    weights = list(MODEL.rglob("*.safetensors"))
    assert {w.parent.name for w in weights} == {"unet", "text_encoder"}
    assert not list(MODEL.rglob("*.bin"))
    assert sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file()) < 25 * 2 ** 20


@pytest.fixture(scope="module")
def model():
    return load_model(ModelConfig(name="toy-shapes", device="cpu"))


def test_loader_sees_a_pixel_space_model_whose_tokenizer_keeps_every_word_whole(model):
    assert model.pixel_space and model.image_size == 32
    for word in WORDS:
        assert len(model.tokenizer(word).input_ids) == 3, word  # start, the word, end


# Every shape three times and every colour at least twice; with and without a view suffix.
QUALITY_PROMPTS = [
    ("red", "cube"), ("blue", "sphere"), ("yellow", "cylinder"), ("green", "cone"), ("purple", "torus"),
    ("orange", "sphere"), ("white", "cube"), ("red", "cylinder"), ("blue", "cone"), ("yellow", "torus"),
    ("green", "sphere"), ("purple", "cube"), ("orange", "cylinder"), ("white", "cone"), ("blue", "torus"),
]


@pytest.mark.slow
def test_samples_show_the_prompted_colour_and_shape(model):
    """The model's own 30-step DDIM samples (CFG 3) from 15 captions, each twice: the colour
    and the shape both right for at least 90%, the issue's bar. Measured on the shipped weights
    with one thread: colour 30 of 30 and both 26-29 of 30 over seeds 0-5 (seed 0: 28); 90% of 420
    samples at CFG 3, 86% of 180 at CFG 5. The misses are spheres drawn squarish at 32 px."""
    prompts = QUALITY_PROMPTS * 2
    captions = [caption(shape, colour, ", front view" if i % 2 else None)
                for i, (colour, shape) in enumerate(prompts)]
    images = sample_images(model.denoiser, model.encode_prompts(captions), model.encode_prompts([""]),
                           model.image_size, steps=30, guidance_scale=3.0,
                           generator=torch.Generator().manual_seed(0))
    judged = [classify(image) for image in images]
    colour_right = [colour == prompt[0] for (colour, _), prompt in zip(judged, prompts)]
    right = [tuple(j) == prompt for j, prompt in zip(judged, prompts)]
    assert sum(colour_right) / len(prompts) >= 0.9, [c for c, r in zip(captions, colour_right) if not r]
    assert sum(right) / len(prompts) >= 0.9, [c for c, r in zip(captions, right) if not r]
