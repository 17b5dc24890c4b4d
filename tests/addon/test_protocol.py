"""Event parsing against the backend's own event writer, and every way a line can be broken."""

from __future__ import annotations

import io
import json

import pytest
from nfsd_backend.events import EventStream

from blender_nfsd.protocol import REQUIRED_FIELDS, MalformedEvent, control_line, parse_line

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
