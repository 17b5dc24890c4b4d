"""Section 3: the hash grid, the field and the volume renderer, forward + backward, in points per
second; the CUDA accelerators (tinycudann's encoding, nerfacc's marcher) side by side with the
pure-torch code when they work on the device.

The field is a fresh `NerfField` (Magic3D's blob) and the occupancy grid has been updated once
from it, as at the start of training: the renderer then skips the empty space around the blob.
"""

from __future__ import annotations

import torch

from harness import OWN_CPU_NOTE, Table, count, log, time_runs
from nfsd_backend.doctor import check_nerfacc, check_tinycudann
from nfsd_backend.nerf.cameras import orbit_cameras
from nfsd_backend.nerf.field import FieldConfig, NerfField
from nfsd_backend.nerf.hashgrid import HashGridConfig
from nfsd_backend.nerf.renderer import RenderConfig, VolumeRenderer


def backends(device: torch.device) -> list[tuple[str, str]]:
    """(encoding, sampler) pairs to measure: pure torch, and the accelerators that work here."""
    pairs = [("torch", "torch")]
    if device.type == "cuda":
        tcnn = "tcnn" if check_tinycudann() == "ok" else "torch"
        nerfacc = "nerfacc" if check_nerfacc() == "ok" else "torch"
        if (tcnn, nerfacc) != ("torch", "torch"):
            pairs.append((tcnn, nerfacc))
    return pairs


def make_field(encoding: str, sampler: str, log2_table_size: int,
               device: torch.device) -> tuple[NerfField, VolumeRenderer]:
    generator = torch.Generator().manual_seed(0)
    grid = HashGridConfig(backend=encoding, log2_table_size=log2_table_size)
    field = NerfField(FieldConfig(encoding=grid), generator=generator, device=device)
    renderer = VolumeRenderer(RenderConfig(sampler=sampler), generator=generator, device=device)
    renderer.update_occupancy(field, 0, generator)
    return field, renderer


class PointCounter:
    """Counts the points the field's encoding is asked for (a forward hook)."""

    def __init__(self, field: NerfField):
        self.points = 0
        self.handle = field.encoding.register_forward_hook(self.hook)

    def hook(self, module, inputs, output) -> None:
        self.points += inputs[0].shape[0]

    def remove(self) -> None:
        self.handle.remove()


def render_step(field, renderer, size: int, shading: str, seed: int = 0) -> None:
    """One training-like render of one camera and the backward of a loss on its pixels. The same
    seed gives the same samples, so the counted points are the timed points."""
    cameras = orbit_cameras(30.0, 15.0, 2.0, 50.0)
    cameras.c2w = cameras.c2w.to(field.density_head.weight.device)
    out = renderer.render(field, cameras, size, size, generator=torch.Generator().manual_seed(seed),
                          shading=shading, background="solid")
    if torch.is_grad_enabled():
        out.rgb.square().sum().backward()


def run(points: int, render_sizes: list[int], log2_table_size: int, repeats: int,
        device: torch.device) -> list[Table]:
    table = Table(f"Hash grid, field and renderer: forward + backward ({device.type}, table 2^{log2_table_size})",
                  ["encoding / sampler", "what", "size", "points", "s: median (min-max)", "points / s",
                   "pixels / s", "own CPU"])
    for encoding, sampler in backends(device):
        field, renderer = make_field(encoding, sampler, log2_table_size, device)
        label = f"{encoding} / {sampler}"
        generator = torch.Generator().manual_seed(1)
        xyz = (torch.rand(points, 3, generator=generator) * 2 - 1).to(device)

        def grid() -> None:
            field.encoding(xyz).square().sum().backward()

        def whole_field() -> None:
            density, albedo = field.density_and_albedo(xyz)
            (density.sum() + albedo.sum()).backward()

        for what, fn in (("hash grid", grid), ("field (grid + MLP)", whole_field)):
            log(f"nerf {label} {what} {points} points: {repeats} runs")
            timing = time_runs(fn, repeats, device)
            table.add(label, what, "—", points, timing.cell(), count(points / timing.median), "—", timing.cpu_share())
        for shading in ("albedo", "textureless"):
            for size in render_sizes:
                counter = PointCounter(field)
                with torch.no_grad():
                    render_step(field, renderer, size, shading)
                counter.remove()
                log(f"nerf {label} render {shading} {size}x{size}: {repeats} runs")
                timing = time_runs(lambda: render_step(field, renderer, size, shading), repeats, device)
                table.add(label, f"render, {shading} shading", f"{size}x{size}", counter.points, timing.cell(),
                          count(counter.points / timing.median), count(size * size / timing.median),
                          timing.cpu_share())
        del field, renderer
    table.notes += [
        f"median of {repeats} runs after one warm-up. points = positions the hash grid encodes per run "
        "(the renderer's samples that survive the occupancy grid, plus 3 per visible sample for the "
        "finite-difference normals of textureless/diffuse shading).",
        "render = one camera, 64 samples per ray, solid background, loss on the pixels, backward into the "
        "field (the renderer recomputes each chunk of rays in backward when there is more than one).",
        "a 512x512 render has 64x the rays of 64x64: its cost is about 64x the 64x64 row.",
        OWN_CPU_NOTE,
    ]
    return [table]
