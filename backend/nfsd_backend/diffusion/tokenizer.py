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


def _spell(pieces: list[str], merges: list[tuple[str, str]], vocab: dict[str, int]) -> None:
    """Add the merges that join `pieces` pair by pair, left to right, into one token."""
    while len(pieces) > 1:
        pair = (pieces[0], pieces[1])
        if pair not in merges:
            merges.append(pair)
        pieces = [pieces[0] + pieces[1]] + pieces[2:]
        vocab.setdefault(pieces[0], len(vocab))


def _load(folder: Path, vocab: dict[str, int], merges: list[tuple[str, str]], max_length: int) -> CLIPTokenizer:
    """Write the files (the special tokens last) and load them."""
    specials = {token: len(vocab) + i for i, token in enumerate(SPECIAL_TOKENS)}
    (folder / "vocab.json").write_text(json.dumps({**vocab, **specials}), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                         model_max_length=max_length, pad_token="<|endoftext|>")


def write_word_tokenizer(words: list[str], folder: Path, max_length: int = 32) -> CLIPTokenizer:
    """Write vocab.json + merges.txt for `words` into `folder` and return the loaded tokenizer.

    The merges spell every word out pair by pair, left to right, so BPE rebuilds each listed word
    as one token; letters, digits and punctuation are tokens too, so no input is ever unknown.
    BPE applies the best-ranked merge first wherever it occurs, so one word's merges can cut
    another apart ("low" inside "yellow"); such a word gets extra merges that join the pieces it
    falls into, until every word comes out whole.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab: dict[str, int] = {}
    for symbol in symbols:
        vocab.setdefault(symbol, len(vocab))
        vocab.setdefault(symbol + "</w>", len(vocab))
    words = sorted(set(words))
    merges: list[tuple[str, str]] = []
    for word in words:
        _spell(list(word[:-1]) + [word[-1] + "</w>"], merges, vocab)
    for _ in range(len(words) + 1):
        tokenizer = _load(folder, vocab, merges, max_length)
        broken = [pieces for pieces in (tokenizer.tokenize(word) for word in words) if len(pieces) > 1]
        if not broken:
            break
        for pieces in broken:
            _spell(pieces, merges, vocab)
    else:
        raise RuntimeError("could not make every word a single token")
    tokenizer.save_pretrained(folder)
    return tokenizer
