"""The trainer's pieces that run without a model: the preview sheet's layout."""

from __future__ import annotations

from PIL import Image

from nfsd_backend.train import preview_sheet


def test_preview_sheet_draws_the_front_large_and_each_strip_view_at_its_rendered_size():
    calls = []

    def render_views(cameras, size):
        # One flat image per camera, its red channel telling the camera's azimuth.
        calls.append((cameras.azimuth_deg.tolist(), size))
        return [Image.new("RGB", (size, size), (int(a) % 256, size, 0)) for a in cameras.azimuth_deg.tolist()]

    sheet = preview_sheet(render_views, 64)
    assert calls == [([0.0], 64), ([0.0, 90.0, 180.0, 270.0], 32)]
    assert sheet.size == (128, 160)
    assert sheet.getpixel((5, 5)) == sheet.getpixel((122, 122)) == (0, 64, 0)
    for i, azimuth in enumerate((0, 90, 180, 270)):
        assert sheet.getpixel((i * 32 + 1, 129)) == sheet.getpixel((i * 32 + 30, 158)) == (azimuth % 256, 32, 0)
