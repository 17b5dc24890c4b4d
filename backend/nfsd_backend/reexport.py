"""`nfsd export RUN_DIR`: extract the mesh again from a run's checkpoint, without training, e.g. at
a higher resolution or another iso-level. The previous mesh stays until the new one is complete."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from .checkpoint import load_checkpoint
from .cli import EXPORT_FLAGS, Flag, add_common, add_flags, settings_from
from .config import DEVICES, GenerateConfig, from_dict, load_config_file, merge, validate_export, validate_model
from .diffusion.loading import resolve_device
from .errors import EXIT_OK, BadConfig, out_of_memory_means
from .events import EventStream
from .rundir import attach_log, lock_run_dir
from .train import export_field, field_from_state

REEXPORT_FLAGS = EXPORT_FLAGS + (
    Flag("--device", "model.device", "where the field is evaluated", choices=DEVICES),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="the --out folder of an `nfsd generate` run")
    add_common(parser)
    add_flags(parser, REEXPORT_FLAGS)
    parser.set_defaults(out=None)


def run(args: argparse.Namespace, events: EventStream) -> int:
    run_dir = Path(args.run_dir).expanduser().resolve()
    if not (run_dir / "config.json").is_file():
        raise BadConfig(f"{run_dir} is not a run folder (no config.json); give the --out folder of `nfsd generate`.")
    args.out = run_dir  # errors from here on are logged in the run's log
    saved = load_config_file(run_dir / "config.json")
    given = settings_from(args)
    trained = from_dict(GenerateConfig, saved)
    config = from_dict(GenerateConfig, merge(saved, given))
    # Only the export and where it runs may change (a run's own config.json passes): the rest
    # describes the trained field.
    if dataclasses.replace(config, export=trained.export,
                           model=dataclasses.replace(config.model, device=trained.model.device)) != trained:
        raise BadConfig("`nfsd export` changes only export settings and model.device; the others describe "
                        "the trained field: start a new run to change them.")
    validate_export(config.export)
    validate_model(config.model)
    lock_run_dir(run_dir)  # not while a run trains into it, nor while another export writes its mesh
    state = load_checkpoint(run_dir)
    attach_log(run_dir)
    events.attach_run_dir(run_dir)
    started = time.perf_counter()
    events.emit("stage", name="export", message=f"re-exporting step {state['step']} of {run_dir}")
    with out_of_memory_means("lower --mesh-resolution or --texture-size, or export with --device cpu."):
        field = field_from_state(config, state, resolve_device(config.model.device), run_dir)
        result = export_field(field, run_dir / "mesh", config, events)
    events.emit("done", mesh=str(result.glb), obj=str(result.obj), elapsed_s=round(time.perf_counter() - started, 3))
    return EXIT_OK
