"""Prompts longer than the text encoder takes: cut, with a `warning` event that says so.

CLIP's text encoder reads 77 tokens (75 after its start and end tokens); diffusers and threestudio
cut a longer prompt and warn, and so does this. Refusing would turn a long but usable description
into an error, while what the encoder sees of it is exactly its first tokens. Unlike a plain cut, room
is kept for the view suffix (", overhead view") that the 3-D run appends: cut after it, every view
would read the same text, and the object would lose its view-dependent prompts."""

from __future__ import annotations

from typing import Any

from .config import NFSD_NEGATIVE_PROMPT
from .events import EventStream


def fit_prompt(tokenizer: Any, text: str, events: EventStream | None, *, reserved: str = "",
               name: str = "prompt") -> str:
    """`text`, cut to the tokens the encoder takes when `reserved` follows it; a cut is reported as
    a `warning` event (kind `prompt_truncated`) naming how many tokens were kept."""
    room = tokenizer.model_max_length - 2 - len(tokenizer.tokenize(reserved))
    ids = tokenizer(text, add_special_tokens=False, verbose=False).input_ids  # no warning of its own
    if len(ids) <= room:
        return text
    kept = tokenizer.decode(ids[:room]).strip()
    if events is not None:
        events.emit("warning", kind="prompt_truncated", tokens_given=len(ids), tokens_kept=room,
                    message=f"the {name} is {len(ids)} tokens long and the text encoder takes {room} of them "
                            f"here, so it was cut after \"{' '.join(kept.split()[-6:])}\"; shorten it to "
                            "keep what comes after.")
    return kept


def fit_negative_prompt(tokenizer: Any, text: str, events: EventStream | None) -> str:
    """The negative prompt, cut like `fit_prompt`; only one the user gave is worth a warning: the
    default (the NFSD paper's) is longer than the small built-in models read (toy-shapes: 16
    tokens), and every run on them would warn of a cut nobody asked for."""
    return fit_prompt(tokenizer, text, events if text != NFSD_NEGATIVE_PROMPT else None, name="negative prompt")
