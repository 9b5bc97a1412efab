"""Hugging Face captioner folders into image-to-text bundles (`lambdalite import DIR`).

A folder as `save_pretrained` writes it (or as the Hub serves it) for a
`VisionEncoderDecoderModel` (for example ViT + GPT-2) or a `BlipForConditionalGeneration`:

    config.json                  the architecture (model_type "vision-encoder-decoder" or "blip")
    model.safetensors            the weights
    generation_config.json       what generate does by default (BLIP's generate reads its text
                                 decoder's settings instead, as transformers does)
    tokenizer.json               the tokenizer (+ tokenizer_config.json)
    preprocessor_config.json     the image processor (or processor_config.json's "image_processor")

becomes a bundle of three files and a manifest:

- `encoder.onnx`: pixels to the decoder's cross-attention keys and values, one pair per layer
  (`cross_{i}_key`, `cross_{i}_value`): computed once per image, never per token.
- `decoder.onnx`: one generation step with a key/value cache. It takes the new tokens
  `input_ids` (B, T), the cache so far (`past_{i}_key`, `past_{i}_value`, empty at first) and
  the cross-attention keys and values, and returns the next token's `logits` (B, V) and the
  cache grown by T (`present_{i}_key`, `present_{i}_value`): a step costs the same at the 20th
  token as at the first. The manifest's `decoder` section names all of these.
- `vocab.txt`: the tokenizer's tokens by id, decoded in the function by
  `lambdalite.tasks.detokenize` as the tokenizer does (checked here against it on every token and
  on random sequences), so the function needs neither `tokenizers` nor transformers.
- options: generate's settings (start, end ids, max_length, num_beams, length_penalty,
  early_stopping, min_length, ...; `lambdalite.tasks.generation`) and the input spec mapped
  exactly from the image processor (a resize to a fixed height x width, rescale, mean/std,
  resampling; anything the bundle cannot express is refused).

Both ONNX files are exported with torch from the transformers model (attention in eager mode)
and checked against it: the logits of several steps, and the captions of test images, greedy and
beam, against `model.generate` on the same pixels (and the preprocessing against the image
processor's). Needs torch, onnx, transformers and tokenizers (the `export` extra), never at serving.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from lambdalite.core.bundle import MANIFEST_NAME, Bundle, DecoderSpec, InputSpec, OutputSpec, write_bundle
from lambdalite.core.progress import Progress, Quiet
from lambdalite.errors import BundleError, EngineError, UsageError

if TYPE_CHECKING:
    import torch

__all__ = ["ARCHITECTURES", "GENERATE_FLAGS", "CaptionerOptions", "import_captioner", "is_captioner"]

ARCHITECTURES = {"vision-encoder-decoder": "VisionEncoderDecoderModel", "blip": "BlipForConditionalGeneration"}
# generate() keyword arguments `lambdalite import` takes as flags (they override the folder's settings).
GENERATE_FLAGS = ("num_beams", "max_length", "max_new_tokens", "length_penalty", "min_length", "early_stopping")
# generation_config keys lambdalite reproduces, or that change nothing about greedy/beam results.
_GENERATION_KEYS = {
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "decoder_start_token_id",
    "max_length",
    "max_new_tokens",
    "min_length",
    "min_new_tokens",
    "num_beams",
    "length_penalty",
    "early_stopping",
    "no_repeat_ngram_size",
    "repetition_penalty",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "suppress_tokens",
    "begin_suppress_tokens",
    "num_return_sequences",  # lambdalite returns every kept beam as `alternatives`
    "do_sample",  # refused below when true
    "temperature",  # sampling only: generate ignores them without do_sample
    "top_k",
    "top_p",
    "typical_p",
    "use_cache",
    "output_attentions",
    "output_hidden_states",
    "output_scores",
    "output_logits",
    "return_dict_in_generate",
    "remove_invalid_values",
    "transformers_version",
    "_from_model_config",
}
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL's codes, as image processors store them
_CHECK_SEEDS = range(2_000_000, 2_000_006)  # zoo scenes (never used for training) as test images


class CaptionerOptions(NamedTuple):
    """What `lambdalite import` takes from flags for a captioner."""

    name: str | None = None
    version: str = "1.0.0"
    generate: Mapping[str, Any] = MappingProxyType({})  # generate() keyword arguments (GENERATE_FLAGS)
    prompt: str | None = None  # BLIP: a text prompt the caption continues ("a picture of")
    check_images: Sequence[Path] = ()  # test images (default: synthetic scenes)


class Report(NamedTuple):
    """What the import checked, printed by the command and kept in the manifest's metadata."""

    max_logit_difference: float
    greedy_match: tuple[int, int]
    beam_match: tuple[int, int]
    beams: int
    pixel_difference: Mapping[str, tuple[float, int]]  # per image format: the largest difference, images
    own_preprocessing_match: tuple[int, int]

    def lines(self) -> list[str]:
        g, b, o = self.greedy_match, self.beam_match, self.own_preprocessing_match
        return [
            f"ONNX against transformers: largest logit difference {self.max_logit_difference:.1e}",
            f"captions against model.generate on the same pixels: greedy {g[0]}/{g[1]} identical, "
            f"beam {self.beams} {b[0]}/{b[1]} identical (token for token)",
            "preprocessing against the image processor: largest pixel difference "
            + ", ".join(f"{d:.1e} on {n} {fmt}" for fmt, (d, n) in sorted(self.pixel_difference.items()))
            + (" (lambdalite decodes large JPEGs at a reduced scale)" if "JPEG" in self.pixel_difference else ""),
            f"greedy captions through each side's own preprocessing: {o[0]}/{o[1]} identical",
        ]


