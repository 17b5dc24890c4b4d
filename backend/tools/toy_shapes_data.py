"""Training data for the `toy-shapes` model: coloured primitives seen from the NeRF training
loop's cameras, shaded like its renderer, on the kinds of backgrounds it produces, with captions.

Every primitive is centred on the origin, upright along +Z, and fits within radius ~0.7, so it
fills a share of the frame like the object the NeRF learns. Rendering sphere-traces exact signed
distance functions at `render_size`, then area-downsamples to `image_size` (anti-aliasing).
All randomness comes from one seeded `torch.Generator`, so a seed fixes the data set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from nfsd_backend.config import NFSD_NEGATIVE_PROMPT
from nfsd_backend.nerf.cameras import (CameraRanges, Cameras, generate_rays, orbit_cameras, sample_cameras,
                                       view_suffix)

SHAPES = ("sphere", "cube", "cylinder", "cone", "torus")
COLOURS = {  # name -> albedo (sRGB in [0, 1])
    "red": (0.86, 0.08, 0.07),
    "green": (0.10, 0.70, 0.16),
    "blue": (0.10, 0.26, 0.92),
    "yellow": (0.96, 0.86, 0.10),
    "purple": (0.56, 0.16, 0.78),
    "orange": (1.00, 0.50, 0.05),
    "white": (0.95, 0.95, 0.95),
}
COLOUR_NAMES = tuple(COLOURS)
SHADINGS = ("albedo", "diffuse", "textureless")  # the renderer's shading modes
BACKGROUNDS = ("solid", "plain", "gradient")  # random colour | white or grey | smooth two-colour ramp
VIEW_WORDS = ("front", "back", "side", "overhead", "view")
# Every word a caption can contain; anything else reaches the model spelled out in characters.
WORDS = (COLOUR_NAMES + SHAPES + ("a", "an") + VIEW_WORDS
         + tuple(dict.fromkeys(re.findall(r"[a-z]+", NFSD_NEGATIVE_PROMPT))))

# Size ranges per shape, [low, high] per dimension, in field units. The cylinder is taller than
# wide so that, even in flat albedo, a side-on cylinder is not a side-on cube.
SIZE_RANGES = {
    "sphere": ((0.45, 0.60), (0.0, 0.0)),  # radius
    "cube": ((0.30, 0.40), (0.0, 0.0)),  # half edge
    "cylinder": ((0.27, 0.35), (0.42, 0.55)),  # radius, half height
    "cone": ((0.38, 0.50), (0.38, 0.50)),  # base radius, half height (apex at +Z)
    "torus": ((0.40, 0.50), (0.13, 0.18)),  # ring radius, tube radius (lying in the XY plane)
}
BOUND = 0.8  # every primitive lies within this radius of the origin


@dataclass
class ToyShapesDataConfig:
    """What the generated data set contains."""

    image_size: int = 32  # the model's resolution
    render_size: int = 64  # rendered at this size, then area-downsampled to image_size
    cameras: CameraRanges = field(default_factory=CameraRanges)  # the NeRF training loop's cameras
    overhead_share: float = 0.05  # extra cameras at elevation 60-85 deg, so ", overhead view" is known
    shading_weights: tuple[float, float, float] = (0.4, 0.4, 0.2)  # albedo, diffuse, textureless
    background_weights: tuple[float, float, float] = (0.4, 0.25, 0.35)  # solid, plain, gradient
    min_background_distance: float = 0.35  # RGB distance kept between the albedo and the background
    empty_caption_share: float = 0.1  # "" captions, so classifier-free guidance works
    no_view_share: float = 0.2  # captions without the view suffix ("a red cube")
    no_colour_share: float = 0.05  # captions naming only the shape ("a cube, side view")
    degraded_share: float = 0.06  # blurred/dark/dull images captioned with NFSD's negative prompt
    trace_steps: int = 64  # sphere-tracing iterations


@dataclass
class Scenes:
    """A batch of B scenes: one primitive, its look, a camera, a background."""

    shape: torch.Tensor  # [B] index into SHAPES
    colour: torch.Tensor  # [B] index into COLOUR_NAMES ("white" for textureless renders)
    size: torch.Tensor  # [B,2] the shape's dimensions (SIZE_RANGES)
    albedo: torch.Tensor  # [B,3]
    shading: torch.Tensor  # [B] index into SHADINGS
    light: torch.Tensor  # [B,3] point light position
    ambient: torch.Tensor  # [B] ambient share of the diffuse shading
    background: torch.Tensor  # [B] index into BACKGROUNDS
    background_colours: torch.Tensor  # [B,2,3] the two ends of the ramp (equal unless gradient)
    gradient_direction: torch.Tensor  # [B,2] unit image-plane direction of the ramp
    cameras: Cameras


def _choice(weights, n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(torch.as_tensor(weights, dtype=torch.float32), n, replacement=True,
                             generator=generator)


def _uniform(low, high, shape, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def _far_colours(albedo: torch.Tensor, candidates: torch.Tensor, min_distance: float,
                 generator: torch.Generator) -> torch.Tensor:
    """One candidate colour per row, chosen at random among those at least `min_distance` from
    the albedo (the farthest one when none is), so the object never melts into the background."""
    distance = (candidates - albedo[:, None]).norm(dim=-1)  # [B,K]
    score = torch.where(distance >= min_distance, 2.0 + torch.rand(distance.shape, generator=generator),
                        distance)
    return candidates[torch.arange(len(albedo)), score.argmax(1)]


def _concat_cameras(a: Cameras, b: Cameras) -> Cameras:
    return Cameras(*(torch.cat([getattr(a, f), getattr(b, f)]) for f in
                     ("c2w", "fovy", "azimuth_deg", "elevation_deg", "distance")))


def sample_scenes(n: int, config: ToyShapesDataConfig, generator: torch.Generator) -> Scenes:
    """n random scenes, every shape, colour, look and camera drawn from `generator`."""
    shape = torch.randint(len(SHAPES), (n,), generator=generator)
    colour = torch.randint(len(COLOURS), (n,), generator=generator)
    low = torch.tensor([[r[0] for r in SIZE_RANGES[s]] for s in SHAPES])[shape]
    high = torch.tensor([[r[1] for r in SIZE_RANGES[s]] for s in SHAPES])[shape]
    size = _uniform(low, high, (n, 2), generator)
    shading = _choice(config.shading_weights, n, generator)
    textureless = shading == SHADINGS.index("textureless")
    colour = torch.where(textureless, COLOUR_NAMES.index("white"), colour)
    jitter = _uniform(-0.05, 0.05, (n, 3), generator)
    albedo = (torch.tensor(list(COLOURS.values()))[colour] + jitter).clamp(0, 1)
    albedo[textureless] = 1.0

    n_overhead = int(round(n * config.overhead_share))
    overhead = CameraRanges(azimuth_deg=config.cameras.azimuth_deg, elevation_deg=(60.0, 85.0),
                            distance=config.cameras.distance, fovy_deg=config.cameras.fovy_deg)
    cameras = _concat_cameras(sample_cameras(n - n_overhead, config.cameras, generator),
                              sample_cameras(n_overhead, overhead, generator))
    cameras = cameras[torch.randperm(n, generator=generator)]

    # A point light near the camera (as DreamFusion places it), plus some ambient light.
    towards_camera = F.normalize(cameras.positions, dim=-1)
    light_direction = F.normalize(towards_camera + 0.6 * torch.randn(n, 3, generator=generator), dim=-1)
    light = light_direction * _uniform(1.5, 3.0, (n, 1), generator)
    ambient = _uniform(0.15, 0.45, (n,), generator)

    background = _choice(config.background_weights, n, generator)
    k = 16
    random_colours = torch.rand(n, 2, k, 3, generator=generator)
    grey = _uniform(0.45, 1.0, (n, 1, k, 1), generator)
    grey = torch.where(torch.rand(n, 1, k, 1, generator=generator) < 0.5, 1.0, grey).expand(n, 2, k, 3)
    candidates = torch.where((background == BACKGROUNDS.index("plain"))[:, None, None, None], grey,
                             random_colours)
    ends = torch.stack([_far_colours(albedo, candidates[:, i], config.min_background_distance, generator)
                        for i in range(2)], 1)
    ends[:, 1] = torch.where((background == BACKGROUNDS.index("gradient"))[:, None], ends[:, 1], ends[:, 0])
    angle = _uniform(0.0, 2 * torch.pi, (n,), generator)
    gradient_direction = torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    return Scenes(shape, colour, size, albedo, shading, light, ambient, background, ends,
                  gradient_direction, cameras)


def posed_scenes(shape: str, size: tuple[float, float], azimuth, elevation: float, distance: float = 2.0,
                 fovy: float = 50.0, colour: str | None = None) -> tuple[Scenes, ToyShapesDataConfig]:
    """One primitive seen from chosen cameras (one scene per azimuth), flat albedo on a plain
    background, and the config to render them with: a known picture for tests and probes.
    `colour` None keeps the seeded random albedo."""
    azimuth = torch.as_tensor(azimuth, dtype=torch.float32).reshape(-1)
    config = ToyShapesDataConfig(overhead_share=0.0, shading_weights=(1.0, 0.0, 0.0),
                                 background_weights=(0.0, 1.0, 0.0))
    scenes = sample_scenes(len(azimuth), config, torch.Generator().manual_seed(0))
    scenes.shape[:] = SHAPES.index(shape)
    scenes.size[:] = torch.tensor(size)
    if colour is not None:
        scenes.colour[:] = COLOUR_NAMES.index(colour)
        scenes.albedo[:] = torch.tensor(COLOURS[colour])
    scenes.cameras = orbit_cameras(azimuth, elevation, distance, fovy)
    return scenes, config


# --- geometry -----------------------------------------------------------------------------------

def _box_distance(q: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """Signed distance from points q [N,D] to origin-centred boxes of half extents half [N,D]."""
    d = q.abs() - half
    return d.clamp(min=0).norm(dim=-1) + d.max(-1).values.clamp(max=0)


def _triangle_distance(q: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Signed distance from 2-D points q [N,2] to triangles [N,3,2] (counter-clockwise)."""
    edge = vertices.roll(-1, dims=1) - vertices
    offset = q[:, None] - vertices
    along = ((offset * edge).sum(-1) / (edge * edge).sum(-1)).clamp(0, 1)
    distance = (offset - edge * along[..., None]).norm(dim=-1).min(1).values
    inside = (edge[..., 0] * offset[..., 1] - edge[..., 1] * offset[..., 0] >= 0).all(1)
    return torch.where(inside, -distance, distance)


