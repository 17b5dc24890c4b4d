"""View prompts by azimuth (switch and interpolate) and Perp-Neg's weights for a camera."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from nfsd_backend.config import GuidanceConfig
from nfsd_backend.guidance.views import BACK, FRONT, OVERHEAD, SIDE, ViewPrompts, perp_neg_weights, view_blend
from nfsd_backend.nerf.cameras import VIEW_SUFFIXES, view_suffix


def view_prompts(**settings) -> ViewPrompts:
    g = torch.Generator().manual_seed(0)
    views = {suffix: torch.randn(1, 3, 5, generator=g, dtype=torch.float64) for suffix in VIEW_SUFFIXES}
    return ViewPrompts(views, uncond=torch.zeros(1, 3, 5, dtype=torch.float64),
                       neg=torch.ones(1, 3, 5, dtype=torch.float64), settings=GuidanceConfig(**settings))


@pytest.mark.parametrize("azimuth, view", [(0.0, FRONT), (90.0, SIDE), (-90.0, SIDE), (270.0, SIDE),
                                           (180.0, BACK), (-180.0, BACK), (540.0, BACK)])
def test_interpolated_embedding_equals_the_switch_at_the_bin_centres(azimuth, view):
    switch, interpolate = view_prompts(), view_prompts(view_prompts="interpolate")
    assert torch.equal(interpolate.for_camera(azimuth, 10.0).cond, switch.for_camera(azimuth, 10.0).cond)
    assert torch.equal(interpolate.for_camera(azimuth, 10.0).cond, interpolate.views[view])


def test_interpolated_embedding_is_the_blend_between_neighbouring_views():
    vp = view_prompts(view_prompts="interpolate")
    torch.testing.assert_close(vp.for_camera(30.0, 0.0).cond, 2 / 3 * vp.views[FRONT] + 1 / 3 * vp.views[SIDE])
    torch.testing.assert_close(vp.for_camera(-135.0, 0.0).cond, 0.5 * vp.views[SIDE] + 0.5 * vp.views[BACK])


def test_interpolated_embedding_is_continuous_in_azimuth_and_the_switch_is_not():
    step = 0.05
    azimuths = [-360.0 + i * step for i in range(round(720 / step) + 1)]  # across 0, +-90 and the +-180 seam
    for mode, continuous in (("interpolate", True), ("switch", False)):
        vp = view_prompts(view_prompts=mode)
        conds = torch.cat([vp.for_camera(a, 0.0).cond for a in azimuths])
        jumps = (conds[1:] - conds[:-1]).flatten(1).norm(dim=1)
        # A blend changes by at most |step / 90| times the largest difference of two view embeddings.
        largest = max((vp.views[a] - vp.views[b]).norm() for a in (FRONT, SIDE, BACK) for b in (FRONT, SIDE, BACK))
        assert (jumps.max() <= largest * step / 90 * 1.001) == continuous


def test_interpolation_weights_are_non_negative_and_sum_to_one():
    for azimuth in torch.linspace(-400.0, 400.0, 1601).tolist():
        blend = view_blend(azimuth, 20.0, "interpolate")
        assert set(blend) <= {FRONT, SIDE, BACK} and 1 <= len(blend) <= 2
        assert all(w > 0 for w in blend.values()) and math.isclose(sum(blend.values()), 1.0, abs_tol=1e-12)


@pytest.mark.parametrize("mode", ["switch", "interpolate"])
def test_overhead_stays_a_switch_without_negatives(mode):
    vp = view_prompts(view_prompts=mode, perp_neg=True)
    for azimuth in (0.0, 37.0, 120.0):
        p = vp.for_camera(azimuth, 75.0)
        assert p.cond is vp.views[OVERHEAD] and p.perp_neg == ()
    assert view_suffix(0.0, 75.0) == OVERHEAD


def test_perp_neg_weights_are_the_weight_functions_of_the_azimuth():
    settings = GuidanceConfig()
    f = lambda a, b, c, r: a * math.exp(-b * r) + c  # noqa: E731
    front = perp_neg_weights(0.0, 0.0, settings)  # u = 0: front prompt at r = 1, side at r = 0
    assert front[FRONT] == pytest.approx(f(4, 0.5, -2.426, 1.0)) and front[FRONT] < 1e-3
    assert front[SIDE] == pytest.approx(f(4, 0.5, -2.426, 0.0))
    back = perp_neg_weights(180.0, 0.0, settings)  # u = 2: both at r = 0
    assert back == pytest.approx({SIDE: f(1, 0.5, -0.606, 0.0), FRONT: f(1, 0.5, 0.967, 0.0)})
    third = perp_neg_weights(-60.0, 0.0, settings)  # u = 2/3
    assert third == pytest.approx({FRONT: f(4, 0.5, -2.426, 1 / 3), SIDE: f(4, 0.5, -2.426, 2 / 3)})
    # The two halves meet at the side (u = 1) within the reference constants' rounding.
    left, right = perp_neg_weights(89.999, 0.0, settings), perp_neg_weights(90.0, 0.0, settings)
    assert abs(left[FRONT] - right[FRONT]) < 1e-3 and abs(left[SIDE] - right[SIDE]) < 1e-3
    # A weight function below zero is clamped: a negative never becomes a second positive.
    flipped = dataclasses.replace(settings, perp_neg_front_half_side=(-1.0, 0.0, 0.0))
    assert perp_neg_weights(0.0, 0.0, flipped)[SIDE] == 0.0


def test_a_camera_gets_the_other_views_as_negatives_and_never_its_own_switched_view():
    interpolate = view_prompts(view_prompts="interpolate", perp_neg=True)
    p = interpolate.for_camera(30.0, 0.0)
    weights = perp_neg_weights(30.0, 0.0, interpolate.settings)
    assert [(e is interpolate.views[s], w) for (e, w), s in zip(p.perp_neg, (FRONT, SIDE))] == \
        [(True, weights[FRONT]), (True, weights[SIDE])]
    switch = view_prompts(perp_neg=True)
    assert [e is switch.views[SIDE] for e, _ in switch.for_camera(30.0, 0.0).perp_neg] == [True]  # front: side only
    assert [e is switch.views[FRONT] for e, _ in switch.for_camera(100.0, 0.0).perp_neg] == [True]  # side: front only
    assert len(switch.for_camera(170.0, 0.0).perp_neg) == 2  # back: side and front
    assert view_prompts().for_camera(30.0, 0.0).perp_neg == ()  # Perp-Neg off


def test_zero_weight_functions_give_no_negatives():
    zero = (0.0, 0.0, 0.0)
    vp = view_prompts(view_prompts="interpolate", perp_neg=True, perp_neg_front_half_front=zero,
                      perp_neg_front_half_side=zero, perp_neg_back_half_side=zero, perp_neg_back_half_front=zero)
    assert all(vp.for_camera(a, 0.0).perp_neg == () for a in (0.0, 45.0, 135.0, 180.0))
