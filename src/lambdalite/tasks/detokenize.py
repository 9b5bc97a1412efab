"""Token ids to text, as a Hugging Face tokenizer decodes them, without the `tokenizers` package.

`tokenizer.decode(ids, skip_special_tokens=True)` for the decoders captioners use: byte-level
BPE (GPT-2) and WordPiece (BERT, BLIP). `lambdalite import` writes the vocabulary (one token
per line, the line number being the id) and a spec in the manifest's `options.text`:

    {"decoder": "byte-level", "skip_ids": [50256]}
    {"decoder": "wordpiece", "prefix": "##", "cleanup": true, "skip_ids": [0, 101, 102, 30522],
     "clean_up_tokenization_spaces": false}

- `skip_ids`: the special tokens (and ids the tokenizer does not know), left out as
  `skip_special_tokens=True` leaves them out.
- `byte-level`: each token's characters map back to bytes through GPT-2's byte-to-unicode
  table (a token with a character outside it keeps its UTF-8 bytes); the bytes of all tokens
  are joined and read as UTF-8, an invalid sequence becoming U+FFFD.
- `wordpiece`: every token but the first gets a space before it, unless it starts with
  `prefix`, which is dropped instead; `cleanup` removes the spaces tokenization put before
  punctuation and in contractions, token by token (the decoder's own rule).
- `clean_up_tokenization_spaces`: transformers' cleanup of the whole text afterwards (its
  tokenizer setting; never applied to BPE tokenizers, as transformers does not).

Loading it is reading a text file: nothing on the function's cold path but Python itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lambdalite.errors import BundleError

__all__ = ["DECODERS", "Detokenizer", "byte_decoder"]

DECODERS = ("byte-level", "wordpiece")
_WORDPIECE_CLEANUP = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" do not", " don't"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)
_TRANSFORMERS_CLEANUP = tuple(pair for pair in _WORDPIECE_CLEANUP if pair[0] != " do not")


def byte_decoder() -> dict[str, int]:
    """GPT-2's table from the printable characters byte-level BPE uses back to the bytes they stand for."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _replace_all(text: str, pairs: Sequence[tuple[str, str]]) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


class Detokenizer:
    """Decodes token ids with a vocabulary and an `options.text` spec (see the module docstring)."""

    def __init__(self, vocab: Sequence[str], spec: Any) -> None:
        if not isinstance(spec, dict):
            raise BundleError(f"lambdalite.json: options.text: expected an object, got {spec!r}")
        known = {"decoder", "skip_ids", "prefix", "cleanup", "clean_up_tokenization_spaces"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise BundleError(
                f"lambdalite.json: options.text.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})"
            )
        kind = spec.get("decoder")
        if kind not in DECODERS:
            raise BundleError(
                f"lambdalite.json: options.text.decoder: expected one of {', '.join(DECODERS)}, got {kind!r}"
            )
        skip = spec.get("skip_ids", [])
        if not isinstance(skip, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in skip):
            raise BundleError(f"lambdalite.json: options.text.skip_ids: expected a list of token ids, got {skip!r}")
        flags = {}
        for key, default in (("cleanup", True), ("clean_up_tokenization_spaces", False)):
            flags[key] = spec.get(key, default)
            if not isinstance(flags[key], bool):
                raise BundleError(f"lambdalite.json: options.text.{key}: expected true or false, got {flags[key]!r}")
        prefix = spec.get("prefix", "##")
        if kind == "wordpiece" and (not isinstance(prefix, str) or not prefix):
            raise BundleError(f"lambdalite.json: options.text.prefix: expected a non-empty string, got {prefix!r}")
        self.vocab = vocab
        self.skip = frozenset(skip)
        self.kind = kind
        self.prefix = prefix
        self.cleanup = flags["cleanup"]
        self.final_cleanup = flags["clean_up_tokenization_spaces"] and kind != "byte-level"
        self._join: Callable[[list[str]], str] = self._bytes if kind == "byte-level" else self._wordpiece
        self._bytes_of: Mapping[str, int] = byte_decoder() if kind == "byte-level" else {}

    def __call__(self, ids: Sequence[int]) -> str:
        tokens = [self.vocab[i] for i in ids if i not in self.skip and 0 <= i < len(self.vocab)]
        text = self._join(tokens)
        return _replace_all(text, _TRANSFORMERS_CLEANUP) if self.final_cleanup else text

    def _bytes(self, tokens: list[str]) -> str:
        table = self._bytes_of
        out = bytearray()
        for token in tokens:
            try:
                out += bytes(table[c] for c in token)
            except KeyError:  # not a byte-level token (an added one): its own UTF-8 bytes
                out += token.encode("utf-8")
        return out.decode("utf-8", errors="replace")

    def _wordpiece(self, tokens: list[str]) -> str:
        parts = []
        for i, token in enumerate(tokens):
            if i:
                token = token.replace(self.prefix, "", 1) if token.startswith(self.prefix) else " " + token
            parts.append(_replace_all(token, _WORDPIECE_CLEANUP) if self.cleanup else token)
        return "".join(parts)
