"""Camera conventions through the renderer: azimuth 0 looks at the front (-Y side) with +Z up
and +X on the right of the image, as Blender's Front view does."""

import torch

from nfsd_backend.nerf.cameras import orbit_cameras
from nfsd_backend.nerf.renderer import RenderConfig, VolumeRenderer


def octant_colors(points: torch.Tensor) -> torch.Tensor:
    """Red where x > 0, green where y > 0, blue where z > 0."""
    return (points > 0).float()


def quadrants(image: torch.Tensor) -> dict[str, list[float]]:
    """Mean colour of the four image quadrants' inner parts (row 0 is the top)."""
    h, w = image.shape[:2]
    pick = {"top_left": image[h // 4, w // 4], "top_right": image[h // 4, 3 * w // 4],
            "bottom_left": image[3 * h // 4, w // 4], "bottom_right": image[3 * h // 4, 3 * w // 4]}
    return {name: [round(v) for v in pixel.tolist()] for name, pixel in pick.items()}


def test_views_see_the_sides_they_should(analytic_field, ball_density):
    field = analytic_field(ball_density((0.0, 0.0, 0.0), 0.6, peak=300.0, softness=0.002), octant_colors)
    renderer = VolumeRenderer(RenderConfig(samples_per_ray=96), generator=torch.Generator().manual_seed(0))
    cameras = orbit_cameras(torch.tensor([0.0, 90.0, 180.0]), 0.0, 2.0, 45.0)  # front, right, back
    image = renderer.render(field, cameras, 16, 16, shading="albedo", background="solid",
                            solid_color=(0.5, 0.5, 0.5)).rgb
    # Front (from -Y): y < 0 visible (no green); +X on the right, +Z at the top.
    assert quadrants(image[0]) == {"top_left": [0, 0, 1], "top_right": [1, 0, 1],
                                   "bottom_left": [0, 0, 0], "bottom_right": [1, 0, 0]}
    # Right (from +X): x > 0 visible (red); +Y on the right.
    assert quadrants(image[1]) == {"top_left": [1, 0, 1], "top_right": [1, 1, 1],
                                   "bottom_left": [1, 0, 0], "bottom_right": [1, 1, 0]}
    # Back (from +Y): y > 0 visible (green); -X on the right.
    assert quadrants(image[2]) == {"top_left": [1, 1, 1], "top_right": [0, 1, 1],
                                   "bottom_left": [1, 1, 0], "bottom_right": [0, 1, 0]}
