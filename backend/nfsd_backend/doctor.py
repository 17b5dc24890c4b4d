"""`nfsd doctor`: what this machine offers the backend (Python, torch, CUDA, GPUs and free VRAM,
whether the optional accelerators work, which models are in the local Hugging Face cache)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any

from .errors import EXIT_OK
from .events import EventStream


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object (for the add-on)")


def check_tinycudann() -> str:
    """'ok', or why the pure-torch hash grid will be used."""
    import torch

    if not torch.cuda.is_available():
        return "unavailable: no CUDA device (pure-torch hash grid is used)"
    try:
        import tinycudann  # noqa: F401
    except Exception as exc:  # ImportError, or a broken CUDA build
        return f"unavailable: {type(exc).__name__}: {exc}"
    return "ok"


def check_nerfacc() -> str:
    """'ok', or why the pure-torch renderer will be used. nerfacc's sampler needs CUDA."""
    import torch

    if not torch.cuda.is_available():
        return "unavailable: no CUDA device (pure-torch renderer is used)"
    try:
        import nerfacc

        nerfacc.OccGridEstimator(roi_aabb=[-1, -1, -1, 1, 1, 1], resolution=8).to("cuda")
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}: {exc}"
    return "ok"


def cached_models() -> list[str]:
    """Diffusion models (repos with a model_index.json) in the local Hugging Face cache."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # no cache folder yet
        return []
    names = []
    for repo in info.repos:
        if repo.repo_type == "model" and any(
                f.file_name == "model_index.json" for rev in repo.revisions for f in rev.files):
            names.append(repo.repo_id)
    return sorted(names)


def report() -> dict[str, Any]:
    import torch

    # Imported here: config imports the field, whose hash grid asks this module about tinycudann.
    from .config import BUILTIN_MODELS

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            gpus.append({"index": index, "name": torch.cuda.get_device_name(index),
                         "vram_total_gb": round(total / 2**30, 2), "vram_free_gb": round(free / 2**30, 2)})
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "gpus": gpus,
        "tinycudann": check_tinycudann(),
        "nerfacc": check_nerfacc(),
        "cached_models": cached_models(),
        "builtin_models": list(BUILTIN_MODELS),
    }


def run(args: argparse.Namespace, events: EventStream) -> int:
    info = report()
    if args.json:
        print(json.dumps(info))
        return EXIT_OK
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key == "gpus":
            value = "; ".join(f"{g['name']} ({g['vram_free_gb']} of {g['vram_total_gb']} GB free)"
                              for g in value) or "none"
        elif isinstance(value, list):
            value = ", ".join(value) or "none"
        print(f"{key.ljust(width)}  {value}", file=sys.stdout)
    return EXIT_OK
