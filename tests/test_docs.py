"""The README and docs/ against the real command line: every `nfsd` command in a command block
parses with the `nfsd` parser, every `--flag` they name in inline code exists, every relative
link points at a file, and the README's test command is the one CI runs. Nothing is executed:
the commands go through `build_parser().parse_args`."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from nfsd_backend.cli import build_parser
from nfsd_backend.errors import BadConfig

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = {"", "sh", "bash", "shell", "console"}  # fenced blocks whose lines are commands
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
SEPARATORS = {"&&", "||", ";", "|"}


def nfsd_arguments(tokens: list[str]) -> list[str] | None:
    """The arguments after `nfsd` (or `python -m nfsd_backend`); None for any other program."""
    if tokens[:1] == ["nfsd"]:
        return tokens[1:]
    if len(tokens) >= 3 and tokens[0] in ("python", "python3") and tokens[1:3] == ["-m", "nfsd_backend"]:
        return tokens[3:]
    return None


def block_commands(text: str) -> list[list[str]]:
    """Every `nfsd` command in the shell blocks of a markdown text, as argument lists; a line may
    chain several commands with && (the README's first command does)."""
    commands = []
    for language, body in FENCE.findall(text):
        if language not in SHELL_BLOCK:
            continue
        for line in body.splitlines():
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError as exc:  # not a command line (a listing), unless it names nfsd
                assert not re.search(r"\bnfsd\b", line), f"cannot split {line!r}: {exc}"
                continue
            segment: list[str] = []
            for token in [*tokens, "&&"]:
                if token not in SEPARATORS:
                    segment.append(token)
                    continue
                arguments = nfsd_arguments(segment) if segment else None
                if arguments is not None:
                    commands.append(arguments)
                segment = []
    return commands


def inline_flags(text: str) -> list[tuple[str | None, str]]:
    """(command, flag) for every `--flag` named in inline code outside the blocks: a bare flag
    span (`--low-vram`, `--preset draft`) has no command; a span that is an `nfsd` command names
    its subcommand. Spans of other programs (`python build.py --check`) are not nfsd's."""
    named = []
    for span in INLINE_CODE.findall(FENCE.sub("", text)):
        tokens = span.split()
        arguments = nfsd_arguments(tokens)
        if tokens[0].startswith("--"):
            named.append((None, tokens[0].split("=")[0]))
        elif arguments is not None:
            command = arguments[0] if arguments and not arguments[0].startswith("-") else None
            named += [(command, t.split("=")[0]) for t in arguments if t.startswith("--")]
    return named


def parser_flags(parser: argparse.ArgumentParser) -> dict[str | None, set[str]]:
    """The option strings of each subcommand, and of them all together under None."""
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags: dict[str | None, set[str]] = {name: set(sub._option_string_actions)
                                         for name, sub in subcommands.choices.items()}
    flags[None] = set(parser._option_string_actions).union(*flags.values())
    return flags


def parse_problem(parser: argparse.ArgumentParser, arguments: list[str]) -> str | None:
    """Why the parser refuses `arguments`, or None when they parse (`--help`, `--version` included)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(arguments)
    except BadConfig as exc:
        return exc.message
    except SystemExit as exc:  # --help and --version print and exit 0
        return None if exc.code == 0 else f"exit {exc.code}"
    return None


def unknown_flags(text: str, flags: dict[str | None, set[str]]) -> list[str]:
    return [f"{command or 'nfsd'} {flag}" for command, flag in inline_flags(text)
            if flag not in flags.get(command, flags[None])]


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_command_block_parses(parser, document):
    commands = block_commands(document.read_text(encoding="utf-8"))
    problems = {shlex.join(["nfsd", *c]): parse_problem(parser, c) for c in commands}
    assert {command: problem for command, problem in problems.items() if problem} == {}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_flag_named_exists(parser, document):
    assert unknown_flags(document.read_text(encoding="utf-8"), parser_flags(parser)) == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_relative_links_point_at_files(document):
    targets = [t.split("#")[0] for t in LINK.findall(document.read_text(encoding="utf-8"))
               if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert [t for t in targets if not (document.parent / t).exists()] == []


def test_the_readme_has_the_commands_that_matter(parser):
    commands = block_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert ["generate", "a yellow cylinder", "--model", "toy-shapes", "--preset", "draft",
            "--out", "runs/yellow-cylinder"] in commands
    assert {c[0] for c in commands} >= {"generate", "image", "export", "doctor"}


def test_the_readme_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    command = ci[ci.index("# The README's test command (keep the two identical):") + 1]
    assert command in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()


# The checks themselves, on texts with known answers: each must catch what it is for.

def test_block_commands_finds_chained_and_module_commands():
    text = ("```\npython3 -m venv .venv && nfsd generate \"a cube\" --out runs/a  # a comment\n"
            "python -m nfsd_backend doctor --json\npip install x\n```\n"
            "```python\nnfsd = 1\n```\n")
    assert block_commands(text) == [["generate", "a cube", "--out", "runs/a"], ["doctor", "--json"]]


def test_a_bad_command_or_an_unknown_flag_is_caught(parser):
    flags = parser_flags(parser)
    assert parse_problem(parser, ["generate", "x", "--out", "o", "--no-such-flag"]) is not None
    assert parse_problem(parser, ["generate", "x", "--steps", "many"]) is not None
    assert parse_problem(parser, ["generate", "x", "--method", "sdi", "--out", "o"]) is None
    assert parse_problem(parser, ["--version"]) is None
    text = "Use `--low-vram`, `--no-such-flag`, `nfsd export RUN --resume R`, `python build.py --check`."
    assert unknown_flags(text, flags) == ["nfsd --no-such-flag", "export --resume"]
