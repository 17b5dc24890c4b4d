"""Volume rendering of a field inside the box [-bound, bound]^3.

Per ray: enter and leave the box (slab test), place stratified samples between, drop the samples
in cells the occupancy grid knows to be empty, query the field only at the rest, shade, and
alpha-composite over the background. Two samplers with one interface: the pure-torch one below
and nerfacc's occupancy-grid marcher (CUDA only). Both read the same `OccupancyGrid`, which the
training loop refreshes from the field's density every few steps.

All randomness (stratified offsets, shading mode, point light, background colour) is drawn from
an explicit CPU `torch.Generator` before any work starts, so a seed fixes a training step and the
chunk size never changes the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.utils.checkpoint import checkpoint

from ..doctor import check_nerfacc
from ..errors import BadConfig
from .backends import accelerator_status, choose_backend
from .cameras import Cameras, generate_rays
from .field import EnvironmentBackground

SHADINGS = ("albedo", "diffuse", "textureless")
BACKGROUNDS = ("environment", "solid")


@dataclass
class RenderConfig:
    """How rays are sampled, which space is skipped, and how training renders are randomised."""

    # Stratified samples between the ray's entry into and exit from the box (nerfacc on CUDA: a fixed
    # step, the box diagonal / samples_per_ray, as threestudio's).
    samples_per_ray: int = 64
    chunk_rays: int = 16384  # rays rendered at once: bounds memory; with gradients, chunks are recomputed in backward
    sampler: str = "auto"  # auto | torch | nerfacc; auto = nerfacc's marcher on CUDA when it works
    occupancy_resolution: int = 64  # cells per axis of the occupancy grid over the box
    occupancy_threshold: float = 0.01  # density at or below which a cell counts as empty
    occupancy_update_every: int = 16  # training steps between occupancy grid updates
    occupancy_decay: float = 0.95  # per update, a cell's recorded density decays by this factor (EMA of the max)
    occupancy_samples_per_cell: int = 2  # density samples per cell and update: its centre, then random points
    occupancy_dilation: int = 1  # cells within this many cells of an occupied one are kept too (safety margin)
    albedo_probability: float = 0.2  # training shading: albedo only (threestudio's albedo_ratio)
    diffuse_probability: float = 0.4  # training shading: Lambert with a random point light
    textureless_probability: float = 0.4  # training shading: Lambert on white, so shape must explain the image
    # Normals cost 3 density queries per sample, so only samples whose compositing weight exceeds
    # this get one; the others (empty space, or hidden behind the surface) shade with ambient light.
    normal_weight_threshold: float = 1e-4
    ambient: float = 0.1  # share of ambient light in diffuse and textureless shading; the point light gives the rest
    light_distance: tuple[float, float] = (0.8, 1.5)  # the point light's distance from the origin (field units)
    light_jitter: float = 1.0  # std of the random offset from the camera position to the light's direction
    solid_background_probability: float = 0.5  # training: chance to replace the environment by a random colour


def validate_render_config(config: RenderConfig) -> None:
    """Refuse settings the renderer cannot use, with a message that names the setting."""
    if not 1 <= config.samples_per_ray <= 1024 or config.chunk_rays < 1:
        raise BadConfig("train.render.samples_per_ray must be in 1..1024 and chunk_rays at least 1.")
    if not 1 <= config.occupancy_resolution <= 512:  # 512^3 cells are half a GiB; twice that, 4 GiB
        raise BadConfig(f"train.render.occupancy_resolution must be in 1..512, got {config.occupancy_resolution}.")
    if config.occupancy_update_every < 1 or \
            config.occupancy_samples_per_cell < 1 or config.occupancy_dilation < 0:
        raise BadConfig("train.render.occupancy_update_every and occupancy_samples_per_cell must be at least 1, and "
                        "occupancy_dilation at least 0.")
    probabilities = (config.albedo_probability, config.diffuse_probability, config.textureless_probability)
    if min(probabilities) < 0 or not math.isclose(sum(probabilities), 1.0, abs_tol=1e-6):
        raise BadConfig("train.render.albedo_probability, diffuse_probability and textureless_probability must be "
                        f">= 0 and sum to 1, got {probabilities}.")
    if not 0.0 <= config.solid_background_probability <= 1.0 or not 0.0 <= config.ambient <= 1.0:
        raise BadConfig("train.render.solid_background_probability and ambient must lie in [0, 1].")
    if config.sampler not in ("auto", "torch", "nerfacc"):
        raise BadConfig(f"unknown train.render.sampler {config.sampler!r}; choose one of: auto, torch, nerfacc.")


class RenderableField(Protocol):
    """What the renderer asks of a field (NerfField, or an analytic field in tests)."""

    def density_and_albedo(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
    def density(self, points: torch.Tensor) -> torch.Tensor: ...
    def normals(self, points: torch.Tensor, density: torch.Tensor | None = None) -> torch.Tensor: ...


def ray_box_intersection(origins: torch.Tensor, directions: torch.Tensor,
                         bound: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slab test against [-bound, bound]^3: near [R], far [R], hit [R] (near < far).

    `near` is clamped at 0, so a camera inside the box starts sampling at itself.
    """
    tiny = torch.full_like(directions, 1e-12)
    # A zero component would make 0 * inf = nan on a slab face; nudge it off zero, keeping the sign.
    safe = torch.where(directions.abs() < 1e-12, torch.where(directions < 0, -tiny, tiny), directions)
    t_low = (-bound - origins) / safe
    t_high = (bound - origins) / safe
    near = torch.minimum(t_low, t_high).amax(dim=-1).clamp(min=0.0)
    far = torch.maximum(t_low, t_high).amin(dim=-1)
    return near, far, far > near


