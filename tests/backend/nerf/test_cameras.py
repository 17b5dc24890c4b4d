"""Camera batches: picking cameras keeps every field of the same rows together."""

import torch

from nfsd_backend.nerf.cameras import orbit_cameras


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
