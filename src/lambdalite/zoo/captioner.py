"""The demo captioner `shapes-captioner`, trained here on synthetic scenes, exported to ONNX.

No pretrained captioning weights can be had offline, so the zoo trains its own: a small CNN
encoder and a GRU decoder with additive (Bahdanau) attention, in the shape of seed 003's
"Show, Attend and Tell" model, on scenes from `lambdalite.zoo.scenes`. Training is
deterministic for a given seed, torch version and machine, on the CPU in a few minutes.

    python -m lambdalite.zoo.captioner --out DIR      # train, export, evaluate, print the scores

The bundle follows the `image-to-text` contract of `lambdalite.tasks.captioning`:

    encoder.onnx   image (N, 3, 64, 64) -> features (N, 64, D), keys (N, 64, A), h (N, H)
    decoder.onnx   token (B,), h (B, H), features (B, 64, D), keys (B, 64, A)
                   -> logits (B, V), next_h (B, H)
    vocab.txt      one token per line; the line number is the token id

`keys` is the attention's projection of the features, computed once per image instead of once
per token. The features carry a learned position embedding, which is what lets the decoder
name the groups left to right. After export the builder captions held-out scenes through the
served path (onnxruntime, numpy decoding) and records exact match and BLEU-4 in the manifest's
metadata.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import onnx
import torch
from torch import nn
from torch.nn import functional as F

from ..bundle import InputSpec, OutputSpec, write_bundle
from ..export import OPSET, quiet
from ..images import Preprocessor
from ..progress import Progress, Stderr
from . import scenes
from .bleu import corpus_bleu, exact_match

__all__ = ["INPUT", "Config", "DecoderStep", "Encoder", "build_captioner", "evaluate", "main", "train"]

INPUT = InputSpec(
    size=(64, 64),
    layout="NCHW",
    resize=None,  # the whole picture, stretched: a crop could cut shapes off
    crop="none",
    scale=1 / 255,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    channel_order="RGB",
    dtype="float32",
    resample="bilinear",
    name="image",
)
MAX_TOKENS = 12  # the longest caption ("a red circle, two blue squares and ...") is 11 words, plus <end>
PAD, START, END = (scenes.VOCAB.index(t) for t in ("<pad>", "<start>", "<end>"))


class Config(NamedTuple):
    seed: int = 0
    train_size: int = 8000
    epochs: int = 12
    batch: int = 128
    lr: float = 4e-3
    held_out: int = 500
    threads: int = 2  # fixed, not the machine's count: reductions split by threads change the bits
    dim: int = 64
    att: int = 64
    hidden: int = 128
    embed: int = 32
    widths: tuple[int, int, int] = (16, 32, 64)  # the CNN's channels at 32x32, 16x16 and 8x8


class Encoder(nn.Module):
    """Image -> 8x8 grid of features (+ position), their attention keys, the first hidden state."""

    def __init__(self, config: Config) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        w1, w2, w3 = config.widths
        self.cnn = nn.Sequential(*block(3, w1, 2), *block(w1, w2, 2), *block(w2, w3, 2), *block(w3, config.dim, 1))
        self.position = nn.Parameter(torch.randn(1, 64, config.dim) * 0.1)
        self.key = nn.Linear(config.dim, config.att)
        self.init_h = nn.Linear(config.dim, config.hidden)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.cnn(image).flatten(2).transpose(1, 2) + self.position
        return features, self.key(features), torch.tanh(self.init_h(features.mean(1)))


class DecoderStep(nn.Module):
    """One token: attend over the features with the previous state, update the GRU, score the next token."""

    def __init__(self, config: Config, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.embed)
        self.query = nn.Linear(config.hidden, config.att)
        self.score = nn.Linear(config.att, 1)
        self.gru = nn.GRUCell(config.embed + config.dim, config.hidden)
        self.out = nn.Linear(config.hidden + config.dim, vocab_size)

    def forward(
        self, token: torch.Tensor, h: torch.Tensor, features: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.softmax(self.score(torch.tanh(keys + self.query(h)[:, None])).squeeze(-1), dim=-1)
        context = torch.bmm(weights[:, None], features).squeeze(1)
        next_h = self.gru(torch.cat([self.embed(token), context], 1), h)
        return self.out(torch.cat([next_h, context], 1)), next_h


def _token_ids(caption: str) -> list[int]:
    ids = [START, *(scenes.VOCAB.index(t) for t in scenes.tokenize(caption)), END]
    return ids + [PAD] * (MAX_TOKENS + 1 - len(ids))


def render(
    seeds: Sequence[int], progress: Progress | None = None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Scenes as model inputs, through the same preprocessing as serving, with their token ids.

    Returns the inputs, the captions and the captions of the mirrored scenes (for flipping).
    """
    pre = Preprocessor.from_spec(INPUT)
    h, w = INPUT.size
    x = np.empty((len(seeds), 3, h, w), np.float32)
    tokens = np.empty((len(seeds), MAX_TOKENS + 1), np.int64)
    mirrored = np.empty_like(tokens)
    with (progress or Stderr()).step(f"Rendering {len(seeds)} scenes"):
        for i, seed in enumerate(seeds):
            s = scenes.scene(seed)
            # PNG is lossless, so its decoded pixels are the image itself; JPEG goes through the codec.
            x[i] = pre(s.encode()) if s.format == "JPEG" else pre.to_array(pre.resize(s.image))
            tokens[i] = _token_ids(s.caption)
            width = s.image.size[0]
            mirrored[i] = _token_ids(scenes.caption_for([sh._replace(x=width - sh.x) for sh in s.shapes]))
    return x, tokens, mirrored