class OccupancyGrid(torch.nn.Module):
    """Which cells of a resolution^3 grid over the box may hold density above a threshold.

    Each update samples the density at every cell's centre and at `samples_per_cell - 1` random
    points in it, keeps `max(decay * previous, new max)` per cell, marks the cells above the
    threshold occupied and dilates that mask by `dilation` cells. It errs towards keeping. The
    random points find what the centres never see, a structure thinner than a cell lying between
    two planes of centres (a leaf, a thin wall); the decayed max remembers it. Why dilation 1
    suffices: let a cell C contain a point p of a region where the density exceeds the
    threshold, and let the region also contain the ball of radius sqrt(3)/2 cells around the
    point q found by stepping sqrt(3)/2 cells from p inwards (true unless the region is thinner
    than about two cells there). Then the centre of q's cell, at most sqrt(3)/2 cells from q, lies
    in the region, so that cell is marked; and q is at most one cell from C along each axis, so
    dilation keeps C. The tests check this on a ball.
    Before the first update every cell is occupied.
    """

    density: torch.Tensor  # [R,R,R] buffer: the recorded (decayed max) density per cell
    occupied: torch.Tensor  # [R,R,R] bool buffer: the cells samples are taken in

    def __init__(self, resolution: int, bound: float, threshold: float = 0.01, decay: float = 0.95,
                 samples_per_cell: int = 2, dilation: int = 1):
        super().__init__()
        self.resolution, self.bound, self.threshold = resolution, bound, threshold
        self.decay, self.samples_per_cell, self.dilation = decay, samples_per_cell, dilation
        self.register_buffer("density", torch.zeros(resolution, resolution, resolution))
        self.register_buffer("occupied", torch.ones(resolution, resolution, resolution, dtype=torch.bool))

    def cell_indices(self, points: torch.Tensor) -> torch.Tensor:
        """[N,3] points -> [N] flat cell index (x-major: index = (i * R + j) * R + k)."""
        r = self.resolution
        cell = ((points / self.bound + 1.0) / 2.0 * r).floor().long().clamp(0, r - 1)
        return (cell[:, 0] * r + cell[:, 1]) * r + cell[:, 2]

    def contains(self, points: torch.Tensor) -> torch.Tensor:
        """[N,3] -> [N] bool: the point's cell is occupied."""
        return self.occupied.reshape(-1)[self.cell_indices(points)]

    def cell_centers(self) -> torch.Tensor:
        """[R^3,3] world positions of the cell centres, in flat-index order."""
        r = self.resolution
        axis = (torch.arange(r, device=self.density.device, dtype=torch.float32) + 0.5) / r
        grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
        return (grid * 2.0 - 1.0) * self.bound

    @torch.no_grad()
    def update(self, density_fn, generator: torch.Generator, chunk: int = 2 ** 18) -> None:
        """Re-sample the density (see the class comment); `generator` places the random samples."""
        centers = self.cell_centers()
        cell_size = 2.0 * self.bound / self.resolution
        new = torch.zeros(centers.shape[0], device=centers.device)
        for sample in range(self.samples_per_cell):
            points = centers
            if sample > 0:
                offsets = torch.rand(centers.shape, generator=generator) - 0.5
                points = centers + offsets.to(centers.device) * cell_size
            values = torch.cat([density_fn(part) for part in points.split(chunk)])
            new = torch.maximum(new, values.float())
        self.density.copy_(torch.maximum(self.density * self.decay, new.reshape(self.density.shape)))
        occupied = (self.density > self.threshold).float()[None, None]
        if self.dilation > 0:
            size = 2 * self.dilation + 1
            occupied = torch.nn.functional.max_pool3d(occupied, size, stride=1, padding=self.dilation)
        self.occupied.copy_(occupied[0, 0] > 0)


