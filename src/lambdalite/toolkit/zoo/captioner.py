"""The demo captioner `shapes-captioner`, trained here on synthetic scenes and exported to ONNX.

No pretrained captioning weights can be had offline, so the zoo trains its own (see
`lambdalite.toolkit.zoo.show_attend_tell`) on scenes from `lambdalite.toolkit.zoo.scenes`, on the CPU, in a
few minutes, in a child process (torch's threads then wait politely on a shared CPU, and the
training's memory is returned when it ends). Standalone:

    python -m lambdalite.toolkit.zoo.captioner --out DIR      # train, export, evaluate, print the scores

The bundle follows the `image-to-text` contract of `lambdalite.tasks.captioning`:

    encoder.onnx   image (N, 3, 64, 64) -> features (N, 64, D), keys (N, 64, A), h (N, H)
    decoder.onnx   token (N,), h (N, H), features (N, 64, D), keys (N, 64, A)
                   -> logits (N, V), next_h (N, H)
    vocab.txt      one token per line; the line number is the token id

`keys` is the attention's projection of the features, computed once per image rather than
once per token. After export the builder captions held-out scenes through the served path
(onnxruntime and the numpy decoding loop) and records exact match and BLEU-4, greedy and beam
3, in the manifest's `metadata.held_out`.

This module imports no torch: the zoo and the tests import it freely.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lambdalite.core.bundle import OutputSpec, write_bundle
from lambdalite.core.progress import Progress, Quiet, Stderr
from lambdalite.errors import BuildError, EngineError
from lambdalite.toolkit.zoo import scenes
from lambdalite.toolkit.zoo.bleu import corpus_bleu, exact_match
from lambdalite.toolkit.zoo.scenes import INPUT, MAX_TOKENS

__all__ = ["INPUT", "MAX_TOKENS", "build_captioner", "evaluate", "main"]


def evaluate(bundle_root: Path, seeds: Sequence[int], *, beam_size: int = 1) -> dict[str, float]:
    """Caption the scenes of `seeds` through the served path; exact match and BLEU-4."""
    from lambdalite.core.bundle import open_bundle
    from lambdalite.tasks import load_task

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


def build_captioner(out: Path, progress: Progress) -> None:
    """The zoo builder: train, export and evaluate in a child process that writes `out`."""
    for module in ("torch", "onnx"):
        if importlib.util.find_spec(module) is None:
            raise EngineError(
                f"building the zoo model shapes-captioner needs the 'export' extra ({module} is missing): "
                f"pip install 'lambdalite[export]'"
            )
    env = dict(os.environ)
    # Spinning OpenMP threads starve each other on a shared CPU; must be set before torch loads.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    command = [sys.executable, "-m", "lambdalite.toolkit.zoo.captioner", "--out", str(out)]
    if isinstance(progress, Quiet):
        command.append("--quiet")
    # The child reports on our stderr: stdout stays clean for whoever asked for the model.
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a stream without a file (captured output)
        captured = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sys.stderr.write(captured.stdout)
        code = captured.returncode
    else:
        code = subprocess.run(command, env=env, stdout=sys.stderr, check=False).returncode
    if code != 0:
        raise BuildError(f"training shapes-captioner failed (exit code {code}); its output is above")


def write_captioner_bundle(out: Path, encoder: Path, decoder: Path, metadata: dict[str, Any]) -> None:
    write_bundle(
        out,
        name="shapes-captioner",
        version="1.0.0",
        task="image-to-text",
        engine="onnxruntime",
        files={"encoder": encoder, "decoder": decoder, "vocab": ("\n".join(scenes.VOCAB) + "\n").encode()},
        filenames={"vocab": "vocab.txt"},
        input=INPUT,
        output=OutputSpec(kind="logits", top_k=1, name="logits"),
        options={"beam_size": 1, "max_length": MAX_TOKENS + 4, "start_token": "<start>", "end_token": "<end>"},
        metadata=metadata,
    )


def main(argv: Sequence[str] | None = None) -> None:
    from lambdalite.toolkit.zoo.show_attend_tell import Config, export, train

    defaults = Config()
    fields = ("seed", "train_size", "epochs", "batch", "held_out", "threads")
    parser = argparse.ArgumentParser(
        prog="python -m lambdalite.toolkit.zoo.captioner", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="the bundle directory to write")
    for field in fields:
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=getattr(defaults, field))
    parser.add_argument("--quiet", action="store_true", help="print only the final scores")
    args = parser.parse_args(argv)
    config = defaults._replace(**{f: getattr(args, f) for f in fields})
    progress: Progress = Quiet() if args.quiet else Stderr()
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with progress.step(f"Training the shapes captioner on {config.train_size} synthetic scenes (CPU)"):
        encoder, decoder = train(config, progress)
    train_s = time.perf_counter() - start
    with progress.step("Exporting the encoder and the decoder step to ONNX"):
        enc_path, dec_path = export(encoder, decoder, args.out)
    metadata: dict[str, Any] = {
        "source": "trained by lambdalite.toolkit.zoo.show_attend_tell on lambdalite.toolkit.zoo.scenes",
        "training": {**config._asdict(), "torch": torch.__version__, "seconds": round(train_s, 1)},
    }
    write_captioner_bundle(args.out, enc_path, dec_path, metadata)
    held_out = [scenes.HELD_OUT_SEEDS[i] for i in range(config.held_out)]
    with progress.step(f"Captioning {len(held_out)} held-out scenes through the served path"):
        scores = {"greedy": evaluate(args.out, held_out), "beam3": evaluate(args.out, held_out, beam_size=3)}
    metadata["held_out"] = {"seeds": f"HELD_OUT_SEEDS[:{config.held_out}]", **scores}
    write_captioner_bundle(args.out, enc_path, dec_path, metadata)
    print(
        f"shapes-captioner: trained in {train_s:.0f} s; held-out exact match "
        f"{scores['greedy']['exact_match']:.1%} greedy, {scores['beam3']['exact_match']:.1%} beam 3; "
        f"BLEU-4 {scores['greedy']['bleu4']:.4f} greedy, {scores['beam3']['bleu4']:.4f} beam 3",
        flush=True,
    )


if __name__ == "__main__":
    main()
