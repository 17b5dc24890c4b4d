"""The guidance rules: each turns (x, prompts, step) into an update direction g (ALGORITHMS.md)."""

from __future__ import annotations

from ..config import GuidanceConfig, from_dict, resolve_guidance, validate_guidance
from ..diffusion.denoiser import Denoiser
from .base import Guidance, GuidanceStep, Prompts, distillation_loss
from .nfsd import NFSDGuidance
from .sdi import SDIGuidance
from .sds import SDSGuidance

GUIDANCE_CLASSES: dict[str, type[Guidance]] = {"sds": SDSGuidance, "nfsd": NFSDGuidance, "sdi": SDIGuidance}


def make_guidance(method: str, denoiser: Denoiser, **settings) -> Guidance:
    """The rule `method` ("sds" | "nfsd" | "sdi") with `settings` named as in config.json's
    `guidance` section; unset ones take the method's paper default (e.g. guidance_scale: SDS 100,
    NFSD 7.5, SDI 7.5). Raises BadConfig for unknown names or values out of range."""
    config = resolve_guidance(from_dict(GuidanceConfig, {"method": method, **settings}, "guidance"))
    validate_guidance(config)
    return GUIDANCE_CLASSES[config.method](denoiser, config)


__all__ = ["Guidance", "GuidanceStep", "Prompts", "distillation_loss", "make_guidance",
           "NFSDGuidance", "SDIGuidance", "SDSGuidance"]