@dataclass
class RaySamples:
    """Kept samples of a batch of rays, packed and sorted by ray, then by distance."""

    ray_indices: torch.Tensor  # [M] int64, the ray each sample is on
    t_starts: torch.Tensor  # [M] start of the sample's interval along the ray
    t_ends: torch.Tensor  # [M] end of the interval (t_ends - t_starts is the compositing step)
    t_points: torch.Tensor  # [M] where in the interval the field is evaluated
    slots: torch.Tensor | None = None  # [M] the sample's index along its ray (pure-torch sampler only)


class TorchSampler:
    """Stratified samples in equal steps between the box's near and far, culled by the grid."""

    def __init__(self, occupancy: OccupancyGrid, samples_per_ray: int):
        self.occupancy = occupancy
        self.samples_per_ray = samples_per_ray

    def sample(self, origins, directions, near, far, hit, jitter) -> RaySamples:
        """`jitter` [R,S] in [0,1): each sample's place within its step (0.5 = the middle)."""
        steps = self.samples_per_ray
        width = ((far - near) / steps)[:, None]
        index = torch.arange(steps, device=origins.device, dtype=origins.dtype)
        t_starts = near[:, None] + index * width  # [R,S]
        t_points = t_starts + jitter * width
        points = origins[:, None, :] + directions[:, None, :] * t_points[..., None]
        keep = hit[:, None] & self.occupancy.contains(points.reshape(-1, 3)).reshape(t_points.shape)
        rays, slots = keep.nonzero(as_tuple=True)
        return RaySamples(rays, t_starts[rays, slots], t_starts[rays, slots] + width[rays, 0],
                          t_points[rays, slots], slots)

    def weights(self, samples: RaySamples, sigmas: torch.Tensor, n_rays: int) -> torch.Tensor:
        """Compositing weights T_i * alpha_i [M]; culled samples count as empty space."""
        rays, slots = samples.ray_indices, samples.slots
        assert slots is not None, "samples from TorchSampler.sample carry their slots"
        optical = sigmas.new_zeros(n_rays, self.samples_per_ray)
        optical = optical.index_put((rays, slots), sigmas * (samples.t_ends - samples.t_starts))
        before = torch.cumsum(optical, dim=1) - optical  # optical depth in front of each sample
        weights = torch.exp(-before) * (1.0 - torch.exp(-optical))
        return weights[rays, slots]


class NerfaccSampler:
    """nerfacc's marcher over the same occupancy grid (CUDA only; never reached on CPU)."""

    def __init__(self, occupancy: OccupancyGrid, samples_per_ray: int, bound: float):
        import nerfacc

        self.nerfacc, self.occupancy = nerfacc, occupancy
        # A fixed step, threestudio's: the box diagonal in samples_per_ray steps, so a ray through the
        # centre gets about 58% of the samples the torch sampler spreads between entry and exit.
        self.step = 2.0 * math.sqrt(3.0) * bound / samples_per_ray
        self.estimator = nerfacc.OccGridEstimator(roi_aabb=[-bound] * 3 + [bound] * 3,
                                                  resolution=occupancy.resolution, levels=1)
        self.estimator.to(occupancy.occupied.device)

    def sample(self, origins, directions, near, far, hit, jitter) -> RaySamples:
        self.estimator.binaries.copy_(self.occupancy.occupied[None])  # one grid decides what is empty
        rays, t_starts, t_ends = self.estimator.sampling(
            origins, directions, t_min=near + jitter[:, 0] * self.step, t_max=far,
            render_step_size=self.step, stratified=False)
        return RaySamples(rays.long(), t_starts, t_ends, (t_starts + t_ends) / 2)

    def weights(self, samples: RaySamples, sigmas: torch.Tensor, n_rays: int) -> torch.Tensor:
        weights, _, _ = self.nerfacc.render_weight_from_density(
            samples.t_starts, samples.t_ends, sigmas, ray_indices=samples.ray_indices, n_rays=n_rays)
        return weights


