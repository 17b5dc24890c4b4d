"""Choosing the CUDA accelerators (tinycudann, nerfacc) or their pure-torch twins."""

import pytest

from nfsd_backend.errors import CudaUnavailable
from nfsd_backend.nerf.backends import accelerator_status, choose_backend


@pytest.mark.parametrize("accelerator", ["tcnn", "nerfacc"])
def test_choice(accelerator):
    assert choose_backend("auto", accelerator, "cpu", "ok") == "torch"
    assert choose_backend("auto", accelerator, "cuda", "ok") == accelerator
    assert choose_backend("auto", accelerator, "cuda", "unavailable: ImportError: missing") == "torch"
    assert choose_backend("torch", accelerator, "cuda", "ok") == "torch"
    assert choose_backend(accelerator, accelerator, "cuda:0", "ok") == accelerator
    with pytest.raises(CudaUnavailable, match="ImportError: missing"):
        choose_backend(accelerator, accelerator, "cuda", "unavailable: ImportError: missing")
    with pytest.raises(CudaUnavailable, match="not on a CUDA device"):
        choose_backend(accelerator, accelerator, "cpu", "ok")
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        choose_backend("fast", accelerator, "cpu", "ok")


def test_the_capability_check_runs_only_for_cuda():
    calls = []

    def check():
        calls.append(1)
        return "ok"

    assert accelerator_status(check, "cpu") == "no CUDA device" and calls == []
    assert accelerator_status(check, "cuda") == "ok" and calls == [1]
