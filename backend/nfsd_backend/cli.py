"""The `nfsd` command line: generate | image | export | doctor.

Every setting flag maps to one key of the config dataclasses (`config.py`); values come from the
defaults, then `--config FILE.json`, then the flags given. Errors a user can fix end as one line
(or one `error` event with `--events jsonl`) and exit code 2; bugs write their traceback to the
run's `nfsd.log` and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .config import DEVICES, PRECISIONS, load_config_file, merge
from .console import ConsoleProgress
from .errors import EXIT_CANCELLED, EXIT_INTERNAL, BadConfig, NfsdError, disk_full_means
from .events import EventStream
from .rundir import attach_log, detach_logs, logger, release_run_dirs


@dataclass(frozen=True)
class Flag:
    """One command-line flag and the config key it sets (dotted for a section). `type` None is an
    on-switch (store true); `bool` is a pair, `--flag` / `--no-flag`, for a setting whose default
    may be on."""

    flag: str
    key: str
    help: str
    type: Callable[[str], Any] | None = str
    choices: tuple[str, ...] | None = None


def whole_number(text: str) -> int:
    """The value of a count flag. A whole number in scientific notation ("1e4") is taken too, so that
    `--steps 1e9` meets the setting's own limit, which names it, rather than a parse error."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"invalid whole number: {text!r}")
    return int(value)


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


MODEL_FLAGS = (
    Flag("--model", "model.name", "hub id, diffusers folder, .safetensors/.ckpt file, toy-shapes or tiny-random"),
    Flag("--revision", "model.revision", "hub revision of --model"),
    Flag("--device", "model.device", "where the model runs", choices=DEVICES),
    Flag("--precision", "model.precision", "model weights' precision", choices=PRECISIONS),
    Flag("--low-vram", "model.low_vram", "settings for 8 GB cards (see docs/nerf.md)", type=None),
)
GUIDANCE_FLAGS = (
    Flag("--method", "guidance.method", "guidance rule (default nfsd)"),
    Flag("--guidance-scale", "guidance.guidance_scale", "CFG scale (defaults: SDS 100, NFSD 7.5, SDI 7.5)", float),
    Flag("--negative-prompt", "guidance.negative_prompt", "NFSD's negative prompt for t >= threshold"),
    Flag("--nfsd-threshold", "guidance.nfsd_threshold", "NFSD: timestep from which the negative prompt is used", int),
    Flag("--weighting", "guidance.weighting", "w(t): sds | uniform | fantasia3d | x0"),
    Flag("--inversion-steps", "guidance.inversion_steps", "SDI: DDIM inversion steps over the full range", int),
)
RUN_FLAGS = (
    Flag("--steps", "steps", "optimisation steps", int),
    Flag("--seed", "seed", "random seed: fixes every random choice of the run", int),
)
EXPORT_FLAGS = (
    Flag("--mesh-resolution", "export.mesh_resolution", "marching-cubes grid size per axis", int),
    Flag("--texture-size", "export.texture_size", "baked texture size in pixels", int),
    Flag("--threshold", "export.threshold", "density iso-level (default: auto)", float),
)


