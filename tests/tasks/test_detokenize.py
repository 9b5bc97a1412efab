"""Token ids to text without `tokenizers` (lambdalite.tasks.detokenize), against `tokenizers` itself."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from lambdalite.errors import BundleError
from lambdalite.tasks.detokenize import Detokenizer, byte_decoder

from helpers import hf_folders


def _spec(tokenizer: Any) -> tuple[list[str], dict[str, Any]]:
    """What `lambdalite import` writes for this tokenizer (the vocabulary by id and the text spec)."""
    backend = tokenizer.backend_tokenizer
    described = json.loads(backend.to_str())
    vocab = [backend.id_to_token(i) or "" for i in range(len(tokenizer))]
    skip = sorted(t["id"] for t in described["added_tokens"] if t["special"])
    decoder = described["decoder"]
    if decoder["type"] == "ByteLevel":
        return vocab, {"decoder": "byte-level", "skip_ids": skip}
    return vocab, {
        "decoder": "wordpiece",
        "prefix": decoder["prefix"],
        "cleanup": decoder["cleanup"],
        "skip_ids": skip,
        "clean_up_tokenization_spaces": tokenizer.clean_up_tokenization_spaces,
    }


TOKENIZERS = {"bpe": hf_folders.bpe_tokenizer, "wordpiece": hf_folders.wordpiece_tokenizer}


@pytest.mark.parametrize("cleanup", [False, True])
@pytest.mark.parametrize("kind", sorted(TOKENIZERS))
def test_random_ids_decode_as_the_tokenizer_decodes(kind: str, cleanup: bool) -> None:
    tokenizer = TOKENIZERS[kind]()
    # Added tokens of every sort: ordinary ones (one with CJK that BERT's normaliser spaces out,
    # one with a space, one that looks like a continuation), and a special one.
    tokenizer.add_tokens(["東京x", "ab cd", "##zz", " lead"])
    tokenizer.add_special_tokens({"additional_special_tokens": ["<extra>"]})
    tokenizer.clean_up_tokenization_spaces = cleanup
    vocab, spec = _spec(tokenizer)
    decode = Detokenizer(vocab, spec)
    rng = random.Random(0)
    for _ in range(3000):
        ids = [rng.randrange(len(vocab)) for _ in range(rng.randrange(0, 14))]
        assert decode(ids) == tokenizer.decode(ids, skip_special_tokens=True), ids
    for sentence in hf_folders.SENTENCES:  # real text, punctuation and contractions included
        ids = tokenizer(sentence)["input_ids"]
        assert decode(ids) == tokenizer.decode(ids, skip_special_tokens=True)


def test_byte_level_broken_utf8_becomes_replacement_characters() -> None:
    tokenizer = hf_folders.bpe_tokenizer()
    vocab, spec = _spec(tokenizer)
    decode = Detokenizer(vocab, spec)
    table = {v: k for k, v in byte_decoder().items()}
    lone = [vocab.index(table[b]) for b in (0xE6, 0x9D)]  # the first two bytes of 東, without the third
    assert decode(lone) == tokenizer.decode(lone) == "\ufffd"
    assert "\ufffd" in decode([*lone, vocab.index("a")])


def test_the_byte_table_is_gpt2s() -> None:
    from tokenizers import pre_tokenizers

    table = byte_decoder()
    assert sorted(table.values()) == list(range(256))
    assert set(table) == set(pre_tokenizers.ByteLevel.alphabet())
    assert table["Ġ"] == ord(" ") and table["Ċ"] == ord("\n") and table["!"] == ord("!")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("wordpiece", "options.text: expected an object"),
        ({"decoder": "metaspace"}, "options.text.decoder: expected one of byte-level, wordpiece"),
        ({"decoder": "wordpiece", "prefix": ""}, "options.text.prefix: expected a non-empty string"),
        ({"decoder": "byte-level", "skip_ids": [1, "2"]}, "options.text.skip_ids"),
        ({"decoder": "byte-level", "cleanup": "yes"}, "options.text.cleanup: expected true or false"),
        ({"decoder": "byte-level", "lowercase": True}, "options.text.lowercase: unknown key"),
    ],
)
def test_bad_specs_are_refused_naming_the_key(spec: Any, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        Detokenizer(["a", "b"], spec)


def test_ids_outside_the_vocabulary_are_left_out() -> None:
    decode = Detokenizer(["a", "##b", "c"], {"decoder": "wordpiece", "skip_ids": [2]})
    assert decode([0, 1, 2, 7, -1, 0]) == "ab a"
