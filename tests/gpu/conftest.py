"""The CUDA test set (`pytest -m gpu tests/gpu`, run on a GPU machine by bench/gpu_check.sh).

Each module is marked `gpu` (`pytestmark`). Every test takes a `device` parameter: its `cuda` variant is skipped where PyTorch sees no CUDA
GPU, and its `cpu` twin runs the same code on the CPU, so CI checks each test's logic (seeding,
moving state between devices, the comparisons) and a GPU run fails only on what is GPU-specific.
Each twin says in its test what it compares with on the CPU.
"""

from __future__ import annotations

import pytest
import torch

from nfsd_backend.diffusion import DiffusionModel, build_tiny_random

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=needs_cuda)]


@pytest.fixture(autouse=True)
def exact_float32_and_one_cpu_thread():
    """TF32 off while a test runs (cuDNN convolutions use it by default), so fp32 on CUDA is fp32;
    one CPU thread, since these tensors are tiny: on a busy 2-core machine two threads made a
    24x24 render 25x slower (OpenMP waiting for a preempted thread; measured 15.7 s against 0.64 s)."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.get_num_threads()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_num_threads(1)
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, threads = before
    torch.set_num_threads(threads)


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """||value - reference|| / ||reference||, in float64 on the CPU."""
    value, reference = value.detach().double().cpu(), reference.detach().double().cpu()
    return float((value - reference).norm() / reference.norm().clamp(min=1e-30))


@pytest.fixture(scope="session")
def tiny_components():
    """The tiny random Stable Diffusion's modules (built once; wrap them with `tiny_model`)."""
    return build_tiny_random()


def tiny_model(components, device: str, dtype: torch.dtype) -> DiffusionModel:
    """A DiffusionModel of copies of the tiny modules on `device` in `dtype` (the originals stay as built)."""
    import copy

    tokenizer, text_encoder, unet, scheduler, vae = components
    return DiffusionModel("tiny-random", tokenizer, copy.deepcopy(text_encoder), copy.deepcopy(unet), scheduler,
                          copy.deepcopy(vae), device=torch.device(device), dtype=dtype)
