"""Event parsing against the backend's own event writer and its real runs, and every way a line
can be broken."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nfsd_backend.events import EventStream

from blender_nfsd.command import GenerateSettings, generate_command
from blender_nfsd.protocol import REQUIRED_FIELDS, MalformedEvent, control_line, parse_line

BACKEND = Path(__file__).resolve().parents[2] / "backend"
# The smallest real run: tiny-random on the CPU, one step with its preview and checkpoint, a tiny
# field and renders, a 16^3 mesh (seconds, not the preset's minutes).
TINY_RUN = GenerateSettings(prompt="a red cube", method="sds", preset="draft", steps=1, seed=1,
                            model="tiny-random", device="cpu", mesh_resolution=16, texture_size=64)
TINY_CONFIG = {"train": {"render_size": 32, "render_size_late": None, "preview_every": 1, "preview_size": 32,
                         "checkpoint_every": 1, "render": {"samples_per_ray": 24, "occupancy_resolution": 32},
                         "field": {"encoding": {"levels": 8, "log2_table_size": 14, "finest_resolution": 256},
                                   "mlp_width": 32}}}

EXAMPLES = {
    "start": {"run_dir": "/runs/lion", "total_steps": 100, "method": "nfsd", "device": "cuda",
              "config": {"seed": 3}},
    "stage": {"name": "train", "message": "Training"},
    "progress": {"step": 7, "total_steps": 100, "loss": 0.25, "timestep": 612, "elapsed_s": 3.5,
                 "eta_s": 46.5, "it_per_s": 2.0},
    "preview": {"step": 10, "path": "/runs/lion/previews/latest.png"},
    "checkpoint": {"step": 10, "path": "/runs/lion/checkpoints/last.pt"},
    "done": {"mesh": "/runs/lion/mesh/model.glb", "obj": "/runs/lion/mesh/model.obj", "elapsed_s": 12.0},
    "cancelled": {"step": 42, "checkpoint": "/runs/lion/checkpoints/last.pt"},
    "error": {"kind": "model_not_found", "message": "Download the model or point --model to a folder."},
    "warning": {"kind": "prompt_truncated", "message": "the prompt was cut", "tokens_given": 900,
                "tokens_kept": 62},
}


def backend_line(kind: str, fields: dict) -> str:
    out = io.StringIO()
    EventStream(jsonl=out).emit(kind, **fields)
    return out.getvalue()


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_event_the_backend_writes_parses_back(kind):
    event = parse_line(backend_line(kind, EXAMPLES[kind]))
    assert event is not None
    assert event.kind == kind
    assert event.fields == EXAMPLES[kind]
    assert event.time > 0


def test_examples_cover_every_kind_the_backend_knows():
    from nfsd_backend.events import EVENT_KINDS

    assert sorted(EXAMPLES) == sorted(EVENT_KINDS) == sorted(REQUIRED_FIELDS)


def test_blank_lines_are_not_events():
    assert parse_line("") is None
    assert parse_line("  \r\n") is None


def test_every_cut_off_line_is_malformed():
    line = backend_line("progress", EXAMPLES["progress"]).rstrip("\n")
    for end in range(1, len(line)):
        with pytest.raises(MalformedEvent):
            parse_line(line[:end])


@pytest.mark.parametrize("line, reason", [
    ("Loading pipeline components...", "not JSON"),
    ("[1, 2]", "not an object"),
    ('{"event": "stage", "time": 1, "name": "x", "message": "y"}', "version None"),
    ('{"v": 2, "event": "stage", "time": 1, "name": "x", "message": "y"}', "version 2"),
    ('{"v": 1, "event": "teleport", "time": 1}', "unknown event kind 'teleport'"),
    ('{"v": 1, "event": "stage", "name": "x", "message": "y"}', "without a numeric time"),
    ('{"v": 1, "event": "preview", "time": 1, "step": 3}', "preview event without path"),
    ('{"v": 1, "event": "done", "time": 1}', "done event without mesh, obj, elapsed_s"),
    ('{"v": 1, "event": "preview", "time": 1, "step": "3", "path": "p"}', "step is '3', not a number"),
    ('{"v": 1, "event": "checkpoint", "time": 1, "step": true, "path": "p"}', "step is True, not a number"),
])
def test_malformed_lines_say_what_is_wrong(line, reason):
    with pytest.raises(MalformedEvent, match=reason.replace("[", r"\[").replace("(", r"\(")):
        parse_line(line)


def test_extra_fields_are_kept():
    line = json.dumps({"v": 1, "event": "stage", "time": 5, "name": "train", "message": "m", "extra": [1]})
    event = parse_line(line)
    assert event is not None and event.get("extra") == [1] and event.get("missing", "d") == "d"


def test_a_diverged_loss_is_still_progress():
    fields = dict(EXAMPLES["progress"], loss=float("nan"))
    event = parse_line(backend_line("progress", fields))
    assert event is not None and event["loss"] != event["loss"]


def test_control_lines():
    assert control_line("stop") == "stop\n"
    assert control_line("export") == "export\n"
    with pytest.raises(ValueError):
        control_line("pause")


def test_the_real_backends_events_parse_with_every_documented_field(tmp_path, backend_events):
    """The real backend, started with the add-on's own command line, in the three ways a run ends:
    finished (start, stage, progress, preview, checkpoint, done), stopped by closing its stdin
    (cancelled) and refused (error). Every stdout line must be an event the add-on parses,
    carrying every field DESIGN.md lists for its kind."""
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(BACKEND))

    def command(name: str, **changes) -> list[str]:
        settings = GenerateSettings(**dict(TINY_RUN.to_dict(), **changes))
        return generate_command(sys.executable, settings, str(tmp_path / name), str(config))

    def start(name: str, **changes) -> subprocess.Popen:
        with open(tmp_path / f"{name}.stderr", "w") as log:
            return subprocess.Popen(command(name, **changes), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=log, text=True, env=env)

    # The stopped run's prompt is longer than the text encoder takes: a `warning`.
    runs = {"done": start("done"), "cancelled": start("cancelled", prompt="a red cube " * 400),
            "error": start("error", model=str(tmp_path / "no such model"))}
    runs["cancelled"].stdin.close()  # closed stdin means stop
    runs["error"].stdin.close()
    lines = {}
    for name, process in runs.items():
        lines[name] = process.stdout.readlines()  # the finished run's stdin stays open until it exits
        process.stdin.close()
        process.wait(timeout=600)
    codes = {name: process.returncode for name, process in runs.items()}
    assert codes == {"done": 0, "cancelled": 3, "error": codes["error"]} and codes["error"] != 0, \
        {name: (tmp_path / f"{name}.stderr").read_text()[-2000:] for name in runs}

    events = {name: backend_events(run_lines) for name, run_lines in lines.items()}
    kinds = {name: [event["event"] for event in run_events] for name, run_events in events.items()}
    assert kinds["done"][0] == "start" and kinds["done"][-1] == "done"
    assert {"stage", "progress", "preview", "checkpoint"} <= set(kinds["done"])
    assert kinds["cancelled"][0] == "start" and kinds["cancelled"][-1] == "cancelled"
    assert kinds["error"][-1] == "error"
    assert {kind for run_kinds in kinds.values() for kind in run_kinds} == set(REQUIRED_FIELDS)
    start = events["done"][0]
    assert start["config"]["train"]["render_size"] == 32 and start["config"]["steps"] == 1  # the tiny run
    # DESIGN.md: absolute paths, to files that exist
    done = events["done"][-1]
    for path in [done["mesh"], done["obj"], *(e["path"] for e in events["done"] if e["event"] == "preview")]:
        assert Path(path).is_absolute() and Path(path).is_file(), path
