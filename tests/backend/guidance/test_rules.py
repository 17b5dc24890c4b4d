"""Each guidance rule against ALGORITHMS.md, computed independently with an analytic denoiser."""

from __future__ import annotations

import math

import pytest
import torch

from nfsd_backend.errors import BadConfig
from nfsd_backend.guidance import Prompts, distillation_loss, make_guidance

from ..analytic import GaussianDenoiser

SHAPE = (1, 4, 8, 8)


def prompts(shape=SHAPE, dtype=torch.float64) -> Prompts:
    g = torch.Generator().manual_seed(123)
    mu = lambda: torch.randn((1, *shape[1:]), generator=g, dtype=dtype)  # noqa: E731
    return Prompts(cond=mu(), uncond=mu(), neg=mu())


def latents(shape=SHAPE, seed=7, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def expected_t_and_noise(seed: int, shape, t_min=0.02, t_max=0.98):
    """The draws the rules promise: one uniform per sample for t, then the Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = round(t_min * 1000), round(t_max * 1000)
    u = torch.rand(shape[0], generator=g)
    t = (lo + torch.floor(u * (hi - lo + 1))).long()
    noise = torch.randn(shape, generator=g, dtype=torch.float32).double()
    return t, noise


def ab(den, t, x):
    abar = den.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    return abar.sqrt(), (1 - abar).sqrt()


def test_sds_matches_formula():
    den, p, x = GaussianDenoiser(), prompts(), latents()
    rule = make_guidance("sds", den)
    assert rule.settings.guidance_scale == 100.0
    out = rule.direction(x, p, step=0, total_steps=10, generator=torch.Generator().manual_seed(5))
    t, e = expected_t_and_noise(5, SHAPE)
    a, b = ab(den, t, x)
    z = a * x + b * e
    eps_s = den.eps(z, t, p.uncond) + 100.0 * (den.eps(z, t, p.cond) - den.eps(z, t, p.uncond))
    assert torch.equal(out.timestep, t)
    torch.testing.assert_close(out.grad, (1 - a**2) * (eps_s - e), rtol=1e-10, atol=1e-10)
    assert out.model_evals == 2 == den.rows_evaluated and den.calls == 1


@pytest.mark.parametrize("t_frac, expect_neg", [(0.1, False), (0.199, False), (0.2, True), (0.7, True)])
def test_nfsd_matches_formula_on_both_sides_of_threshold(t_frac, expect_neg):
    den, p, x = GaussianDenoiser(), prompts(), latents()
    rule = make_guidance("nfsd", den, t_min=t_frac, t_max=t_frac)
    out = rule.direction(x, p, step=0, total_steps=10, generator=torch.Generator().manual_seed(9))
    t, e = expected_t_and_noise(9, SHAPE, t_frac, t_frac)
    assert t.item() == round(t_frac * 1000) and torch.equal(out.timestep, t)
    a, b = ab(den, t, x)
    z = a * x + b * e
    eps_u, eps_y, eps_n = (den.eps(z, t, c) for c in (p.uncond, p.cond, p.neg))
    delta_d = eps_u - eps_n if t.item() >= 200 else eps_u
    torch.testing.assert_close(out.grad, (1 - a**2) * (delta_d + 7.5 * (eps_y - eps_u)), rtol=1e-10, atol=1e-10)
    assert out.model_evals == den.rows_evaluated == (3 if expect_neg else 2)
    assert den.calls == 1  # every condition in one batch


def test_nfsd_batch_evaluates_negative_only_where_needed():
    shape = (16, 4, 4, 4)
    den, p, x = GaussianDenoiser(), prompts(shape), latents(shape)
    rule = make_guidance("nfsd", den, t_min=0.05, t_max=0.4)
    out = rule.direction(x, p, 0, 10, torch.Generator().manual_seed(3))
    t, e = expected_t_and_noise(3, shape, 0.05, 0.4)
    high = (t >= 200)
    assert 0 < high.sum() < 16
    a, b = ab(den, t, x)
    z = a * x + b * e
    eps_u, eps_y, eps_n = (den.eps(z, t, c.expand(16, -1, -1, -1)) for c in (p.uncond, p.cond, p.neg))
    delta_d = torch.where(high.reshape(-1, 1, 1, 1), eps_u - eps_n, eps_u)
    torch.testing.assert_close(out.grad, (1 - a**2) * (delta_d + 7.5 * (eps_y - eps_u)), rtol=1e-10, atol=1e-10)
    assert out.model_evals == den.rows_evaluated == 32 + int(high.sum())


def reference_delta(den, z, t, p, negatives=()):
    """d_C of docs/methods.md written out: eps_y - eps_0, less each negative's part perpendicular
    to it, sample by sample."""
    eps_0, d_y = den.eps(z, t, p.uncond), den.eps(z, t, p.cond) - den.eps(z, t, p.uncond)
    d_c = d_y.clone()
    for embedding, weight in negatives:
        d_i = den.eps(z, t, embedding) - eps_0
        for n in range(z.shape[0]):
            d_c[n] -= weight * (d_i[n] - (d_i[n] * d_y[n]).sum() / (d_y[n] * d_y[n]).sum() * d_y[n])
    return d_c


def reference_eps_s(den, z, t, p, s, negatives=()):
    return den.eps(z, t, p.uncond) + s * reference_delta(den, z, t, p, negatives)


def reference_sdi(den, p, x, step, total, seed, n_inv=10, s_inv=-7.5, eta=0.3, s=7.5, negatives=()):
    """SDI written out from ALGORITHMS.md, step by step, without the package's DDIM code; with
    Perp-Neg `negatives`, every guided prediction (inversion and forward) uses them."""
    T = 1000
    t = round(T * (0.25 + (0.98 - 0.25) * (1 - step / total)))
    g = torch.Generator().manual_seed(seed)
    d = int(torch.rand(1, generator=g).item() * (T // n_inv))
    grid = [1 + 100 * i for i in range(n_inv)]
    path = [0] + [k for k in grid if k < t] + [min(t + d, T - 1)]
    abar = den.alphas_cumprod
    z = x.clone()
    for k, k2 in zip(path[:-1], path[1:]):
        tk = torch.full((x.shape[0],), k)
        e_hat = reference_eps_s(den, z, tk, p, s_inv, negatives)
        x0 = (z - (1 - abar[k]).sqrt() * e_hat) / abar[k].sqrt()
        sigma = math.sqrt((1 - abar[k]) / (1 - abar[k2]) * (1 - abar[k2] / abar[k]))
        noise = torch.randn(x.shape, generator=g, dtype=torch.float32).double()
        z = abar[k2].sqrt() * x0 + (1 - abar[k2]).sqrt() * e_hat + eta * sigma * noise
    tt = torch.full((x.shape[0],), t)
    a, b = abar[t].sqrt(), (1 - abar[t]).sqrt()
    k_noise = (z - a * x) / b
    eps_s = reference_eps_s(den, z, tt, p, s, negatives)
    return t, path, (1 - abar[t]) * (eps_s - k_noise)


@pytest.mark.parametrize("step", [0, 37, 99])
def test_sdi_matches_formula(step):
    den, p, x = GaussianDenoiser(), prompts(), latents()
    rule = make_guidance("sdi", den)
    out = rule.direction(x, p, step=step, total_steps=100, generator=torch.Generator().manual_seed(11))
    t, path, grad = reference_sdi(den, p, x, step, 100, seed=11)
    assert out.timestep.item() == t
    torch.testing.assert_close(out.grad, grad, rtol=1e-9, atol=1e-9)
    inversion_steps = len(path) - 1
    assert inversion_steps == math.ceil(t / 100) + 1
    assert out.model_evals == den.rows_evaluated == 2 * inversion_steps + 2


def test_sdi_timestep_decays_linearly_from_t_hi_to_t_lo():
    rule = make_guidance("sdi", GaussianDenoiser())
    assert rule.timestep(0, 1000) == 980
    assert rule.timestep(500, 1000) == round(1000 * (0.25 + 0.73 * 0.5))
    assert rule.timestep(1000, 1000) == 250


def test_same_seed_gives_sds_and_nfsd_the_same_timesteps_and_noise():
    shape = (4, 4, 8, 8)
    seen = {}
    for method in ("sds", "nfsd"):
        den = GaussianDenoiser()
        captured = []
        original = den.predict_eps
        den.predict_eps = lambda z, t, e, o=original: (captured.append((z[:4].clone(), t[:4].clone())), o(z, t, e))[1]
        make_guidance(method, den).direction(latents(shape), prompts(shape), 0, 10, torch.Generator().manual_seed(1))
        seen[method] = captured[0]
    torch.testing.assert_close(seen["sds"][0], seen["nfsd"][0], rtol=0, atol=0)
    assert torch.equal(seen["sds"][1], seen["nfsd"][1])


def test_t_max_is_annealed_from_t_anneal_at():
    den = GaussianDenoiser()
    rule = make_guidance("nfsd", den, t_anneal_at=0.2, t_max_annealed=0.5)
    g = torch.Generator().manual_seed(0)
    early = rule.sample_timesteps(4000, step=19, total_steps=100, generator=g)
    late = rule.sample_timesteps(4000, step=20, total_steps=100, generator=g)
    assert early.min() >= 20 and early.max() == 980
    assert late.min() >= 20 and late.max() == 500


@pytest.mark.parametrize("weighting", ["sds", "uniform", "fantasia3d", "x0"])
def test_weightings(weighting):
    den = GaussianDenoiser()
    rule = make_guidance("sds", den, weighting=weighting)
    t = torch.tensor([100, 900])
    x = torch.zeros(2, 1, 1, 1, dtype=torch.float64)
    abar = den.alphas_cumprod[t]
    expected = {"sds": 1 - abar, "uniform": torch.ones(2, dtype=torch.float64),
                "fantasia3d": abar.sqrt() * (1 - abar), "x0": (1 - abar).sqrt() / abar.sqrt()}[weighting]
    torch.testing.assert_close(rule.weight(t, x).flatten(), expected)


def test_non_finite_values_are_zeroed_and_clamp_bounds_the_direction():
    den = GaussianDenoiser()
    original = den.predict_eps

    def broken(z, t, e):
        eps = original(z, t, e)
        eps[0, 0, 0, 0] = float("nan")
        return eps

    den.predict_eps = broken
    out = make_guidance("sds", den, grad_clip=0.05).direction(latents(), prompts(), 0, 1, torch.Generator().manual_seed(0))
    assert torch.isfinite(out.grad).all() and out.grad[0, 0, 0, 0] == 0
    assert out.grad.abs().max() <= 0.05 and out.grad.abs().max() == 0.05


def test_loss_gradient_is_the_direction():
    x = latents().requires_grad_(True)
    g = latents(seed=3)
    distillation_loss(x, g).backward()
    torch.testing.assert_close(x.grad, g)


def test_defaults_and_bad_settings():
    den = GaussianDenoiser()
    assert [make_guidance(m, den).settings.guidance_scale for m in ("sds", "nfsd", "sdi")] == [100.0, 7.5, 7.5]
    nfsd = make_guidance("nfsd", den).settings
    assert nfsd.nfsd_threshold == 200 and nfsd.negative_prompt.startswith("unrealistic, blurry")
    sdi = make_guidance("sdi", den).settings
    assert (sdi.inversion_steps, sdi.inversion_guidance_scale, sdi.inversion_eta) == (10, -7.5, 0.3)
    with pytest.raises(BadConfig, match="unknown method"):
        make_guidance("vsd", den)
    with pytest.raises(BadConfig, match="unknown setting"):
        make_guidance("nfsd", den, guidance=3)
    with pytest.raises(BadConfig, match="nfsd_threshold"):
        make_guidance("nfsd", den, nfsd_threshold=-1)


class DeviceCheckingDenoiser(GaussianDenoiser):
    """Answers zeros, after checking that latents, timesteps and embeddings share one device (the
    rules draw t on the CPU; picking a CPU t's rows with GPU indices fails on a GPU)."""

    def predict_eps(self, z_t, t, embeddings):
        assert t.device == z_t.device == embeddings.device, (z_t.device, t.device, embeddings.device)
        return torch.zeros_like(z_t)


@pytest.mark.parametrize("method", ["sds", "nfsd", "sdi"])
def test_rules_hand_the_denoiser_everything_on_the_latents_device(method):
    # "meta" stands in for a GPU: a second device that runs on any machine.
    meta = torch.device("meta")
    p = prompts()
    on_meta = Prompts(cond=p.cond.to(meta), uncond=p.uncond.to(meta), neg=p.neg.to(meta))
    x = latents(shape=(2, *SHAPE[1:])).to(meta)
    step = make_guidance(method, DeviceCheckingDenoiser()).direction(
        x, on_meta, step=3, total_steps=10, generator=torch.Generator().manual_seed(0))
    assert step.grad.device == meta and step.grad.shape == x.shape