def train(config: Config, progress: Progress) -> tuple[Encoder, DecoderStep]:
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    seeds = [scenes.TRAIN_SEEDS[config.seed * config.train_size + i] for i in range(config.train_size)]
    x_np, y_np, y_flip_np = render(seeds, progress)
    x, y, y_flip = torch.from_numpy(x_np), torch.from_numpy(y_np), torch.from_numpy(y_flip_np)
    encoder, decoder = Encoder(config), DecoderStep(config, len(scenes.VOCAB))
    params = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(config.train_size / config.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    generator = torch.Generator().manual_seed(config.seed)
    encoder.train()
    decoder.train()
    for epoch in range(config.epochs):
        order = torch.randperm(config.train_size, generator=generator)
        flips = torch.rand(config.train_size, generator=generator) < 0.5
        total = 0.0
        start = time.perf_counter()
        for b in range(steps_per_epoch):
            idx = order[b * config.batch : (b + 1) * config.batch]
            flip = flips[idx]
            xb = torch.where(flip[:, None, None, None], x[idx].flip(-1), x[idx])
            yb = torch.where(flip[:, None], y_flip[idx], y[idx])
            features, keys, h = encoder(xb)
            length = int((yb != PAD).sum(1).max())
            loss = torch.zeros(())
            for t in range(length - 1):
                logits, h = decoder(yb[:, t], h, features, keys)
                loss = loss + F.cross_entropy(logits, yb[:, t + 1], ignore_index=PAD, reduction="sum")
            loss = loss / (yb[:, 1:] != PAD).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(params, 2.0)
            optimizer.step()
            schedule.step()
            total += loss.item()
        progress.note(
            f"    epoch {epoch + 1}/{config.epochs}: loss {total / steps_per_epoch:.4f} "
            f"({time.perf_counter() - start:.1f} s)"
        )
    encoder.eval()
    decoder.eval()
    return encoder, decoder


def export(encoder: Encoder, decoder: DecoderStep, config: Config, out: Path) -> tuple[Path, Path]:
    batch = {0: "batch"}
    image = torch.zeros(1, 3, *INPUT.size)
    enc_path, dec_path = out / "encoder.onnx", out / "decoder.onnx"
    with quiet(), torch.no_grad():
        torch.onnx.export(
            encoder,
            (image,),
            str(enc_path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=["features", "keys", "h"],
            dynamic_axes={"image": batch, "features": batch, "keys": batch, "h": batch},
        )
        features, keys, h = encoder(image)
        torch.onnx.export(
            decoder,
            (torch.tensor([START]), h, features, keys),
            str(dec_path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["token", "h", "features", "keys"],
            output_names=["logits", "next_h"],
            dynamic_axes={
                "token": batch,
                "h": batch,
                "features": batch,
                "keys": batch,
                "logits": batch,
                "next_h": batch,
            },
        )
    for path in (enc_path, dec_path):
        onnx.checker.check_model(str(path))
    return enc_path, dec_path


def evaluate(bundle_root: Path, seeds: Sequence[int], *, beam_size: int = 1) -> dict[str, float]:
    """Caption the scenes of `seeds` through the served path; exact match and BLEU-4."""
    from ..bundle import open_bundle
    from ..tasks import load_task

    task = load_task(open_bundle(bundle_root), threads=1)
    hypotheses: list[str] = []
    references: list[str] = []
    for start in range(0, len(seeds), 64):
        chunk = [scenes.scene(seed) for seed in seeds[start : start + 64]]
        results: list[dict[str, Any]] = task.predict([s.encode() for s in chunk], beam_size=beam_size)
        hypotheses += [r["caption"] for r in results]
        references += [s.caption for s in chunk]
    return {
        "exact_match": round(exact_match(hypotheses, references), 4),
        "bleu4": round(
            corpus_bleu([scenes.tokenize(h) for h in hypotheses], [scenes.tokenize(r) for r in references]), 4
        ),
    }


def build_captioner(out: Path, progress: Progress, config: Config | None = None) -> dict[str, Any]:
    config = config or Config()
    with progress.step(f"Training the shapes captioner on {config.train_size} synthetic scenes (CPU)"):
        encoder, decoder = train(config, progress)
    with progress.step("Exporting encoder and decoder step to ONNX"):
        enc_path, dec_path = export(encoder, decoder, config, out)
    held_out = [scenes.HELD_OUT_SEEDS[i] for i in range(config.held_out)]
    options = {"beam_size": 1, "max_length": MAX_TOKENS + 4, "start_token": "<start>", "end_token": "<end>"}
    metadata: dict[str, Any] = {
        "source": "trained by lambdalite.zoo.captioner on lambdalite.zoo.scenes",
        "training": {**config._asdict(), "torch": torch.__version__},
    }
    files: dict[str, Path | bytes] = {
        "encoder": enc_path,
        "decoder": dec_path,
        "vocab": ("\n".join(scenes.VOCAB) + "\n").encode(),
    }

    def write(meta: dict[str, Any]) -> None:
        write_bundle(
            out,
            name="shapes-captioner",
            version="1.0.0",
            task="image-to-text",
            engine="onnxruntime",
            files=files,
            filenames={"vocab": "vocab.txt"},
            input=INPUT,
            output=OutputSpec(kind="logits", top_k=1, name="logits"),
            options=options,
            metadata=meta,
        )

    write(metadata)
    with progress.step(f"Captioning {len(held_out)} held-out scenes through the served path"):
        scores = {"greedy": evaluate(out, held_out), "beam3": evaluate(out, held_out, beam_size=3)}
    for name, s in scores.items():
        progress.note(f"    held-out {name}: exact match {s['exact_match']:.1%}, BLEU-4 {s['bleu4']:.4f}")
    metadata["held_out"] = {"seeds": f"scenes.HELD_OUT_SEEDS[:{config.held_out}]", **scores}
    write(metadata)
    return metadata


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lambdalite.zoo.captioner", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the bundle directory to write")
    defaults = Config()
    for field in ("seed", "train_size", "epochs", "batch", "held_out"):
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=getattr(defaults, field))
    args = parser.parse_args(argv)
    config = defaults._replace(**{f: getattr(args, f) for f in ("seed", "train_size", "epochs", "batch", "held_out")})
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    metadata = build_captioner(args.out, Stderr(), config)
    held = metadata["held_out"]
    print(
        f"shapes-captioner -> {args.out} in {time.perf_counter() - start:.0f} s; held-out "
        f"exact match {held['greedy']['exact_match']:.1%} (beam 3: {held['beam3']['exact_match']:.1%}), "
        f"BLEU-4 {held['greedy']['bleu4']:.4f} (beam 3: {held['beam3']['bleu4']:.4f})"
    )


if __name__ == "__main__":
    main()