def signed_distance(p: torch.Tensor, shape: int, size: torch.Tensor) -> torch.Tensor:
    """Exact signed distance [N] from points p [N,3] to one kind of primitive, per-point size [N,2].

    The cylinder, cone and torus are solids of revolution about +Z: their distance is the 2-D
    distance to their cross-section in (radial, z) coordinates."""
    a, b = size[:, 0], size[:, 1]
    name = SHAPES[shape]
    if name == "sphere":
        return p.norm(dim=-1) - a
    if name == "cube":
        return _box_distance(p, a[:, None].expand(-1, 3))
    q = torch.stack([p[:, :2].norm(dim=-1), p[:, 2]], -1)
    if name == "cylinder":
        return _box_distance(q, size)
    if name == "torus":
        return (q - torch.stack([a, torch.zeros_like(a)], -1)).norm(dim=-1) - b
    # cone: base of radius a at z = -b, apex at z = +b
    vertices = torch.stack([torch.stack([-a, -b], -1), torch.stack([a, -b], -1),
                            torch.stack([torch.zeros_like(a), b], -1)], 1)
    return _triangle_distance(q, vertices)


def _sphere_trace(origins: torch.Tensor, dirs: torch.Tensor, shape: int, size: torch.Tensor,
                  steps: int, tolerance: float = 2e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """March rays [N,3] from where they enter the bounding sphere; returns hit [N] and depth [N].
    Rays that converge or leave the bounding sphere drop out of the working set."""
    b = (origins * dirs).sum(-1)
    disc = b * b - ((origins * origins).sum(-1) - BOUND ** 2)
    enters = disc > 0
    ray = torch.nonzero(enters).squeeze(1)
    o, d, s = origins[enters], dirs[enters], size[enters]
    t = -b[enters] - disc[enters].sqrt()
    t_far = -b[enters] + disc[enters].sqrt()
    hit = torch.zeros(len(origins), dtype=torch.bool)
    depth = torch.zeros(len(origins))
    for _ in range(steps):
        if len(ray) == 0:
            break
        distance = signed_distance(o + t[:, None] * d, shape, s)
        t = t + distance
        converged = distance < tolerance
        hit[ray[converged]] = True
        depth[ray[converged]] = t[converged]
        keep = ~converged & (t < t_far)
        ray, o, d, s, t, t_far = ray[keep], o[keep], d[keep], s[keep], t[keep], t_far[keep]
    return hit, depth


def _normals(p: torch.Tensor, shape: int, size: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    offsets = torch.eye(3) * eps
    grad = torch.stack([signed_distance(p + o, shape, size) - signed_distance(p - o, shape, size)
                        for o in offsets], -1)
    return F.normalize(grad, dim=-1)


# --- rendering ----------------------------------------------------------------------------------

def _background(scenes: Scenes, size: int) -> torch.Tensor:
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    yy, xx = torch.meshgrid(-coords, coords, indexing="ij")
    ramp = (xx[None] * scenes.gradient_direction[:, 0, None, None]
            + yy[None] * scenes.gradient_direction[:, 1, None, None]) / 2 ** 0.5 * 0.5 + 0.5  # in [0,1]
    start, end = scenes.background_colours[:, 0], scenes.background_colours[:, 1]
    return start[:, :, None, None] + (end - start)[:, :, None, None] * ramp[:, None]


def render(scenes: Scenes, config: ToyShapesDataConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [B,3,S,S] in [0,1] and object coverage [B,S,S] in [0,1], S = config.image_size."""
    n, size = len(scenes.shape), config.render_size
    origins, dirs = generate_rays(scenes.cameras, size, size)
    origins, dirs = origins.reshape(n, -1, 3), dirs.reshape(n, -1, 3)
    colour = torch.zeros(n, size * size, 3)
    hit_all = torch.zeros(n, size * size, dtype=torch.bool)
    for shape in range(len(SHAPES)):
        index = torch.nonzero(scenes.shape == shape).squeeze(1)
        if len(index) == 0:
            continue
        o, d = origins[index].reshape(-1, 3), dirs[index].reshape(-1, 3)
        per_ray = torch.arange(len(index)).repeat_interleave(size * size)
        dims = scenes.size[index][per_ray]
        hit, depth = _sphere_trace(o, d, shape, dims, config.trace_steps)
        rays = torch.nonzero(hit).squeeze(1)
        image = index[per_ray[rays]]
        p = o[rays] + depth[rays, None] * d[rays]
        normal = _normals(p, shape, dims[rays])
        to_light = F.normalize(scenes.light[image] - p, dim=-1)
        lambert = (normal * to_light).sum(-1).clamp(min=0)
        ambient = scenes.ambient[image]
        lit = (ambient + (1 - ambient) * lambert)[:, None] * scenes.albedo[image]
        flat = scenes.shading[image] == SHADINGS.index("albedo")
        shaded = torch.where(flat[:, None], scenes.albedo[image], lit)
        pixel = rays % (size * size)
        colour[image, pixel] = shaded
        hit_all[image, pixel] = True
    colour = colour.reshape(n, size, size, 3).permute(0, 3, 1, 2)
    coverage = hit_all.reshape(n, 1, size, size).float()
    images = coverage * colour + (1 - coverage) * _background(scenes, size)
    factor = size // config.image_size
    return F.avg_pool2d(images, factor), F.avg_pool2d(coverage, factor)[:, 0]


def _degradations(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Every degradation of every image [B,5,3,H,W]: blur, darken, lower contrast, desaturate,
    lower resolution."""
    n, _, h, w = images.shape
    x = torch.arange(5, dtype=torch.float32) - 2
    sigma = _uniform(0.8, 1.6, (n, 1), generator)
    kernel = torch.exp(-x[None] ** 2 / (2 * sigma ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True))[:, :, None, None, None]  # [B,5,1,1,1]
    padded = F.pad(images, (2, 2, 2, 2), mode="replicate")
    rows = sum(kernel[:, i] * padded[:, :, :, i:i + w] for i in range(5))
    blurred = sum(kernel[:, i] * rows[:, :, i:i + h] for i in range(5))
    mean = images.mean((1, 2, 3), keepdim=True)
    luma = (images * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True)
    low_res = F.interpolate(F.avg_pool2d(images, 4), size=(h, w), mode="bilinear", align_corners=False)
    return torch.stack([
        blurred,
        images * _uniform(0.2, 0.45, (n, 1, 1, 1), generator),
        mean + (images - mean) * _uniform(0.2, 0.45, (n, 1, 1, 1), generator),
        luma + (images - luma) * _uniform(0.0, 0.3, (n, 1, 1, 1), generator),
        low_res,
    ], 1)


def degrade(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Two different degradations, one after the other: what the words of NFSD's negative prompt
    describe, so that this prompt means something to the toy model."""
    n = len(images)
    first, second = torch.rand(n, 5, generator=generator).argsort(1)[:, :2].unbind(1)
    once = _degradations(images, generator)[torch.arange(n), first]
    return _degradations(once, generator)[torch.arange(n), second].clamp(0, 1)


def caption(shape: str, colour: str | None, suffix: str | None) -> str:
    """'a red cube, front view'; without colour 'a cube'; without suffix no view."""
    noun = f"{colour} {shape}" if colour else shape
    article = "an" if noun[0] in "aeiou" else "a"
    return f"{article} {noun}{suffix or ''}"


@dataclass
class ToyShapesData:
    """A generated data set."""

    images: torch.Tensor  # [N,3,S,S] uint8
    captions: list[str]
    shape: torch.Tensor  # [N] index into SHAPES
    colour: torch.Tensor  # [N] index into COLOUR_NAMES


def make_dataset(n: int, config: ToyShapesDataConfig, seed: int, chunk: int = 512) -> ToyShapesData:
    """n rendered, captioned images; the same seed gives the same data set."""
    generator = torch.Generator().manual_seed(seed)
    images, captions, shapes, colours = [], [], [], []
    for start in range(0, n, chunk):
        scenes = sample_scenes(min(chunk, n - start), config, generator)
        rgb, _ = render(scenes, config)
        m = len(rgb)
        kind = torch.rand(m, 4, generator=generator)
        degraded = kind[:, 0] < config.degraded_share
        rgb[degraded] = degrade(rgb[degraded], generator)
        for i in range(m):
            if degraded[i]:
                captions.append(NFSD_NEGATIVE_PROMPT)
                continue
            suffix = None if kind[i, 1] < config.no_view_share else view_suffix(
                float(scenes.cameras.azimuth_deg[i]), float(scenes.cameras.elevation_deg[i]))
            colour = None if kind[i, 2] < config.no_colour_share else COLOUR_NAMES[scenes.colour[i]]
            captions.append(caption(SHAPES[scenes.shape[i]], colour, suffix))
        empty = kind[:, 3] < config.empty_caption_share
        for i in torch.nonzero(empty).squeeze(1).tolist():
            captions[start + i] = ""
        images.append((rgb * 255).round().to(torch.uint8))
        shapes.append(scenes.shape)
        colours.append(scenes.colour)
    return ToyShapesData(torch.cat(images), captions, torch.cat(shapes), torch.cat(colours))
