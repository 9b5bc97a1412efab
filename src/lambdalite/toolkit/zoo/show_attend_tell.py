"""The network and training of `shapes-captioner` (torch; used only to build the zoo model).

"Show, Attend and Tell" in miniature, the shape of seed 003's model: a small CNN encoder gives
an 8x8 grid of features with a learned position embedding (which lets the decoder name groups
left to right) and one self-attention layer over the grid (which lets a cell know how many
shapes like it there are, so "two" and "three" come out right), and a GRU decoder with additive
(Bahdanau) attention emits one token per step. Training uses teacher forcing and
cross-entropy, with scenes mirrored half of the time (captions mirrored to match), on the CPU,
deterministic for a given seed, torch version and machine (the thread count is fixed for that).

`export` writes the two ONNX files of the image-to-text contract (see `lambdalite.toolkit.zoo.captioner`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import onnx
import torch
from torch import nn
from torch.nn import functional as F

from lambdalite.core.images import Preprocessor
from lambdalite.core.progress import Progress, Stderr
from lambdalite.toolkit.convert.export import OPSET, quiet
from lambdalite.toolkit.zoo import scenes
from lambdalite.toolkit.zoo.scenes import END, INPUT, MAX_TOKENS, PAD, START

__all__ = ["Config", "DecoderStep", "Encoder", "export", "render", "train"]


class Config(NamedTuple):
    seed: int = 0
    train_size: int = 8000
    epochs: int = 12
    batch: int = 128
    lr: float = 4e-3
    held_out: int = 500  # scenes the builder scores itself on afterwards
    threads: int = 2  # fixed, not the machine's count: reductions split by threads change the bits
    dim: int = 64
    att: int = 64
    hidden: int = 128
    embed: int = 32
    widths: tuple[int, int, int] = (16, 32, 64)  # the CNN's channels at 32x32, 16x16 and 8x8
    heads: int = 4  # of the self-attention layer over the grid (0: none)


class SelfAttention(nn.Module):
    """One transformer layer over the grid: each cell learns what else is in the picture (counting)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim // self.heads), dim=-1)
        x = x + self.proj((weights @ v).transpose(1, 2).reshape(n, length, dim))
        out: torch.Tensor = x + self.mlp(self.norm2(x))
        return out


class Encoder(nn.Module):
    """Image -> 8x8 grid of features (+ position), their attention keys, the first hidden state."""

    def __init__(self, config: Config) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        w1, w2, w3 = config.widths
        self.cnn = nn.Sequential(*block(3, w1, 2), *block(w1, w2, 2), *block(w2, w3, 2), *block(w3, config.dim, 1))
        self.position = nn.Parameter(torch.randn(1, 64, config.dim) * 0.1)
        self.mix: nn.Module = SelfAttention(config.dim, config.heads) if config.heads else nn.Identity()
        self.key = nn.Linear(config.dim, config.att)
        self.init_h = nn.Linear(config.dim, config.hidden)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.mix(self.cnn(image).flatten(2).transpose(1, 2) + self.position)
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


def export(encoder: Encoder, decoder: DecoderStep, out: Path) -> tuple[Path, Path]:
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
