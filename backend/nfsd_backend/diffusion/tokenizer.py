"""A CLIP tokenizer over a small closed word list, for models built or trained here (`tiny-random`,
`toy-shapes`). It is a real `CLIPTokenizer` (written to a folder, loaded back), so these models
save and load exactly like Stable Diffusion: whole words are single tokens, anything else falls
back to single characters."""

from __future__ import annotations

import json
import string
from pathlib import Path

from transformers import CLIPTokenizer

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def write_word_tokenizer(words: list[str], folder: Path, max_length: int = 32) -> CLIPTokenizer:
    """Write vocab.json + merges.txt for `words` into `folder` and return the loaded tokenizer.

    The merges spell every word out pair by pair, left to right, so BPE rebuilds each listed word
    as one token; letters, digits and punctuation are tokens too, so no input is ever unknown.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab: dict[str, int] = {}
    for symbol in symbols:
        vocab.setdefault(symbol, len(vocab))
        vocab.setdefault(symbol + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for word in sorted(set(words)):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            if pair not in merges:
                merges.append(pair)
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            vocab.setdefault(pieces[0], len(vocab))
    for token in SPECIAL_TOKENS:
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                              model_max_length=max_length, pad_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    return tokenizer