def add_flags(parser: argparse.ArgumentParser, flags: tuple[Flag, ...]) -> None:
    """Flags default to 'not given' so that only the ones on the command line override."""
    for flag in flags:
        dest = "set:" + flag.key
        if flag.type is None:
            parser.add_argument(flag.flag, dest=dest, action="store_true", default=argparse.SUPPRESS,
                                help=flag.help)
        elif flag.type is bool:
            parser.add_argument(flag.flag, dest=dest, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=flag.help)
        else:
            parser.add_argument(flag.flag, dest=dest, type=whole_number if flag.type is int else flag.type,
                                choices=flag.choices,
                                default=argparse.SUPPRESS, help=flag.help)


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, as a nested dict like a config file."""
    values: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if not dest.startswith("set:"):
            continue
        *sections, name = dest[4:].split(".")
        target = values
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    return values


def settings_from(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """`base`, then the `--config` file, then the flags."""
    settings = dict(base or {})
    if getattr(args, "config", None):
        settings = merge(settings, load_config_file(args.config))
    return merge(settings, flag_values(args))


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="settings file (the keys of a run's config.json)")
    parser.add_argument("--events", choices=("jsonl",), help="write the event stream to stdout as JSON lines")


# name -> (module, help); each module has add_arguments(parser) and run(args, events) -> exit code.
COMMANDS = {
    "generate": ("nfsd_backend.train", "text -> NeRF by score distillation -> textured mesh"),
    "image": ("nfsd_backend.image2d", "2-D distillation of one image: a quick look at a prompt and method"),
    "export": ("nfsd_backend.reexport", "extract the textured mesh again from a run's checkpoint"),
    "doctor": ("nfsd_backend.doctor", "check torch, CUDA, accelerators and cached models"),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors (a bad flag value, an unknown flag) end like every other user
    mistake: one line, or one `error` event in jsonl mode, and exit code 2. Subcommands inherit it."""

    def error(self, message: str):  # type: ignore[override]
        raise BadConfig(f"{message} (see `{self.prog} --help`).")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = ArgumentParser(prog="nfsd", description="Text-to-3D with NFSD / SDI / SDS score distillation.")
    parser.add_argument("--version", action="version", version=f"nfsd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Read before parsing, so that a usage error reaches the add-on as an event too.
    jsonl = "--events=jsonl" in argv or any(a == "--events" and b == "jsonl" for a, b in zip(argv, argv[1:]))
    events = EventStream(jsonl=sys.stdout if jsonl else None, listeners=[] if jsonl else [ConsoleProgress()])
    try:
        args = build_parser().parse_args(argv)
    except BadConfig as exc:
        events.emit("error", kind=exc.kind, message=exc.message)
        return exc.exit_code
    try:
        # A full disk where no step says more (the checkpoint and the export do) is still one line.
        with disk_full_means("the files written before are kept whole (each is replaced only once its new "
                             "version is complete): free some space and run the command again."):
            return args.run(args, events)
    except NfsdError as exc:
        if exc.touches_run_dir:
            _log_to_run(_run_dir(args), logging.ERROR, f"{exc.kind}: {exc.message}")
        events.emit("error", kind=exc.kind, message=exc.message)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C where no stop is handled, or a second one during a run
        message = "interrupted by Ctrl-C; what was written is kept (a run continues from its last checkpoint " \
                  "with --resume)."
        _log_to_run(_run_dir(args), logging.ERROR, message)
        events.emit("error", kind="interrupted", message=message)
        return EXIT_CANCELLED
    except Exception as exc:  # a bug: full traceback in the log, one line for the user
        log_path = _log_to_run(_run_dir(args), logging.ERROR, "internal error", exc_info=True)
        where = f"; the traceback is in {log_path}" if log_path else ""
        if log_path is None:
            logging.getLogger("nfsd").addHandler(logging.StreamHandler(sys.stderr))
            logger.exception("internal error")
        events.emit("error", kind="internal", message=f"internal error: {type(exc).__name__}: {exc}{where}.")
        return EXIT_INTERNAL
    finally:
        events.detach()
        detach_logs()
        release_run_dirs()


def _run_dir(args: argparse.Namespace) -> Path | None:
    """The run folder a command works in, once known (commands may set `args.out` as they go)."""
    return getattr(args, "out", None) or getattr(args, "resume", None)


def _log_to_run(out: Path | None, level: int, message: str, exc_info: bool = False) -> Path | None:
    """Log to the run's log file, attaching it if the command failed before doing so."""
    path = next((Path(h.baseFilename) for h in logger.handlers if isinstance(h, logging.FileHandler)), None)
    if path is None and out is not None:
        path = attach_log(Path(out))
    if path is not None:
        logger.log(level, message, exc_info=exc_info)
    return path