def make_sampler(config: RenderConfig, occupancy: OccupancyGrid, bound: float, device: torch.device | str):
    status = accelerator_status(check_nerfacc, device)
    if choose_backend(config.sampler, "nerfacc", device, status) == "nerfacc":
        return NerfaccSampler(occupancy, config.samples_per_ray, bound)
    return TorchSampler(occupancy, config.samples_per_ray)


def shade(albedo: torch.Tensor, normals: torch.Tensor | None, points: torch.Tensor,
          lights: torch.Tensor, shading: str, ambient: float) -> torch.Tensor:
    """Colour [M,3] of each sample: its albedo, or Lambert under a point light at `lights` [M,3]
    (on the albedo for 'diffuse', on white for 'textureless')."""
    if shading == "albedo":
        return albedo
    assert normals is not None, "diffuse and textureless shading need normals"
    to_light = torch.nn.functional.normalize(lights - points, dim=-1)
    lambert = (normals * to_light).sum(dim=-1).clamp(min=0.0)
    base = albedo if shading == "diffuse" else torch.ones_like(albedo)
    return base * (ambient + (1.0 - ambient) * lambert)[:, None]


@dataclass
class RenderOutput:
    """Images of a batch of cameras."""

    rgb: torch.Tensor  # [B,H,W,3] composited over the background
    opacity: torch.Tensor  # [B,H,W] accumulated weight: 1 - transmittance through the box
    depth: torch.Tensor  # [B,H,W] sum of weight * distance (divide by opacity for the surface distance)
    normal: torch.Tensor | None  # [B,H,W,3] sum of weight * world normal; None unless computed
    shading: str  # albedo | diffuse | textureless
    background: str  # environment | solid


@dataclass
class _Draws:
    """The random choices of one render (fixed values for previews)."""

    shading: str
    background: str
    solid_colors: torch.Tensor  # [B,3] used when the background is solid
    lights: torch.Tensor  # [B,3] point light positions
    jitter: torch.Tensor  # [R,S] sample offsets within their steps


