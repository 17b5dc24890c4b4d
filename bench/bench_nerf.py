"""Speed of the pure-torch NeRF parts on this machine (run by hand; not a test).

    PYTHONPATH=backend python bench/bench_nerf.py [--repeats 3] [--sizes 64 128]

Prints: the hash grid's points per second (forward + backward, default 16 x 2 x 2^19 grid), and
the time of one render + backward of a default NerfField at each size, per shading mode
(albedo needs the field once per sample, diffuse adds three density queries for the normals of
the visible samples). The occupancy grid is updated once from the initial blob first, as in
training.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time

import torch

from nfsd_backend.nerf.cameras import CameraRanges, sample_cameras
from nfsd_backend.nerf.field import NerfField
from nfsd_backend.nerf.hashgrid import HashGridConfig, TorchHashGrid
from nfsd_backend.nerf.renderer import RenderConfig, VolumeRenderer


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time (all threads) of `repeats` calls, after a warm-up.

    On a machine shared with other jobs the wall time grows with their load; the CPU time much
    less, and divided by the thread count it estimates the wall time on an idle machine.
    """
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def bench_hash_grid(points: int, repeats: int) -> None:
    generator = torch.Generator().manual_seed(0)
    grid = TorchHashGrid(HashGridConfig(), bound=1.0, generator=generator)
    x = torch.rand(points, 3, generator=generator) * 2 - 1

    def step():
        grid.table.grad = None
        grid(x).square().sum().backward()

    wall, cpu = timed(step, repeats)
    idle = cpu / torch.get_num_threads()
    print(f"hash grid fwd+bwd: {points} points in {wall:.2f} s wall, {cpu:.2f} s CPU "
          f"= {points / idle / 1e6:.2f} M points/s on idle cores")


def bench_render(size: int, shading: str, repeats: int) -> None:
    generator = torch.Generator().manual_seed(0)
    field = NerfField(generator=generator)
    renderer = VolumeRenderer(RenderConfig(), generator=generator)
    renderer.update_occupancy(field, step=0, generator=generator)
    cameras = sample_cameras(1, CameraRanges(), generator)

    def step():
        field.zero_grad()
        out = renderer.render(field, cameras, size, size, generator=generator, shading=shading,
                              background="environment")
        out.rgb.mean().backward()

    wall, cpu = timed(step, repeats)
    occupied = renderer.occupancy.occupied.float().mean().item()
    print(f"render+backward {size}x{size} {shading:>11}: {wall:.2f} s wall, {cpu:.2f} s CPU "
          f"({RenderConfig().samples_per_ray} samples/ray, {occupied:.0%} of cells occupied)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--points", type=int, default=2 ** 18)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
          f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.1f}")
    bench_hash_grid(args.points, args.repeats)
    for size in args.sizes:
        for shading in ("albedo", "diffuse"):
            bench_render(size, shading, args.repeats)
    print(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GiB")


if __name__ == "__main__":
    main()
