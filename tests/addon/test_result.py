"""The generation settings stored on an imported result, and the collection's name."""

from __future__ import annotations

import json

from blender_nfsd.command import GenerateSettings
from blender_nfsd.result import (CONFIG_NAME, MESH_PATH, REQUEST_NAME, collection_name, generation_properties,
                                 read_json, run_dir_of, run_properties)

REQUEST = GenerateSettings(prompt="a ceramic lion", negative_prompt="blurry", method="sdi", guidance_scale=None,
                           steps=0, seed=5, model="toy-shapes").to_dict()


def test_resolved_values_win_over_the_request():
    resolved = {"prompt": "a ceramic lion", "seed": 5, "steps": 3000,
                "guidance": {"method": "sdi", "guidance_scale": 7.5, "negative_prompt": "blurry"},
                "model": {"name": "toy-shapes", "device": "cuda"}}
    assert generation_properties(REQUEST, resolved, "/runs/lion") == {
        "prompt": "a ceramic lion", "negative_prompt": "blurry", "method": "sdi", "guidance_scale": 7.5,
        "seed": 5, "steps": 3000, "model": "toy-shapes", "run_dir": "/runs/lion"}


def test_the_request_fills_what_the_backend_did_not_write():
    properties = generation_properties(REQUEST, {"steps": 1200}, "/r")
    assert properties == {"prompt": "a ceramic lion", "negative_prompt": "blurry", "method": "sdi", "seed": 5,
                          "steps": 1200, "model": "toy-shapes", "run_dir": "/r"}  # no scale known: none stored


def test_run_properties_from_a_run_folder(tmp_path):
    (tmp_path / REQUEST_NAME).write_text(json.dumps(REQUEST))
    (tmp_path / CONFIG_NAME).write_text("{not json")
    assert run_properties(tmp_path)["seed"] == 5 and run_properties(tmp_path)["run_dir"] == str(tmp_path)
    assert read_json(tmp_path / "missing.json") == {} and read_json(tmp_path / CONFIG_NAME) == {}


def test_collection_names():
    assert collection_name("a  ceramic\nlion ") == "a ceramic lion"
    assert collection_name("") == "NFSD result"
    long = collection_name("word " * 40)
    assert long == ("word " * 12).strip() + "..."  # cut to fit 63 characters, at a word


def test_collection_names_of_any_script_fit_blenders_limit_in_bytes():
    import unicodedata

    assert collection_name("E\u0301tude") == "\u00c9tude"  # NFC
    lion = collection_name("一只陶瓷狮子" * 10)  # 3 bytes a character
    assert lion == "一只陶瓷狮子" * 3 + "一只" + "..." and len(lion.encode("utf-8")) <= 63
    emoji = collection_name("🦁" * 40)  # 4 bytes each: cut at a whole one
    assert emoji == "🦁" * 15 + "..." and unicodedata.is_normalized("NFC", emoji)


def test_a_mesh_belongs_to_the_run_folder_that_holds_it(tmp_path):
    assert run_dir_of(tmp_path / "runs" / "lion" / MESH_PATH) == tmp_path / "runs" / "lion"
