"""Choosing between a CUDA-only accelerator (tinycudann, nerfacc) and its pure-PyTorch twin.

The accelerators are optional: the pure-torch code computes the same kind of thing everywhere
(nerfacc marches at a fixed step, the torch sampler spreads its samples over each ray). `auto`
takes the accelerator when the device is CUDA and the accelerator's capability check
(`doctor.check_tinycudann` / `doctor.check_nerfacc`) says 'ok'; naming the accelerator
explicitly where it cannot run is a user error, not a silent fallback.
"""

from __future__ import annotations

import torch

from ..errors import CudaUnavailable


def choose_backend(requested: str, accelerator: str, device: torch.device | str, status: str) -> str:
    """`accelerator` or 'torch'. `requested` is 'auto', 'torch' or the accelerator's name;
    `status` is the capability check's answer: 'ok' or why the accelerator cannot run."""
    choices = ("auto", "torch", accelerator)
    if requested not in choices:
        raise ValueError(f"unknown backend {requested!r}; choose one of {', '.join(choices)}")
    usable = torch.device(device).type == "cuda" and status == "ok"
    if requested == accelerator and not usable:
        reason = status if status != "ok" else "the field is not on a CUDA device"
        raise CudaUnavailable(f"{accelerator} was requested but cannot be used ({reason}); "
                              "choose auto or torch instead.")
    return accelerator if usable and requested != "torch" else "torch"


def accelerator_status(check, device: torch.device | str) -> str:
    """Run the capability check `check` only for a CUDA device (it may import CUDA code)."""
    return check() if torch.device(device).type == "cuda" else "no CUDA device"
