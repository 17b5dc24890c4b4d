"""Perp-Neg in every rule, against the formula of docs/methods.md computed independently with the
analytic denoiser: the combined direction, each negative's orthogonality to the positive delta,
the reduction to plain guidance when every weight is 0, and the evaluation counts."""

from __future__ import annotations

import math

import pytest
import torch

from nfsd_backend.guidance import Prompts, make_guidance
from nfsd_backend.guidance.perp_neg import perpendicular, predict_guided_terms

from ..analytic import GaussianDenoiser
from .test_rules import ab, expected_t_and_noise, latents, prompts, reference_delta, reference_eps_s, reference_sdi

SHAPE = (3, 4, 8, 8)
WEIGHTS = (0.7, 1.6)


def with_negatives(weights=WEIGHTS, shape=SHAPE) -> Prompts:
    """Prompts whose perp_neg holds one embedding per weight (the means of other Gaussians)."""
    p = prompts(shape)
    g = torch.Generator().manual_seed(321)
    embeddings = [torch.randn((1, *shape[1:]), generator=g, dtype=torch.float64) for _ in weights]
    return Prompts(cond=p.cond, uncond=p.uncond, neg=p.neg, perp_neg=tuple(zip(embeddings, weights)))


def test_sds_with_perp_neg_matches_formula():
    den, p, x = GaussianDenoiser(), with_negatives(), latents(SHAPE)
    out = make_guidance("sds", den).direction(x, p, 0, 10, torch.Generator().manual_seed(5))
    t, e = expected_t_and_noise(5, SHAPE)
    a, b = ab(den, t, x)
    z = a * x + b * e
    expected = (1 - a**2) * (reference_eps_s(den, z, t, p, 100.0, p.perp_neg) - e)
    torch.testing.assert_close(out.grad, expected, rtol=1e-10, atol=1e-10)
    assert out.model_evals == den.rows_evaluated == (2 + 2) * 3 and den.calls == 1


@pytest.mark.parametrize("t_frac, neg_rows", [(0.1, 0), (0.7, 3)])
def test_nfsd_with_perp_neg_changes_only_the_condition_term(t_frac, neg_rows):
    den, p, x = GaussianDenoiser(), with_negatives(), latents(SHAPE)
    out = make_guidance("nfsd", den, t_min=t_frac, t_max=t_frac).direction(x, p, 0, 10, torch.Generator().manual_seed(9))
    t, e = expected_t_and_noise(9, SHAPE, t_frac, t_frac)
    a, b = ab(den, t, x)
    z = a * x + b * e
    eps_u = den.eps(z, t, p.uncond)
    delta_d = eps_u - den.eps(z, t, p.neg) if neg_rows else eps_u
    expected = (1 - a**2) * (delta_d + 7.5 * reference_delta(den, z, t, p, p.perp_neg))
    torch.testing.assert_close(out.grad, expected, rtol=1e-10, atol=1e-10)
    assert out.model_evals == den.rows_evaluated == (2 + 2) * 3 + neg_rows and den.calls == 1


@pytest.mark.parametrize("step", [0, 60])
def test_sdi_with_perp_neg_uses_it_on_the_forward_pass_and_every_inversion_step(step):
    den, p, x = GaussianDenoiser(), with_negatives(), latents(SHAPE)
    out = make_guidance("sdi", den).direction(x, p, step, 100, torch.Generator().manual_seed(11))
    t, path, grad = reference_sdi(den, p, x, step, 100, seed=11, negatives=p.perp_neg)
    assert out.timestep[0].item() == t
    torch.testing.assert_close(out.grad, grad, rtol=1e-9, atol=1e-9)
    predictions = len(path)  # the inversion steps, len(path) - 1, and the forward pass
    assert out.model_evals == den.rows_evaluated == predictions * (2 + 2) * 3 and den.calls == predictions


@pytest.mark.parametrize("method, evals", [
    ("sds", lambda k, b: (2 + k) * b),
    ("nfsd", lambda k, b: (2 + k) * b + b),  # t fixed above the threshold: the negative prompt for each latent
    ("sdi", lambda k, b: (math.ceil(980 / 100) + 2) * (2 + k) * b),  # step 0: t = 980, 11 inversion steps
])
@pytest.mark.parametrize("weights", [(), (0.5,), (0.5, 2.0), (0.0, 2.0)])
def test_evaluations_per_step_count_one_per_negative_of_nonzero_weight(method, evals, weights):
    den = GaussianDenoiser()
    settings = {"t_min": 0.5, "t_max": 0.5} if method == "nfsd" else {}
    out = make_guidance(method, den, **settings).direction(latents(SHAPE), with_negatives(weights), 0, 100,
                                                           torch.Generator().manual_seed(2))
    k = sum(1 for w in weights if w != 0)
    assert out.model_evals == den.rows_evaluated == evals(k, SHAPE[0])


@pytest.mark.parametrize("method", ["sds", "nfsd", "sdi"])
def test_all_negative_weights_zero_is_exactly_todays_rule(method):
    results = []
    for p in (prompts(SHAPE), with_negatives((0.0, 0.0))):
        den = GaussianDenoiser()
        out = make_guidance(method, den).direction(latents(SHAPE), p, 3, 10, torch.Generator().manual_seed(4))
        results.append((out, den.calls, den.rows_evaluated))
    (plain, plain_calls, plain_rows), (zero, zero_calls, zero_rows) = results
    assert torch.equal(plain.grad, zero.grad) and torch.equal(plain.timestep, zero.timestep)
    assert plain.model_evals == zero.model_evals and (plain_calls, plain_rows) == (zero_calls, zero_rows)


def test_each_negatives_contribution_is_orthogonal_to_the_positive_delta_per_sample():
    den = GaussianDenoiser()
    z = latents(SHAPE, seed=8)
    t = torch.tensor([150, 480, 870])
    plain = predict_guided_terms(den, z, t, prompts(SHAPE))
    full = with_negatives()
    for negative in full.perp_neg:
        one = Prompts(cond=full.cond, uncond=full.uncond, perp_neg=(negative,))
        contribution = predict_guided_terms(den, z, t, one).delta - plain.delta
        assert contribution.abs().amax(dim=(1, 2, 3)).min() > 1e-3  # it does move every sample
        dot = (contribution * plain.delta).sum(dim=(1, 2, 3))
        scale = contribution.flatten(1).norm(dim=1) * plain.delta.flatten(1).norm(dim=1)
        assert (dot.abs() / scale).max() < 1e-12


def test_perpendicular_of_a_zero_positive_delta_is_the_whole_vector():
    u = latents((2, 4, 2, 2), seed=1)
    v = torch.zeros_like(u)
    v[1] = u[1] * 3
    out = perpendicular(u, v)
    assert torch.equal(out[0], u[0])
    torch.testing.assert_close(out[1], torch.zeros_like(u[1]), rtol=0, atol=1e-12)
