"""Hugging Face captioner folders at real sizes, random weights, built offline (benchmarks only).

    seed003:   a transformer captioner at seed 003's sizes: 196 image positions (ViT-Base, 224x224,
               16x16 patches; seed 003's ResNet-101 gives 14x14), a GPT-2 decoder of width 512
               (seed 003's LSTM: 512), 6 layers, 8 heads, over a 9,490-token vocabulary.
    vit-gpt2:  the most used layout at its real sizes (nlpconnect/vit-gpt2-image-captioning):
               ViT-Base + GPT-2 base (768 wide, 12 layers, 50,257 tokens).

The tokenizer is a byte-level BPE of the right size made up here (`synthetic_bpe`): a valid
tokenizer.json whose merges build every token from two earlier ones.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIZES: dict[str, dict[str, int]] = {
    "seed003": {"vocab": 9490, "n_embd": 512, "n_layer": 6, "n_head": 8},
    "vit-gpt2": {"vocab": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12},
}


def synthetic_bpe(vocab_size: int, seed: int = 0) -> dict[str, Any]:
    """A GPT-2-shaped tokenizer.json: the 256 byte symbols, then merges of two earlier tokens,
    and `<|endoftext|>` last (special), vocab_size tokens in all."""
    from tokenizers import pre_tokenizers

    rng = random.Random(seed)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    tokens = list(alphabet)
    merges = []
    while len(tokens) < vocab_size - 1:
        a, b = rng.choice(tokens[: 256 + len(tokens) // 2]), rng.choice(alphabet)
        if a + b in vocab or len(a + b) > 12:
            continue
        vocab[a + b] = len(tokens)
        tokens.append(a + b)
        merges.append(f"{a} {b}")
    eos = len(tokens)
    vocab["<|endoftext|>"] = eos
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": eos,
                "content": "<|endoftext|>",
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": True,
                "special": True,
            }
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def build(out: Path, size: str) -> Path:
    """Write the folder (once): config, weights, generation config, tokenizer, image processor."""
    if (out / "config.json").is_file():
        return out
    import torch
    from tokenizers import Tokenizer
    from transformers import (
        GPT2Config,
        GPT2TokenizerFast,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,
    )
    from transformers.utils import logging

    logging.set_verbosity_error()
    s = SIZES[size]
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.from_str(json.dumps(synthetic_bpe(s["vocab"])))
    fast = GPT2TokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    eos = s["vocab"] - 1
    torch.manual_seed(0)
    config = VisionEncoderDecoderConfig(
        encoder=ViTConfig(image_size=224, patch_size=16),  # ViT-Base: 768 wide, 12 layers, 197 positions
        decoder=GPT2Config(
            vocab_size=s["vocab"],
            n_positions=64,
            n_embd=s["n_embd"],
            n_layer=s["n_layer"],
            n_head=s["n_head"],
            add_cross_attention=True,
            is_decoder=True,
            bos_token_id=eos,
            eos_token_id=eos,
        ),
    )
    config.decoder_start_token_id = config.pad_token_id = config.eos_token_id = eos
    model = VisionEncoderDecoderModel(config=config).eval()
    gc = model.generation_config
    gc.decoder_start_token_id = gc.bos_token_id = gc.pad_token_id = gc.eos_token_id = eos
    gc.max_length = 21  # the start token and 20 more: a 20-token caption
    model.save_pretrained(out)
    fast.save_pretrained(out)
    ViTImageProcessorPil(size={"height": 224, "width": 224}).save_pretrained(out)
    return out