def read_config(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{folder}/config.json cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{folder}/config.json is not a JSON object")
    return data


def is_captioner(folder: Path) -> bool:
    """True for a Hugging Face folder holding a captioner lambdalite imports (see ARCHITECTURES)."""
    if not (folder / "config.json").is_file():
        return False
    config = read_config(folder)
    kind = config.get("model_type")
    if kind == "blip":
        return "BlipForConditionalGeneration" in (config.get("architectures") or ["BlipForConditionalGeneration"])
    return kind in ARCHITECTURES


def _needs() -> None:
    import importlib.util

    missing = [m for m in ("torch", "onnx", "transformers", "tokenizers") if importlib.util.find_spec(m) is None]
    if missing:
        raise EngineError(
            f"importing a Hugging Face model needs torch, onnx, transformers and tokenizers "
            f"(pip install 'lambdalite[export]'); {', '.join(missing)} missing"
        )


# -- the parts ------------------------------------------------------------------------------------


class _Parts(NamedTuple):
    """A loaded model, taken apart the way generate uses it."""

    model: Any  # the transformers model
    kind: str  # "vision-encoder-decoder" or "blip"
    lm: Any  # the language model that generate runs (VED's decoder, BLIP's text_decoder)
    features: Callable[[torch.Tensor], torch.Tensor]  # pixels -> the decoder's encoder_hidden_states
    generate: Callable[..., torch.Tensor]  # (pixel_values, **kwargs) -> sequences, prompt included
    own: Any  # the GenerationConfig the folder sets, as generate reads it (unset values None)
    generation: Any  # the same with generate's defaults filled in, as generate runs it
    prompt: list[int]  # the decoder's first tokens
    eos: list[int]
    positions: int | None  # the decoder's longest sequence
    length_cap: int | None  # generate caps its default max_length at this (the generating config's positions)


def _load(folder: Path, kind: str, prompt_text: str | None, tokenizer: Any) -> _Parts:
    import torch
    from transformers import BlipForConditionalGeneration, VisionEncoderDecoderModel

    common = {"attn_implementation": "eager", "local_files_only": True, "dtype": torch.float32}
    if kind == "vision-encoder-decoder":
        if prompt_text is not None:
            raise UsageError("--prompt is for BLIP; a VisionEncoderDecoderModel starts from its decoder start token")
        model = VisionEncoderDecoderModel.from_pretrained(folder, **common).eval()
        project = model.encoder.config.hidden_size != model.decoder.config.hidden_size and (
            getattr(model.decoder.config, "cross_attention_hidden_size", None) is None
        )

        def features(pixels: torch.Tensor) -> torch.Tensor:
            hidden: torch.Tensor = model.encoder(pixel_values=pixels).last_hidden_state
            return model.enc_to_dec_proj(hidden) if project else hidden

        own = model.generation_config
        gc, _ = model._prepare_generation_config(None)  # generate's own merge of the folder's and its defaults
        start = gc.decoder_start_token_id if gc.decoder_start_token_id is not None else gc.bos_token_id
        if start is None:
            raise UsageError(f"{folder}: generation_config.json sets neither decoder_start_token_id nor bos_token_id")
        prompt = [int(start)]

        def generate(pixels: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return model.generate(pixel_values=pixels, **kwargs)  # type: ignore[no-any-return]

        lm = model.decoder
        positions = getattr(lm.config, "n_positions", None) or getattr(lm.config, "max_position_embeddings", None)
        cap = getattr(model.config, "max_position_embeddings", None)
    else:
        model = BlipForConditionalGeneration.from_pretrained(folder, **common).eval()
        text = model.config.text_config

        def features(pixels: torch.Tensor) -> torch.Tensor:
            return model.vision_model(pixel_values=pixels)[0]  # type: ignore[no-any-return]

        # BlipForConditionalGeneration.generate runs its text decoder's generate with these ids
        # (and that decoder's generation settings, not the folder's generation_config.json).
        own = model.text_decoder.generation_config
        gc, _ = model.text_decoder._prepare_generation_config(
            None, eos_token_id=text.sep_token_id, pad_token_id=text.pad_token_id
        )
        prompt = [int(text.bos_token_id)]
        if prompt_text:
            ids = list(tokenizer(prompt_text)["input_ids"])
            prompt = [int(text.bos_token_id), *map(int, ids[1:-1])]  # as generate: bos first, the last ([SEP]) off
        prompt_tensor = torch.tensor([prompt])

        def generate(pixels: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            ids = prompt_tensor.repeat(pixels.shape[0], 1)
            # BLIP's generate drops the last prompt token (its [SEP]): give it one to drop.
            ids = torch.cat([ids, torch.full((pixels.shape[0], 1), text.sep_token_id)], 1)
            return model.generate(pixel_values=pixels, input_ids=ids, **kwargs)  # type: ignore[no-any-return]

        lm = model.text_decoder
        positions = getattr(text, "max_position_embeddings", None)
        cap = getattr(lm.config, "max_position_embeddings", None)
    eos = gc.eos_token_id
    eos_ids = [] if eos is None else [int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])]
    return _Parts(model, kind, lm, features, generate, own, gc, prompt, eos_ids, positions, cap)


def _settings(parts: _Parts, flags: Mapping[str, Any], source: str) -> dict[str, Any]:
    """generate's settings as manifest options (`lambdalite.tasks.generation`), flags applied as
    generate applies its keyword arguments; anything lambdalite cannot reproduce is refused."""
    unknown = sorted(k for k in parts.own.to_diff_dict() if k not in _GENERATION_KEYS)
    if unknown:
        raise BundleError(
            f"{source}: generation setting {unknown[0]}={getattr(parts.own, unknown[0], None)!r} is not something "
            f"lambdalite's greedy and beam search reproduce (it handles: {', '.join(sorted(_GENERATION_KEYS))})"
        )
    gc = parts.generation
    gc.update(**flags)
    if gc.do_sample:
        raise BundleError(f"{source}: generation_config sets do_sample: lambdalite captions are greedy or beam search")
    if (gc.num_beam_groups or 1) > 1 or gc.diversity_penalty:
        raise BundleError(f"{source}: group beam search (num_beam_groups, diversity_penalty) is not supported")
    max_length = gc.max_length
    if gc.max_new_tokens is not None:
        max_length = len(parts.prompt) + gc.max_new_tokens
    elif flags.get("max_length") is None and parts.own.max_length is None:
        # Nobody set max_length: generate then makes 20 *new* tokens (capped at the positions).
        max_length = gc.max_length + len(parts.prompt)
        if parts.length_cap:
            max_length = min(max_length, parts.length_cap)
    if max_length <= len(parts.prompt):
        raise UsageError(
            f"{source}: max_length {max_length} leaves no room after the {len(parts.prompt)} prompt tokens"
        )
    if parts.positions and max_length > parts.positions:
        raise UsageError(f"{source}: max_length {max_length} is more than the decoder's {parts.positions} positions")
    forced_eos = gc.forced_eos_token_id
    options: dict[str, Any] = {
        "search": "transformers",
        "prompt_ids": parts.prompt,
        "eos_ids": parts.eos,
        "beam_size": int(gc.num_beams),
        "max_length": int(max_length),
        "beam_size_limit": max(16, int(gc.num_beams)),
        "max_length_limit": int(parts.positions or max(128, max_length)),
        "length_penalty": float(gc.length_penalty),
        "early_stopping": gc.early_stopping,
        "min_length": int(gc.min_length),
        "min_new_tokens": int(gc.min_new_tokens or 0),
        "repetition_penalty": float(gc.repetition_penalty),
        "no_repeat_ngram_size": int(gc.no_repeat_ngram_size),
        "forced_bos_id": gc.forced_bos_token_id,
        "forced_eos_id": list(forced_eos) if isinstance(forced_eos, list | tuple) else forced_eos,
        "suppress_ids": [int(i) for i in gc.suppress_tokens or []],
        "begin_suppress_ids": [int(i) for i in gc.begin_suppress_tokens or []],
    }
    return options


def _input_spec(folder: Path, source: str) -> tuple[InputSpec, Any]:
    """The bundle's input spec from the model's image processor, mapped exactly, and the processor."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{source}: no image processor (preprocessor_config.json): {exc}") from exc
    kind = type(processor).__name__
    settings = processor.to_dict()
    handled = {
        "do_resize",
        "size",
        "resample",
        "do_rescale",
        "rescale_factor",
        "do_normalize",
        "image_mean",
        "image_std",
        "do_convert_rgb",
        "image_processor_type",
        "processor_class",
        "feature_extractor_type",
    }

    def refuse(problem: str) -> BundleError:
        return BundleError(f"{source}: {kind}: {problem}; a bundle cannot express it, so it is not imported")

    for key, value in sorted(settings.items()):
        if key not in handled and value not in (None, False, 0, {}, []):
            raise refuse(f"the setting {key}={value!r}")
    if not processor.do_resize:
        raise refuse("do_resize is false (the model then takes pictures of any size)")
    size = _fields(processor.size)
    height, width = size.pop("height", None), size.pop("width", None)
    if not height or not width or size:
        raise refuse(f"size {size or processor.size} (only a resize to a fixed height and width is exact)")
    resample = int(processor.resample)
    if resample not in _RESAMPLE:
        raise refuse(f"resample {resample} (lambdalite resamples nearest (0), bilinear (2) or bicubic (3))")
    scale = float(processor.rescale_factor) if processor.do_rescale else 1.0
    mean = tuple(float(v) for v in processor.image_mean) if processor.do_normalize else (0.0, 0.0, 0.0)
    std = tuple(float(v) for v in processor.image_std) if processor.do_normalize else (1.0, 1.0, 1.0)
    if len(mean) != 3 or len(std) != 3:
        raise refuse(f"image_mean {mean} / image_std {std} (three channels expected)")
    spec = InputSpec(
        size=(int(height), int(width)),
        layout="NCHW",
        resize=None,
        crop="none",
        scale=scale,
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
        resample=_RESAMPLE[resample],  # type: ignore[arg-type]
        name="pixel_values",
    )
    return spec, processor


def _fields(size: Any) -> dict[str, Any]:
    """An image processor's size (a dict, or transformers' SizeDict) as its set fields."""
    import dataclasses

    items = size.items() if isinstance(size, Mapping) else dataclasses.asdict(size).items()
    return {k: v for k, v in items if v is not None}


def _text(folder: Path, vocab_size: int, source: str) -> tuple[Any, list[str], dict[str, Any]]:
    """The tokenizer, the vocabulary by id and the `options.text` spec that decodes as it does."""
    from transformers import AutoTokenizer

    from lambdalite.tasks.detokenize import Detokenizer

    if not (folder / "tokenizer.json").is_file():
        raise UsageError(f"{source}: no tokenizer.json (lambdalite decodes captions with the fast tokenizer's files)")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    backend = tokenizer.backend_tokenizer
    described = json.loads(backend.to_str())
    decoder = described.get("decoder") or {}
    kind = {"ByteLevel": "byte-level", "WordPiece": "wordpiece"}.get(str(decoder.get("type")))
    if kind is None:
        raise BundleError(
            f"{source}: tokenizer.json decodes with {decoder.get('type')!r}; lambdalite decodes ByteLevel (GPT-2) "
            f"and WordPiece (BERT, BLIP) tokenizers"
        )
    vocab = [backend.id_to_token(i) for i in range(vocab_size)]
    special = {int(t["id"]) for t in described.get("added_tokens", []) if t.get("special")}
    skip = sorted(special | {i for i, t in enumerate(vocab) if t is None})
    tokens = [t or "" for t in vocab]
    bad = next((t for t in tokens if "\n" in t or "\r" in t), None)
    if bad is not None:
        raise BundleError(f"{source}: the token {bad!r} holds a line break; the bundle's vocabulary is one per line")
    spec: dict[str, Any] = {"decoder": kind, "skip_ids": [i for i in skip if i < vocab_size]}
    if kind == "wordpiece":
        spec.update(
            prefix=decoder.get("prefix", "##"),
            cleanup=bool(decoder.get("cleanup", True)),
            clean_up_tokenization_spaces=bool(tokenizer.clean_up_tokenization_spaces),
        )
    detokenize = Detokenizer(tokens, spec)
    # Every token alone, then random sequences: the bundle's text must be the tokenizer's.
    rng = random.Random(0)
    known = [i for i, t in enumerate(vocab) if t is not None]
    trials = [[i] for i in known] + [[rng.choice(known) for _ in range(rng.randrange(1, 16))] for _ in range(500)]
    for ids in trials:
        want = tokenizer.decode(ids, skip_special_tokens=True)
        if detokenize(ids) != want:
            raise BundleError(
                f"{source}: lambdalite decodes the token ids {ids} as {detokenize(ids)!r} but the tokenizer gives "
                f"{want!r}; this tokenizer is not one lambdalite can decode"
            )
    return tokenizer, tokens, spec


# -- export -----------------------------------------------------------------------------------------


def _cross_cache(parts: _Parts, hidden: torch.Tensor) -> list[torch.Tensor]:
    """The decoder's cross-attention keys and values for encoder states `hidden`, per layer, as the
    decoder itself computes them on its first step (so no layer is reimplemented here)."""
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    token = torch.zeros(hidden.shape[0], 1, dtype=torch.long)
    parts.lm(input_ids=token, encoder_hidden_states=hidden, cache=cache, use_cache=True)
    out: list[torch.Tensor] = []
    for layer in cache.cross_attention_cache.layers:
        out += [layer.keys, layer.values]
    return out


def _names(layers: int) -> tuple[list[str], list[str], list[str]]:
    def pairs(prefix: str) -> list[str]:
        return [f"{prefix}_{i}_{kv}" for i in range(layers) for kv in ("key", "value")]

    return pairs("past"), pairs("present"), pairs("cross")


def _modules(parts: _Parts, layers: int, hidden_size: int) -> tuple[Any, Any]:
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = parts.model  # its weights are this module's parameters, not traced constants

        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(_cross_cache(parts, parts.features(pixel_values)))

    class Step(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = parts.model

        def forward(self, input_ids: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
            past, cross = caches[: 2 * layers], caches[2 * layers :]
            cache = EncoderDecoderCache(
                DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(layers)]),
                DynamicCache(ddp_cache_data=[(cross[2 * i], cross[2 * i + 1]) for i in range(layers)]),
            )
            # The cross-attention cache is full, so the decoder never reads the encoder states: any
            # tensor of the right rank tells it that this is a cross-attending step.
            stand_in = cross[0][:, 0, :1, :1].expand(-1, 1, hidden_size)
            out = parts.lm(input_ids=input_ids, encoder_hidden_states=stand_in, cache=cache, use_cache=True)
            grown: list[torch.Tensor] = []
            for layer in cache.self_attention_cache.layers:
                grown += [layer.keys, layer.values]
            return (out.logits[:, -1, :], *grown)

    return Encoder().eval(), Step().eval()


@contextlib.contextmanager
def _linear_layers(model: Any) -> Iterator[int]:
    """Swap GPT-2's `Conv1D` layers for the `nn.Linear` that computes the same, for the export only.

    Conv1D flattens its input to 2-D and back around an addmm, which the exporter records as a
    dozen shape nodes per layer (most of a one-token step's nodes); Linear is one MatMul. The
    original layers are put back afterwards, so the checks compare with the model as it was."""
    import torch
    from transformers.pytorch_utils import Conv1D

    swapped = []
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Conv1D):
                linear = torch.nn.Linear(child.weight.shape[0], child.weight.shape[1])
                with torch.no_grad():
                    linear.weight.copy_(child.weight.T)
                    linear.bias.copy_(child.bias)
                setattr(module, name, linear)
                swapped.append((module, name, child))
    try:
        yield len(swapped)
    finally:
        for module, name, child in swapped:
            setattr(module, name, child)


def _export(parts: _Parts, size: tuple[int, int], work: Path, progress: Progress) -> tuple[Path, Path, DecoderSpec]:
    import onnx
    import torch

    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, *size, generator=generator)
    with torch.no_grad():
        hidden = parts.features(pixels)
        try:
            cross = _cross_cache(parts, hidden)
        except (AttributeError, TypeError, ValueError) as exc:
            raise BundleError(
                f"the {type(parts.lm).__name__} decoder does not keep an encoder-decoder key/value cache "
                f"that lambdalite can export ({exc})"
            ) from exc
    layers = len(cross) // 2
    past_names, present_names, cross_names = _names(layers)
    encoder, step = _modules(parts, layers, hidden.shape[-1])
    # Trace with 2 new tokens after 3 cached ones, so no axis is traced at a size of 1 or 0.
    example_ids = torch.randint(0, 100, (2, 2), generator=generator) % parts.lm.config.vocab_size
    with torch.no_grad():
        self_shapes = _self_cache_shapes(parts, hidden, layers)
    example_past = [torch.randn(2, h, 3, d, generator=generator) for h, d in self_shapes]
    batch = {0: "batch"}
    enc_path, dec_path = work / "encoder.onnx", work / "decoder.onnx"
    with (
        _linear_layers(parts.model),
        progress.step(f"Exporting the image encoder and cross-attention ({layers} layers) to ONNX"),
    ):
        _onnx_export(
            encoder,
            (pixels,),
            enc_path,
            input_names=["pixel_values"],
            output_names=cross_names,
            dynamic_axes={"pixel_values": batch, **{n: batch for n in cross_names}},
        )
    with _linear_layers(parts.model), progress.step("Exporting one decoder step with its key/value cache to ONNX"):
        _onnx_export(
            step,
            (example_ids, *example_past, *cross),
            dec_path,
            input_names=["input_ids", *past_names, *cross_names],
            output_names=["logits", *present_names],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                **{n: {0: "batch", 2: "past"} for n in past_names},
                **{n: batch for n in cross_names},
                "logits": batch,
                **{n: {0: "batch", 2: "past_and_tokens"} for n in present_names},
            },
        )
    for path in (enc_path, dec_path):
        onnx.checker.check_model(str(path))
    spec = DecoderSpec(
        tokens="input_ids",
        logits="logits",
        past=tuple(zip(past_names, present_names, strict=True)),
        context=tuple(cross_names),
        past_axis=2,
    )
    return enc_path, dec_path, spec


def _onnx_export(module: Any, args: tuple[Any, ...], path: Path, **names: Any) -> None:
    import torch

    from lambdalite.toolkit.convert.export import OPSET, quiet

    try:
        with quiet(), torch.no_grad():
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, **names)
    except Exception as exc:  # the exporter raises many kinds; its first line says what failed
        raise BundleError(f"exporting {path.name} failed: {str(exc).splitlines()[0][:300]}") from exc


def _self_cache_shapes(parts: _Parts, hidden: torch.Tensor, layers: int) -> list[tuple[int, int]]:
    """(heads, head size) of each self-attention cache tensor, from one real step."""
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    token = torch.zeros(hidden.shape[0], 1, dtype=torch.long)
    parts.lm(input_ids=token, encoder_hidden_states=hidden, cache=cache, use_cache=True)
    shapes = []
    for layer in cache.self_attention_cache.layers[:layers]:
        shapes += [(layer.keys.shape[1], layer.keys.shape[3]), (layer.values.shape[1], layer.values.shape[3])]
    return shapes


# -- checks -----------------------------------------------------------------------------------------


def _check_logits(parts: _Parts, enc: Path, dec: Path, spec: DecoderSpec, size: tuple[int, int]) -> float:
    """Run the ONNX pair for 6 greedy steps beside transformers (no cache there); the largest
    difference in logits, relative to their scale. Raises when it is not a rounding difference."""
    import torch

    from lambdalite.engines import load_engine

    encoder = load_engine("onnxruntime", enc.read_bytes(), threads=1)
    decoder = load_engine("onnxruntime", dec.read_bytes(), threads=1)
    pixels = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    cross = dict(zip([o.name for o in encoder.outputs], encoder.run({"pixel_values": pixels.numpy()}), strict=True))
    shapes = {i.name: i.shape for i in decoder.inputs}
    past: dict[str, np.ndarray[Any, Any]] = {
        i: np.zeros((2, shapes[i][1], 0, shapes[i][3]), np.float32) for i, _ in spec.past
    }
    out_index = {o.name: n for n, o in enumerate(decoder.outputs)}
    seq = np.array([parts.prompt, parts.prompt], np.int64)
    new = seq
    worst = 0.0
    for _ in range(6):
        outputs = decoder.run({"input_ids": new, **past, **{c: cross[c] for c in spec.context}})
        got = outputs[out_index["logits"]]
        with torch.no_grad():
            want = _reference_logits(parts, pixels, torch.from_numpy(seq))
        scale = max(1.0, float(np.abs(want).max()))
        worst = max(worst, float(np.abs(got - want).max()) / scale)
        past = {i: outputs[out_index[o]] for i, o in spec.past}
        new = got.argmax(axis=1)[:, None].astype(np.int64)
        seq = np.concatenate([seq, new], axis=1)
    if worst > 1e-3:
        raise BundleError(f"the exported decoder disagrees with transformers (relative logit difference {worst:.1e})")
    return worst


def _reference_logits(parts: _Parts, pixels: torch.Tensor, seq: torch.Tensor) -> np.ndarray[Any, Any]:
    model = parts.model
    if parts.kind == "vision-encoder-decoder":
        out = model(pixel_values=pixels, decoder_input_ids=seq, use_cache=False)
    else:
        out = model.text_decoder(input_ids=seq, encoder_hidden_states=parts.features(pixels), use_cache=False)
    return out.logits[:, -1].numpy()  # type: ignore[no-any-return]


def _check_images(images: Sequence[Path]) -> list[bytes]:
    if images:
        return [p.read_bytes() for p in images]
    from lambdalite.toolkit.zoo import scenes

    return [scenes.scene(seed).encode() for seed in _CHECK_SEEDS]


def _check_captions(
    parts: _Parts, bundle: Bundle, processor: Any, images: list[bytes], flags: Mapping[str, Any]
) -> Report:
    """Caption the test images with the bundle (lambdalite's task) and with model.generate."""
    import io

    import torch
    from PIL import Image

    from lambdalite.tasks.captioning import load as load_captioner

    task = load_captioner(bundle, threads=1)
    options = bundle.manifest.options
    beams = max(2, int(options["beam_size"]))
    max_length = int(options["max_length"])
    batch = np.stack([task.preprocess(data) for data in images])
    pixels = torch.from_numpy(batch)
    same_settings = {k: v for k, v in flags.items() if k not in ("num_beams", "max_length", "max_new_tokens")}
    matches = []
    for k in (1, beams):
        ours = task.generate(batch, k, max_length)
        with torch.no_grad():
            theirs = parts.generate(pixels, num_beams=k, max_length=max_length, **same_settings)
        same = sum(_strip(row.tolist(), parts, hyps[0].tokens) for row, hyps in zip(theirs, ours, strict=True))
        matches.append((same, len(images)))
    # Each side's own preprocessing: the image processor on the decoded picture, lambdalite on the bytes.
    opened = [Image.open(io.BytesIO(d)) for d in images]
    hf = processor(images=[img.convert("RGB") for img in opened], return_tensors="pt")
    hf_pixels = hf["pixel_values"].to(torch.float32)
    pixel_diff: dict[str, tuple[float, int]] = {}
    for img, theirs_row, ours_row in zip(opened, hf_pixels.numpy(), batch, strict=True):
        worst, count = pixel_diff.get(str(img.format), (0.0, 0))
        pixel_diff[str(img.format)] = (max(worst, float(np.abs(theirs_row - ours_row).max())), count + 1)
    with torch.no_grad():
        theirs = parts.generate(hf_pixels, num_beams=1, max_length=max_length, **same_settings)
    ours = task.generate(batch, 1, max_length)
    own = sum(_strip(row.tolist(), parts, hyps[0].tokens) for row, hyps in zip(theirs, ours, strict=True))
    return Report(0.0, matches[0], matches[1], beams, pixel_diff, (own, len(images)))


def _strip(row: list[int], parts: _Parts, tokens: tuple[int, ...]) -> bool:
    """Whether generate's row (prompt, tokens, filler) holds exactly `tokens` after the prompt.

    The filler after a caption that ended early is the pad id, or in beam search the first end
    id when the pad id is 0 (generate tests `pad_token_id or eos_token_id[0]`)."""
    generated = row[len(parts.prompt) :]
    filler = {parts.generation.pad_token_id, *parts.eos[:1]}
    return generated[: len(tokens)] == list(tokens) and all(t in filler for t in generated[len(tokens) :])


# -- the import ---------------------------------------------------------------------------------------


def import_captioner(
    folder: Path, out: Path, options: CaptionerOptions, progress: Progress | None = None
) -> tuple[Bundle, Report]:
    """Make the bundle directory `out` from a Hugging Face captioner folder; see the module docstring."""
    import tempfile

    progress = progress or Quiet()
    source = str(folder)
    _needs()
    config = read_config(folder)
    kind = str(config.get("model_type"))
    if kind not in ARCHITECTURES:
        raise UsageError(
            f"{source}: model_type {kind!r} is not a captioner lambdalite imports ({', '.join(ARCHITECTURES)})"
        )
    unknown = sorted(set(options.generate) - set(GENERATE_FLAGS))
    if unknown:
        raise UsageError(f"{unknown[0]} is not a generate setting lambdalite takes ({', '.join(GENERATE_FLAGS)})")
    from lambdalite.toolkit.convert.export import quiet

    with progress.step(f"Loading {ARCHITECTURES[kind]} from {folder.name}"), quiet():
        _silence_transformers()
        spec, processor = _input_spec(folder, source)
        vocab_size = _vocab_size(config, kind)
        tokenizer, vocab, text = _text(folder, vocab_size, source)
        parts = _load(folder, kind, options.prompt, tokenizer)
        settings = _settings(parts, options.generate, source)
    for note in _ignored_settings(folder, parts, settings):
        progress.note(note)
    with tempfile.TemporaryDirectory(prefix="lambdalite-hf-") as tmp:
        enc, dec, decoder = _export(parts, spec.size, Path(tmp), progress)
        with progress.step("Checking the ONNX decoder against transformers"), quiet():
            diff = _check_logits(parts, enc, dec, decoder, spec.size)
        progress.note(f"    ONNX matches transformers (largest relative logit difference {diff:.1e})")
        bundle = write_bundle(
            out,
            name=options.name or folder.resolve().name,
            version=options.version,
            task="image-to-text",
            engine="onnxruntime",
            files={"encoder": enc, "decoder": dec, "vocab": ("\n".join(vocab) + "\n").encode()},
            filenames={"vocab": "vocab.txt"},
            input=spec,
            output=OutputSpec(kind="logits", name="logits"),
            options={**settings, "text": text},
            metadata={
                "imported_from": folder.name,
                "format": "transformers",
                "architecture": ARCHITECTURES[kind],
                "pad_token_id": parts.generation.pad_token_id,
            },
            decoder=decoder,
        )
    with progress.step("Captioning test images with the bundle and with model.generate"), quiet():
        report = _check_captions(parts, bundle, processor, _check_images(options.check_images), options.generate)
    report = report._replace(max_logit_difference=diff)
    for line in report.lines():
        progress.note(f"    {line}")
    # What was checked travels with the bundle (the manifest is not checksummed; the files are).
    checked = {
        "max_relative_logit_difference": float(f"{diff:.3g}"),
        "greedy_identical": list(report.greedy_match),
        f"beam_{report.beams}_identical": list(report.beam_match),
        "max_pixel_difference": {k: float(f"{d:.3g}") for k, (d, _) in report.pixel_difference.items()},
    }
    manifest = bundle.manifest._replace(metadata={**bundle.manifest.metadata, "checked": checked})
    (out / MANIFEST_NAME).write_bytes(manifest.to_json())
    return Bundle(out, manifest), report


def _ignored_settings(folder: Path, parts: _Parts, settings: Mapping[str, Any]) -> list[str]:
    """BLIP's generate reads its text decoder's settings, not generation_config.json: say so where
    the file asks for something else (the bundle does what generate does)."""
    if parts.kind != "blip" or not (folder / "generation_config.json").is_file():
        return []
    try:
        written = json.loads((folder / "generation_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    used = {"num_beams": settings["beam_size"], "max_length": settings["max_length"]}
    used.update((k, settings[k]) for k in ("length_penalty", "min_length", "no_repeat_ngram_size") if k in settings)
    return [
        f"    note: generation_config.json sets {key}={value!r}, which BLIP's generate does not read (it uses "
        f"{used[key]!r}); pass --{key.replace('_', '-')} to the import to use it"
        for key, value in sorted(written.items())
        if key in used and value != used[key]
    ]


def _vocab_size(config: Mapping[str, Any], kind: str) -> int:
    text = config.get("decoder" if kind == "vision-encoder-decoder" else "text_config") or {}
    size = text.get("vocab_size")
    if not isinstance(size, int) or size <= 0:
        raise UsageError(f"config.json gives no vocab_size for the {kind} decoder")
    return size


def _silence_transformers() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
