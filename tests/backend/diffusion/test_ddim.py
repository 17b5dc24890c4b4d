"""DDIM inversion then DDIM sampling returns the start latent; eps from v-prediction."""

from __future__ import annotations

import torch

from nfsd_backend.diffusion import ddim_timesteps, ddim_walk, eps_from_v

from ..analytic import GaussianDenoiser


def test_leading_grid_of_stable_diffusion():
    assert ddim_timesteps(10) == [1, 101, 201, 301, 401, 501, 601, 701, 801, 901]
    assert ddim_timesteps(4) == [1, 251, 501, 751]


def round_trip_error(num_steps: int) -> float:
    den = GaussianDenoiser(sigma=0.5)
    mu = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = mu + 0.5 * torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    path = [0] + [round(i * 900 / num_steps) for i in range(1, num_steps + 1)]
    z, evals = ddim_walk(den, x, path, cond=mu)  # unguided: the conditional eps only
    assert evals == num_steps
    back, _ = ddim_walk(den, z, path[::-1], cond=mu)
    return (back - x).abs().max().item()


def test_inversion_then_sampling_returns_the_start_and_error_shrinks():
    errors = [round_trip_error(n) for n in (5, 20, 80, 320)]
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[0] / errors[3] > 20  # first-order: the error falls about as 1 / steps
    assert errors[3] < 0.05


def test_inversion_reaches_the_marginal_of_the_noise_level():
    """For Gaussian data the DDIM ODE is a pure scaling: inverting level-0 latents to level t
    multiplies them by sqrt(var_t / var_0), var_k = abar_k sigma^2 + 1 - abar_k."""
    den = GaussianDenoiser(sigma=0.5)
    mu = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    x = 0.5 * torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    path = list(range(0, 801, 2))
    z, _ = ddim_walk(den, x, path, cond=mu)
    var = lambda k: den.alphas_cumprod[k] * 0.25 + 1 - den.alphas_cumprod[k]  # noqa: E731
    torch.testing.assert_close(z, x * (var(800) / var(0)).sqrt(), rtol=0.01, atol=0.01)


def test_eta_noise_is_seeded_and_only_for_inversion():
    den = GaussianDenoiser()
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    mu = torch.zeros_like(x)
    a, _ = ddim_walk(den, x, [0, 101, 301], mu, eta=0.3, generator=torch.Generator().manual_seed(4))
    b, _ = ddim_walk(den, x, [0, 101, 301], mu, eta=0.3, generator=torch.Generator().manual_seed(4))
    c, _ = ddim_walk(den, x, [0, 101, 301], mu, eta=0.0)
    assert torch.equal(a, b) and not torch.equal(a, c)
    try:
        ddim_walk(den, x, [301, 101], mu, eta=0.3)
    except ValueError:
        pass
    else:
        raise AssertionError("eta noise on a sampling path must be refused")


def test_eps_from_v_hand_computed():
    # abar = 0.64: a = 0.8, b = 0.6. x0 = 1, e = 2 -> z = 0.8 + 1.2 = 2.0, v = a e - b x0 = 1.6 - 0.6 = 1.0
    alphas_cumprod = torch.tensor([0.9, 0.64])
    eps = eps_from_v(torch.tensor([[1.0]]), torch.tensor([[2.0]]), torch.tensor([1]), alphas_cumprod)
    assert torch.allclose(eps, torch.tensor([[2.0]]))  # = a v + b z = 0.8 + 1.2
