"""View-dependent prompts: the text embedding a camera gets, and Perp-Neg's negatives for it
(docs/methods.md, "Perp-Neg and view prompts").

Azimuth 0 is the front (nerf/cameras.py). With u = |azimuth| / 90 in [0, 2] (0 front, 1 side,
2 back), the settings' `view_prompts` chooses:
    switch       the suffix of the camera's 90-degree bin (`view_suffix`): front, side or back
    interpolate  u < 1: (1 - u) front + u side;  u >= 1: (2 - u) side + (u - 1) back
                 (weights that sum to one, equal to the switch at the bin centres 0, 90, 180)
and above 60 degrees of elevation both use the overhead prompt alone.

Perp-Neg's negatives are the front and side prompts, weighted by f(r) = max(0, a exp(-b r) + c)
with one (a, b, c) per setting (threestudio's reference values; the Perp-Neg paper's weight
functions decay as the camera leaves the view a negative names):
    u < 1:   front: f_front_half_front(1 - u),   side: f_front_half_side(u)
    u >= 1:  side:  f_back_half_side(2 - u),     front: f_back_half_front(2 - u)
An overhead camera has no negatives, and a negative equal to the camera's own prompt (a switched
view naming itself) is left out: its perpendicular part is zero, it would cost an evaluation for
nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ..config import GuidanceConfig
from ..nerf.cameras import VIEW_SUFFIXES, view_suffix
from .base import Prompts

FRONT, SIDE, BACK, OVERHEAD = VIEW_SUFFIXES


def _side_units(azimuth_deg: float) -> float:
    """u = |azimuth| / 90 with the azimuth wrapped to [-180, 180): 0 front, 1 side, 2 back."""
    return abs((azimuth_deg + 180.0) % 360.0 - 180.0) / 90.0


def view_blend(azimuth_deg: float, elevation_deg: float, view_prompts: str) -> dict[str, float]:
    """The camera's prompt as weights over VIEW_SUFFIXES (the non-zero ones), summing to one."""
    suffix = view_suffix(azimuth_deg, elevation_deg)
    if view_prompts == "switch" or suffix == OVERHEAD:
        return {suffix: 1.0}
    u = _side_units(azimuth_deg)
    blend = {FRONT: 1.0 - u, SIDE: u} if u < 1.0 else {SIDE: 2.0 - u, BACK: u - 1.0}
    return {name: weight for name, weight in blend.items() if weight != 0.0}


def _decay(coefficients: tuple[float, float, float], r: float) -> float:
    a, b, c = coefficients
    return max(0.0, a * math.exp(-b * r) + c)


def perp_neg_weights(azimuth_deg: float, elevation_deg: float, settings: GuidanceConfig) -> dict[str, float]:
    """Perp-Neg's weight per negative view prompt for this camera (module docstring)."""
    if view_suffix(azimuth_deg, elevation_deg) == OVERHEAD:
        return {}
    u = _side_units(azimuth_deg)
    if u < 1.0:
        return {FRONT: _decay(settings.perp_neg_front_half_front, 1.0 - u),
                SIDE: _decay(settings.perp_neg_front_half_side, u)}
    return {SIDE: _decay(settings.perp_neg_back_half_side, 2.0 - u),
            FRONT: _decay(settings.perp_neg_back_half_front, 2.0 - u)}


@dataclass
class ViewPrompts:
    """The encoded view prompts of a run, turned into each camera's `Prompts`."""

    views: dict[str, Tensor]  # suffix (VIEW_SUFFIXES) -> embedding of prompt + suffix, batch 1
    uncond: Tensor  # the empty prompt
    neg: Tensor  # NFSD's negative prompt
    settings: GuidanceConfig  # view_prompts, perp_neg and its weights

    def for_camera(self, azimuth_deg: float, elevation_deg: float) -> Prompts:
        blend = view_blend(azimuth_deg, elevation_deg, self.settings.view_prompts)
        if len(blend) == 1:
            cond = self.views[next(iter(blend))]
        else:
            cond = sum(weight * self.views[name] for name, weight in blend.items())  # type: ignore[assignment]
        negatives: tuple[tuple[Tensor, float], ...] = ()
        if self.settings.perp_neg:
            negatives = tuple((self.views[name], weight)
                              for name, weight in perp_neg_weights(azimuth_deg, elevation_deg, self.settings).items()
                              if weight > 0.0 and blend != {name: 1.0})
        return Prompts(cond=cond, uncond=self.uncond, neg=self.neg, perp_neg=negatives)
