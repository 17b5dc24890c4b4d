"""Command lines built from the panel's settings, the backend's environment, run folder names."""

from __future__ import annotations

from datetime import datetime

import pytest

from blender_nfsd.command import (GenerateSettings, backend_environment, doctor_command, export_command,
                                  generate_command, method_defaults, override_config, run_folder_name,
                                  settings_problem)


def test_generate_command_with_every_flag():
    settings = GenerateSettings(prompt="a ceramic lion", negative_prompt="blurry", method="sdi",
                                guidance_scale=9.0, preset="high", steps=500, seed=7, model="toy-shapes",
                                device="cuda", precision="fp16", low_vram=True, mesh_resolution=384,
                                texture_size=2048, perp_neg=True)
    assert generate_command("/venv/bin/python", settings, "/runs/lion", "/runs/lion/o.json") == [
        "/venv/bin/python", "-m", "nfsd_backend", "generate", "a ceramic lion", "--out", "/runs/lion",
        "--events", "jsonl", "--control", "stdin", "--method", "sdi", "--guidance-scale", "9.0",
        "--negative-prompt", "blurry", "--preset", "high", "--seed", "7", "--model", "toy-shapes",
        "--device", "cuda", "--precision", "fp16", "--mesh-resolution", "384", "--texture-size", "2048",
        "--steps", "500", "--low-vram", "--perp-neg", "--config", "/runs/lion/o.json"]


@pytest.mark.parametrize("method, scale", [("nfsd", "7.5"), ("sdi", "7.5"), ("sds", "100.0")])
def test_unset_guidance_scale_is_the_methods_paper_default(method, scale):
    command = generate_command("py", GenerateSettings(prompt="x", method=method), "/out")
    assert command[command.index("--guidance-scale") + 1] == scale


def test_defaults_leave_steps_and_sizes_to_the_preset_and_send_no_config():
    command = generate_command("py", GenerateSettings(prompt="x"), "/out")
    assert "--steps" not in command and "--low-vram" not in command and "--config" not in command
    assert "--mesh-resolution" not in command and "--texture-size" not in command
    assert command[command.index("--preset") + 1] == "standard"
    assert command[command.index("--negative-prompt") + 1].startswith("unrealistic, blurry")


@pytest.mark.parametrize("sizes, sent", [
    ({"mesh_resolution": 384}, {"--mesh-resolution": "384"}),
    ({"texture_size": 2048}, {"--texture-size": "2048"}),
])
def test_only_the_export_sizes_that_are_set_are_sent(sizes, sent):
    command = generate_command("py", GenerateSettings(prompt="x", **sizes), "/out")
    flags = ("--mesh-resolution", "--texture-size")
    assert {flag: command[command.index(flag) + 1] for flag in flags if flag in command} == sent


def test_an_empty_negative_prompt_is_sent_as_empty():
    command = generate_command("py", GenerateSettings(prompt="x", negative_prompt=""), "/out")
    assert command[command.index("--negative-prompt") + 1] == ""


def test_override_config_only_for_changed_advanced_settings():
    assert override_config(GenerateSettings(prompt="x")) == {}
    custom = GenerateSettings(prompt="x", method="nfsd", timestep_range="custom", t_min=0.1, t_max=0.6)
    assert override_config(custom) == {"guidance": {"t_min": 0.1, "t_max": 0.6, "t_max_annealed": 0.5}}
    sds = GenerateSettings(prompt="x", method="sds", timestep_range="custom", t_min=0.1, t_max=0.3)
    assert override_config(sds) == {"guidance": {"t_min": 0.1, "t_max": 0.3}}  # SDS's top never drops
    sdi = GenerateSettings(prompt="x", method="sdi", timestep_range="custom", t_min=0.3, t_max=0.9)
    assert override_config(sdi) == {"guidance": {"sdi_t_lo": 0.3, "sdi_t_hi": 0.9}}
    schedule = GenerateSettings(prompt="x", render_schedule="64-512")
    assert override_config(schedule) == {"train": {"render_size": 64, "render_size_late": 512}}
    fixed = GenerateSettings(prompt="x", render_schedule="64")
    assert override_config(fixed) == {"train": {"render_size": 64, "render_size_late": None}}


@pytest.mark.parametrize("t_min, t_max, annealed", [
    (0.02, 0.3, 0.3),  # Max below NFSD's annealed top: the top stays at Max
    (0.02, 0.98, 0.5),  # the method's own range: the method's own schedule
    (0.6, 0.9, 0.6),  # Min above it: the top drops to Min
])
def test_a_custom_nfsd_range_keeps_its_annealed_top_inside_the_range(t_min, t_max, annealed):
    settings = GenerateSettings(prompt="x", method="nfsd", timestep_range="custom", t_min=t_min, t_max=t_max)
    assert override_config(settings)["guidance"]["t_max_annealed"] == annealed


def test_a_method_brings_its_guidance_scale_and_timestep_range():
    assert method_defaults("nfsd") == {"guidance_scale": 7.5, "t_min": 0.02, "t_max": 0.98, "perp_neg": False}
    assert method_defaults("sdi") == {"guidance_scale": 7.5, "t_min": 0.25, "t_max": 0.98, "perp_neg": True}
    assert method_defaults("sds") == {"guidance_scale": 100.0, "t_min": 0.02, "t_max": 0.98, "perp_neg": False}


