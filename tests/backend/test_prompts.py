"""Prompts as users type them: longer than the text encoder takes (cut, with a warning that names
the tokens kept, and room left for the view suffix), in any script, with emoji."""

from __future__ import annotations

import json

import pytest

from nfsd_backend.config import ModelConfig
from nfsd_backend.diffusion import load_model
from nfsd_backend.events import EventStream
from nfsd_backend.nerf.cameras import VIEW_SUFFIXES
from nfsd_backend.prompts import fit_prompt

from .cli_helpers import run_cli
from .test_generate import COMMON

LONG = ("a ceramic lion with a golden mane " * 200)[:5000]


@pytest.fixture(scope="module")
def tokenizer():
    return load_model(ModelConfig(name="tiny-random", device="cpu")).tokenizer


def test_a_prompt_that_fits_is_kept_as_it_is(tokenizer):
    seen = []
    assert fit_prompt(tokenizer, "a red cube", EventStream(listeners=[seen.append])) == "a red cube"
    assert seen == []


def test_only_a_negative_prompt_the_user_gave_is_worth_a_warning(tokenizer):
    from nfsd_backend.config import NFSD_NEGATIVE_PROMPT
    from nfsd_backend.prompts import fit_negative_prompt

    seen = []
    default = fit_negative_prompt(tokenizer, NFSD_NEGATIVE_PROMPT, EventStream(listeners=[seen.append]))
    assert seen == [] and len(tokenizer.tokenize(default)) == tokenizer.model_max_length - 2  # cut all the same
    fit_negative_prompt(tokenizer, LONG, EventStream(listeners=[seen.append]))
    assert [w["message"][:24] for w in seen] == ["the negative prompt is 3"]


def test_a_long_prompt_is_cut_leaving_room_for_the_view_suffix(tokenizer):
    seen = []
    suffix = max(VIEW_SUFFIXES, key=len)
    cut = fit_prompt(tokenizer, LONG, EventStream(listeners=[seen.append]), reserved=suffix)
    room = tokenizer.model_max_length - 2 - len(tokenizer.tokenize(suffix))
    assert len(tokenizer.tokenize(cut)) == room
    assert tokenizer(cut + suffix).input_ids[-len(tokenizer.tokenize(suffix)) - 1:-1] == \
        tokenizer(suffix, add_special_tokens=False).input_ids  # the suffix reaches the encoder whole
    assert "".join(LONG.split()).startswith("".join(cut.split()))  # the prompt's own beginning
    [warning] = seen
    assert warning["event"] == "warning" and warning["kind"] == "prompt_truncated"
    assert warning["tokens_kept"] == room and warning["tokens_given"] == len(tokenizer.tokenize(LONG))
    assert f"takes {room} of them" in warning["message"] and "\n" not in warning["message"]


@pytest.mark.parametrize("command", ["generate", "image"])
def test_a_5000_character_prompt_runs_with_one_warning(tmp_path, capsys, command):
    # (the default negative prompt, longer than tiny-random's 32 tokens, is cut without a warning)
    argv = [*COMMON, "--steps", "2"] if command == "generate" else \
        ["--model", "tiny-random", "--device", "cpu", "--steps", "2"]
    code, events = run_cli([command, LONG, "--out", str(tmp_path / "run"), *argv], capsys)
    assert code == 0 and events[-1]["event"] == "done"
    warnings = [e for e in events if e["event"] == "warning"]
    assert [w["kind"] for w in warnings] == ["prompt_truncated"] and warnings[0]["message"].startswith("the prompt is")
    assert events.index(warnings[0]) > 1  # after start and the model's loading
    assert events[0]["config"]["prompt"] == LONG  # the run's settings keep what was asked


@pytest.mark.parametrize("prompt", ["ein Löwe aus Keramik", "一只陶瓷狮子", "🦁 a lion 🏺", "e\u0301tude"])
def test_any_script_and_emoji_run(tmp_path, capsys, prompt):
    out = tmp_path / "run"
    code, events = run_cli(["image", prompt, "--out", str(out), "--model", "tiny-random", "--device", "cpu",
                            "--steps", "1"], capsys)
    assert code == 0 and events[-1]["event"] == "done" and events[0]["config"]["prompt"] == prompt
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["prompt"] == prompt
