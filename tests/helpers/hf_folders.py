"""Hugging Face captioner folders built offline: tiny configs, random weights, tokenizers trained here.

Nothing is downloaded (HF_HUB_OFFLINE=1): the models come from `ViTConfig` + `GPT2Config`
(a `VisionEncoderDecoderModel`) and `BlipConfig`; the tokenizers are trained with the
`tokenizers` package on the few sentences below (byte-level BPE for GPT-2, WordPiece for
BLIP's BERT). Each folder is what `save_pretrained` writes: config.json,
generation_config.json, model.safetensors, tokenizer.json, tokenizer_config.json and
preprocessor_config.json.

Random weights give flat, repetitive captions that never end. So that the tests exercise the
interesting paths (captions of different lengths, beams that end early), the weights are drawn
with a larger spread and the end token is one the model actually picks now and then.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCES = [
    "a red circle and a blue square",
    "two green triangles on the left of a yellow square",
    "a yellow square, a red circle and three blue circles!",
    "the cat's hat isn't red? it is blue.",
    "a man riding a horse on a beach",
    "two dogs playing with a frisbee in the park",
    "naïve café, crème brûlée: 東京 🙂 ok",
    "don't stop - we're here; they've gone",
]


def _quiet() -> None:
    import warnings

    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    warnings.filterwarnings("ignore")


def bpe_tokenizer(vocab_size: int = 300) -> Any:
    """A GPT-2 style tokenizer (byte-level BPE, `<|endoftext|>` as bos, eos and unk), trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES, trainer)
    return GPT2TokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )


def wordpiece_tokenizer(vocab_size: int = 200) -> Any:
    """A BERT style tokenizer (lower-cased WordPiece) with BLIP's `[DEC]` bos and `[ENC]`, trained here."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False
    )
    tok.train_from_iterator(SENTENCES, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = BertTokenizerFast(tokenizer_object=tok, bos_token="[DEC]", additional_special_tokens=["[ENC]"])
    fast.add_special_tokens({"bos_token": "[DEC]"})
    return fast


def _spread(model: Any, std: float, seed: int) -> None:
    """Redraw every weight matrix with a larger spread (norms stay as they are)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def vit_gpt2(
    out: Path,
    *,
    seed: int = 0,
    image_size: int = 32,
    eos: int | None = None,
    generation: dict[str, Any] | None = None,
    hidden: int = 24,
    layers: int = 2,
    heads: int = 2,
    std: float = 0.1,
) -> Path:
    """A ViT encoder + GPT-2 decoder `VisionEncoderDecoderModel` folder (image_size x image_size input).

    `eos` picks the end token (by default `<|endoftext|>`, which random weights never choose);
    `generation` is written into generation_config.json."""
    _quiet()
    import torch
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,
    )

    tokenizer = bpe_tokenizer()
    special = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    eos = special if eos is None else eos
    torch.manual_seed(seed)
    encoder = ViTConfig(
        image_size=image_size,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
    )
    decoder = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=hidden,
        n_layer=layers,
        n_head=heads,
        add_cross_attention=True,
        is_decoder=True,
        bos_token_id=special,
        eos_token_id=eos,
    )
    config = VisionEncoderDecoderConfig(encoder=encoder, decoder=decoder)
    config.decoder_start_token_id = special
    config.pad_token_id = special
    config.eos_token_id = eos
    model = VisionEncoderDecoderModel(config=config).eval()
    _spread(model, std, seed)
    gc = model.generation_config
    gc.decoder_start_token_id, gc.bos_token_id, gc.pad_token_id, gc.eos_token_id = special, special, special, eos
    for key, value in (generation or {}).items():
        setattr(gc, key, value)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    ViTImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    ).save_pretrained(out)
    return out


def blip(
    out: Path,
    *,
    seed: int = 0,
    image_size: int = 32,
    generation: dict[str, Any] | None = None,
    sep: str | None = None,
    std: float = 0.1,
) -> Path:
    """A `BlipForConditionalGeneration` folder: BLIP's vision tower and BERT-style text decoder, tiny.

    `sep` names the token the text config calls sep (BLIP's end of caption; `[SEP]` by default)."""
    _quiet()
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil, BlipProcessor

    tokenizer = wordpiece_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(seed)
    config = BlipConfig(
        vision_config={
            "image_size": image_size,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "projection_dim": 16,
        },
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 24,
            "encoder_hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "projection_dim": 16,
            "bos_token_id": ids("[DEC]"),
            "pad_token_id": ids("[PAD]"),
            "eos_token_id": ids("[SEP]"),
            "sep_token_id": ids(sep or "[SEP]"),
        },
        projection_dim=16,
    )
    model = BlipForConditionalGeneration(config).eval()
    _spread(model, std, seed)
    for key, value in (generation or {}).items():
        setattr(model.generation_config, key, value)
    model.save_pretrained(out)
    processor = BlipProcessor(
        image_processor=BlipImageProcessorPil(size={"height": image_size, "width": image_size}), tokenizer=tokenizer
    )
    processor.save_pretrained(out)
    return out