@pytest.mark.parametrize("perp_neg, flag, absent", [(True, "--perp-neg", "--no-perp-neg"),
                                                    (False, "--no-perp-neg", "--perp-neg")])
def test_the_perp_neg_checkbox_is_sent_either_way(perp_neg, flag, absent):
    command = generate_command("py", GenerateSettings(prompt="x", method="sdi", perp_neg=perp_neg), "/out")
    assert command.count(flag) == 1 and absent not in command


@pytest.mark.parametrize("changes, problem", [
    ({"prompt": "  "}, "The prompt is empty"),
    ({"method": "dds"}, "Unknown method 'dds'"),
    ({"model": ""}, "No model is set"),
    ({"timestep_range": "custom", "t_min": 0.7, "t_max": 0.5}, "The timestep range 0.7..0.5 is empty"),
    ({"render_schedule": "4k"}, "Unknown render schedule '4k'"),
    ({"mesh_resolution": 8}, "Mesh Resolution 8 is out of range: use 16 to 1024, or 0"),
    ({"texture_size": 10000}, "Texture Size 10000 is out of range: use 64 to 8192, or 0"),
])
def test_settings_problems(changes, problem):
    settings = GenerateSettings.from_mapping({"prompt": "a lion", **changes})
    message = settings_problem(settings)
    assert message is not None and message.startswith(problem)


def test_good_settings_have_no_problem():
    assert settings_problem(GenerateSettings(prompt="a lion", timestep_range="custom", t_min=0.2, t_max=0.5)) is None


def test_settings_mapping_round_trip_and_typos():
    settings = GenerateSettings(prompt="a lion", seed=4)
    assert GenerateSettings.from_mapping(settings.to_dict()) == settings
    with pytest.raises(KeyError, match="guidance"):
        GenerateSettings.from_mapping({"prompt": "x", "guidance": 3})


def test_export_and_doctor_commands():
    assert export_command("py", "/runs/lion", 384, 2048) == [
        "py", "-m", "nfsd_backend", "export", "/runs/lion", "--mesh-resolution", "384", "--texture-size", "2048",
        "--events", "jsonl"]
    # 0: the run's own sizes, from its config.json
    assert export_command("py", "/runs/lion", 0, 0) == ["py", "-m", "nfsd_backend", "export", "/runs/lion",
                                                        "--events", "jsonl"]
    assert doctor_command("py") == ["py", "-m", "nfsd_backend", "doctor", "--json"]


def test_environment_goes_offline_without_online_access():
    base = {"PATH": "/bin", "HF_HOME": "/models"}
    online = backend_environment(base, online_access=True)
    offline = backend_environment(base, online_access=False)
    assert "HF_HUB_OFFLINE" not in online and offline["HF_HUB_OFFLINE"] == "1"
    assert offline["PATH"] == "/bin" and offline["HF_HOME"] == "/models"
    assert online["PYTHONIOENCODING"] == "utf-8"
    assert "HF_HUB_OFFLINE" not in base  # the caller's mapping is not changed


def test_run_folder_names():
    when = datetime(2025, 3, 4, 5, 6, 7)
    assert run_folder_name("A ceramic Lion!", when) == "a-ceramic-lion-20250304-050607"
    assert run_folder_name("  ??? ", when) == "run-20250304-050607"
    long = run_folder_name("word " * 30, when)
    assert long == "word-word-word-word-word-word-word-word-20250304-050607"


WINDOWS_RESERVED_CHARACTERS = set('<>:"/\\|?*') | {chr(c) for c in range(32)}
WINDOWS_RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


@pytest.mark.parametrize("prompt, name", [
    ("Ein Löwe aus Keramik", "ein-löwe-aus-keramik"),
    ("一只陶瓷狮子", "一只陶瓷狮子"),
    ("🦁 a lion 🏺", "a-lion"),
    ("🦁🏺", "run"),
    ("E\u0301tude", "\u00e9tude"),  # decomposed é (as macOS's HFS+ wrote it) comes out composed
    ("नमस्ते दुनिया", "नमस्ते-दुनिया"),  # the vowel signs (combining marks) stay in their words
    ('CON', "con"), ("nul.txt", "nul-txt"), ("a lion...  ", "a-lion"), ('a<b>c:d"e/f\\g|h?i*j', "a-b-c-d-e-f-g-h-i-j"),
    ("x" * 5000, "x" * 40),
])
def test_run_folder_names_from_any_prompt_are_valid_everywhere(prompt, name):
    import unicodedata

    folder = run_folder_name(prompt, datetime(2025, 3, 4, 5, 6, 7))
    assert folder == f"{name}-20250304-050607"
    assert not set(folder) & WINDOWS_RESERVED_CHARACTERS and folder[-1] not in ". "
    assert folder.split(".")[0].lower() not in WINDOWS_RESERVED_NAMES
    assert unicodedata.is_normalized("NFC", folder) and len(folder.encode("utf-8")) <= 255