class VolumeRenderer(torch.nn.Module):
    """Renders a field from `Cameras`; owns the occupancy grid and the learned background.

    Its state_dict holds the background's weights and the occupancy grid, so a checkpoint is
    `field.state_dict()` plus `renderer.state_dict()`.
    """

    def __init__(self, config: RenderConfig | None = None, bound: float = 1.0,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu"):
        super().__init__()
        self.config = config = config or RenderConfig()
        validate_render_config(config)
        self.bound = bound
        self.background = EnvironmentBackground(generator=generator)
        self.occupancy = OccupancyGrid(config.occupancy_resolution, bound, config.occupancy_threshold,
                                       config.occupancy_decay, config.occupancy_samples_per_cell,
                                       config.occupancy_dilation)
        self.to(device)
        self.sampler = make_sampler(config, self.occupancy, bound, device)

    def update_occupancy(self, field: RenderableField, step: int, generator: torch.Generator) -> bool:
        """Refresh the occupancy grid from the field every `occupancy_update_every` steps (and at
        step 0); returns whether it did."""
        if step % self.config.occupancy_update_every != 0:
            return False
        self.occupancy.update(field.density, generator)
        return True

    def render(self, field: RenderableField, cameras: Cameras, height: int, width: int, *,
               generator: torch.Generator | None = None, shading: str = "random",
               background: str = "random", solid_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
               ) -> RenderOutput:
        """Render `cameras` at height x width, differentiably, in chunks of `chunk_rays` rays.

        Training: pass a `generator`; samples are stratified, and `shading` / `background`
        'random' draw the shading mode and environment-or-solid-colour with the configured
        probabilities. Previews: no generator; samples sit mid-step and the light at the camera;
        name the shading ('albedo', 'diffuse', 'textureless') and background ('environment', or
        'solid' with `solid_color`). The normal map is returned with diffuse and textureless
        shading, which need it.
        """
        config = self.config
        device = self.occupancy.density.device  # the renderer's device; cameras may live on the CPU
        rays_per_image = height * width
        draws = self._draw(cameras, rays_per_image, generator, shading, background, solid_color)
        shading, background, n_rays = draws.shading, draws.background, len(cameras) * rays_per_image

        origins, directions = (t.reshape(-1, 3).to(device) for t in generate_rays(cameras, height, width))
        near, far, hit = ray_box_intersection(origins, directions, self.bound)
        jitter = draws.jitter.to(device)
        ray_lights = draws.lights.to(device).repeat_interleave(rays_per_image, dim=0)
        with_normals = shading != "albedo"

        chunk = config.chunk_rays
        recompute = torch.is_grad_enabled() and n_rays > chunk
        parts = []
        for start in range(0, n_rays, chunk):
            piece = slice(start, start + chunk)
            args = (field, origins[piece], directions[piece], near[piece], far[piece], hit[piece],
                    jitter[piece], ray_lights[piece], shading, with_normals)
            # Recomputing each chunk in backward keeps only one chunk's activations alive.
            parts.append(checkpoint(self._render_rays, *args, use_reentrant=False) if recompute
                         else self._render_rays(*args))
        rgb, opacity, depth, normal = (torch.cat(p) for p in zip(*parts))

        if background == "environment":
            behind = self.background(directions)
        else:
            behind = draws.solid_colors.to(device).repeat_interleave(rays_per_image, dim=0)
        rgb = rgb + (1.0 - opacity)[:, None] * behind
        image = (len(cameras), height, width)
        return RenderOutput(rgb=rgb.reshape(*image, 3), opacity=opacity.reshape(image),
                            depth=depth.reshape(image),
                            normal=normal.reshape(*image, 3) if with_normals else None,
                            shading=shading, background=background)

    def _draw(self, cameras: Cameras, rays_per_image: int, generator: torch.Generator | None,
              shading: str, background: str, solid_color: tuple[float, float, float]) -> _Draws:
        """Everything random about one render, drawn up front (see `render`)."""
        config = self.config
        batch = len(cameras)
        solid_colors = torch.tensor(solid_color, dtype=torch.float32).expand(batch, 3)
        if generator is None:
            if "random" in (shading, background):
                raise ValueError("random shading or background needs a generator")
            jitter = torch.full((batch * rays_per_image, config.samples_per_ray), 0.5)
            light_directions = cameras.positions.cpu()
            light_distances = torch.full((batch,), config.light_distance[1])
        else:
            # Always the same draws in the same order, whatever is chosen: the stream a seed
            # gives does not depend on the settings.
            choice = torch.rand(2, generator=generator)
            random_colors = torch.rand(batch, 3, generator=generator)
            light_directions = cameras.positions.cpu() + \
                config.light_jitter * torch.randn(batch, 3, generator=generator)
            low, high = config.light_distance
            light_distances = low + (high - low) * torch.rand(batch, generator=generator)
            jitter = torch.rand(batch * rays_per_image, config.samples_per_ray, generator=generator)
            if shading == "random":
                cumulative = torch.tensor([config.albedo_probability,
                                           config.albedo_probability + config.diffuse_probability])
                shading = SHADINGS[int((choice[0] >= cumulative).sum())]
            if background == "random":
                background = "solid" if choice[1] < config.solid_background_probability else "environment"
                solid_colors = random_colors
        if shading not in SHADINGS:
            raise ValueError(f"unknown shading {shading!r}; choose one of {SHADINGS}")
        if background not in BACKGROUNDS:
            raise ValueError(f"unknown background {background!r}; choose one of {BACKGROUNDS}")
        lights = torch.nn.functional.normalize(light_directions, dim=-1) * light_distances[:, None]
        return _Draws(shading, background, solid_colors, lights, jitter)

    def _render_rays(self, field, origins, directions, near, far, hit, jitter, lights, shading, with_normals):
        """Foreground colour [R,3], opacity [R], depth [R] and normal [R,3] (zeros unless asked)."""
        n_rays = origins.shape[0]
        samples = self.sampler.sample(origins, directions, near, far, hit, jitter)
        rays = samples.ray_indices
        points = origins[rays] + directions[rays] * samples.t_points[:, None]
        density, albedo = field.density_and_albedo(points)
        weights = self.sampler.weights(samples, density, n_rays)
        surface_normals = None
        if with_normals:
            visible = (weights.detach() > self.config.normal_weight_threshold).nonzero()[:, 0]
            surface_normals = points.new_zeros(points.shape).index_put(
                (visible,), field.normals(points[visible], density[visible]))
        color = shade(albedo, surface_normals, points, lights[rays], shading, self.config.ambient)

        def accumulate(values: torch.Tensor) -> torch.Tensor:
            return values.new_zeros(n_rays, values.shape[1]).index_add(0, rays, weights[:, None] * values)

        per_sample = [color, torch.ones_like(density)[:, None], samples.t_points[:, None]]
        if with_normals:
            per_sample.append(surface_normals)
        sums = accumulate(torch.cat(per_sample, dim=1))
        normal = sums[:, 5:8] if with_normals else sums.new_zeros(n_rays, 3)
        return sums[:, :3], sums[:, 3], sums[:, 4], normal
