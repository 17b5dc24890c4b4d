"""Camera batches: picking cameras keeps every field of the same rows together. The view suffix
of a camera."""

import pytest
import torch

from nfsd_backend.nerf.cameras import VIEW_SUFFIXES, orbit_cameras, view_suffix


def test_indexing_picks_the_same_rows_of_every_field():
    cameras = orbit_cameras(torch.tensor([0.0, 90.0, 180.0]), torch.tensor([5.0, 10.0, 15.0]),
                            torch.tensor([1.5, 1.75, 2.0]), torch.tensor([40.0, 50.0, 60.0]))
    picked = cameras[torch.tensor([2, 0])]
    assert len(picked) == 2
    assert picked.azimuth_deg.tolist() == [180.0, 0.0]
    assert picked.elevation_deg.tolist() == [15.0, 5.0]
    assert picked.distance.tolist() == [2.0, 1.5]
    assert torch.equal(picked.c2w, cameras.c2w[[2, 0]])
    assert torch.equal(picked.fovy, cameras.fovy[[2, 0]])
    assert cameras[1:].azimuth_deg.tolist() == [90.0, 180.0]


@pytest.mark.parametrize("azimuth, elevation, expected", [
    (0.0, 10.0, ", front view"), (45.0, 10.0, ", front view"), (-45.0, 0.0, ", front view"),
    (46.0, 10.0, ", side view"), (90.0, 30.0, ", side view"), (-134.0, 0.0, ", side view"),
    (135.0, 0.0, ", back view"), (180.0, 0.0, ", back view"), (-180.0, 0.0, ", back view"), (540.0, 0.0, ", back view"),
    (0.0, 61.0, ", overhead view"), (170.0, 85.0, ", overhead view"), (0.0, 60.0, ", front view"),
])
def test_view_suffixes_are_those_of_the_algorithms(azimuth, elevation, expected):
    """Within 45 deg of the front or the back azimuth, otherwise the side; above 60 deg elevation
    overhead (ALGORITHMS.md)."""
    assert view_suffix(azimuth, elevation) == expected


def test_every_view_suffix_is_reached_and_no_other():
    # The trainer encodes the prompt once per entry of VIEW_SUFFIXES and looks each camera's suffix up there.
    seen = {view_suffix(a, e) for a in torch.arange(-180.0, 180.0, 2.5).tolist() for e in (0.0, 80.0)}
    assert seen == set(VIEW_SUFFIXES)
