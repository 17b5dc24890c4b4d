"""The add-on's command lines and `--config` overrides as the real backend reads them: parsed by
`nfsd generate`'s own argument parser and resolved with its defaults, so that what the panel
promises (sizes from the preset, a Custom timestep range) is what a run would use."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest
import torch

from blender_nfsd.command import (ANNEALED_T_MAX, DEFAULT_MODEL, DEFAULT_TIMESTEP_RANGE, MESH_RESOLUTION_RANGE,
                                  TEXTURE_SIZE_RANGE, GenerateSettings, generate_command, method_defaults,
                                  override_config)
from nfsd_backend import train
from nfsd_backend.cli import settings_from
from nfsd_backend.config import ExportConfig, GenerateConfig, merge, resolve_generate, validate_export
from nfsd_backend.errors import BadConfig
from nfsd_backend.guidance.base import Guidance

T = 1000  # the diffusion time, in steps
TOTAL_STEPS = 100


def resolved(settings: GenerateSettings) -> GenerateConfig:
    """The config a backend run started by the add-on with `settings` would resolve to."""
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    command = generate_command("python", settings, "/runs/x")
    args = parser.parse_args(command[command.index("generate") + 1:])
    given = merge(settings_from(args), override_config(settings))  # what --config FILE adds
    return resolve_generate({**given, "prompt": args.prompt})


def timesteps_over_the_run(config: GenerateConfig) -> torch.Tensor:
    """Every t the backend draws for a run of TOTAL_STEPS, many draws per step, as fractions of T."""
    guidance = Guidance(SimpleNamespace(alphas_cumprod=torch.zeros(T)), config.guidance)
    generator = torch.Generator().manual_seed(0)
    return torch.cat([guidance.sample_timesteps(256, step, TOTAL_STEPS, generator)
                      for step in range(TOTAL_STEPS)]).float() / T


@pytest.mark.parametrize("preset, mesh_resolution, texture_size", [("draft", 128, 512), ("high", 256, 1024)])
def test_unset_sizes_are_the_presets(preset, mesh_resolution, texture_size):
    config = resolved(GenerateSettings(prompt="a yellow cylinder", model="toy-shapes", preset=preset))
    assert (config.export.mesh_resolution, config.export.texture_size) == (mesh_resolution, texture_size)
    chosen = resolved(GenerateSettings(prompt="x", model="toy-shapes", preset=preset, mesh_resolution=64,
                                       texture_size=256))
    assert (chosen.export.mesh_resolution, chosen.export.texture_size) == (64, 256)


@pytest.mark.parametrize("method", ["nfsd", "sds"])
@pytest.mark.parametrize("t_min, t_max", [(0.02, 0.3), (0.1, 0.6), (0.6, 0.9)])
def test_a_custom_range_bounds_every_timestep_of_the_run(method, t_min, t_max):
    config = resolved(GenerateSettings(prompt="x", model="toy-shapes", method=method, timestep_range="custom",
                                       t_min=t_min, t_max=t_max))
    t = timesteps_over_the_run(config)
    assert t.min() >= t_min - 0.5 / T and t.max() <= t_max + 0.5 / T  # within rounding to whole steps


@pytest.mark.parametrize("method", ["nfsd", "sds"])
def test_custom_with_the_methods_own_range_is_the_method_default(method):
    low, high = DEFAULT_TIMESTEP_RANGE[method]
    custom = GenerateSettings(prompt="x", model="toy-shapes", method=method, timestep_range="custom",
                              t_min=low, t_max=high)
    default = GenerateSettings(prompt="x", model="toy-shapes", method=method)
    assert resolved(custom).guidance == resolved(default).guidance


@pytest.mark.parametrize("method", ["nfsd", "sdi", "sds"])
def test_restated_timestep_defaults_are_the_backends(method):
    guidance = resolved(GenerateSettings(prompt="x", model="toy-shapes", method=method)).guidance
    ranges = {"sdi": (guidance.sdi_t_lo, guidance.sdi_t_hi)}
    assert ranges.get(method, (guidance.t_min, guidance.t_max)) == DEFAULT_TIMESTEP_RANGE[method]
    if method == "sdi":
        return  # SDI sweeps its own range; t_min, t_max and their annealing are not its
    annealed = guidance.t_max_annealed if guidance.t_anneal_at is not None else None
    assert annealed == ANNEALED_T_MAX.get(method)


def test_restated_size_limits_are_the_backends():
    (mesh_low, mesh_high), (texture_low, texture_high) = MESH_RESOLUTION_RANGE, TEXTURE_SIZE_RANGE
    validate_export(ExportConfig(mesh_resolution=mesh_low, texture_size=texture_low))
    validate_export(ExportConfig(mesh_resolution=mesh_high, texture_size=texture_high))
    for sizes in ({"mesh_resolution": mesh_low - 1}, {"mesh_resolution": mesh_high + 1},
                  {"texture_size": texture_low - 1}, {"texture_size": texture_high + 1}):
        with pytest.raises(BadConfig):
            validate_export(ExportConfig(**sizes))


@pytest.mark.parametrize("method", ["nfsd", "sdi", "sds"])
def test_the_perp_neg_checkbox_decides_and_its_method_default_is_the_backends_on_stable_diffusion(method):
    backend_default = resolve_generate({"prompt": "x", "guidance": {"method": method}}).guidance.perp_neg
    checkbox = bool(method_defaults(method)["perp_neg"])
    assert checkbox == backend_default
    for checked in (True, False):
        settings = GenerateSettings(prompt="x", model=DEFAULT_MODEL, method=method, perp_neg=checked)
        assert resolved(settings).guidance.perp_neg is checked
