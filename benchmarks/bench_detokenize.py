"""Turning caption token ids into text inside the function: the `tokenizers` package or lambdalite's own.

    .venv/bin/python benchmarks/bench_detokenize.py [--runs 15]

The choice for imported Hugging Face captioners (issue 19), measured: a fresh interpreter that
loads the tokenizer and decodes one caption, either with `tokenizers` (import it, read
tokenizer.json) or with `lambdalite.tasks.detokenize` (read the bundle's vocab.txt); interleaved
runs, medians, against a bare interpreter. Tokenizers of GPT-2's size (50,257 tokens, 50,000
merges; benchmarks/hf_models.py makes one up) and of seed 003's (9,490). Then the bytes each adds
to the function zip (the package, and the file the bundle carries), zipped as `lambdalite build`
zips (deflate, level 9), and the time to decode a 20-token caption once loaded.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_models  # benchmarks/hf_models.py
from lambdalite.tasks.detokenize import Detokenizer

from report import stamp, timed_runs, write_section

CAPTION = list(range(300, 320))  # 20 token ids
# Every variant first imports what the function imports anyway for a captioner.
BARE = "import json, sys; import lambdalite.tasks.captioning"
WITH_TOKENIZERS = """
import sys
import lambdalite.tasks.captioning
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
print(tok.decode(list(range(300, 320)), skip_special_tokens=True))
"""
WITH_LAMBDALITE = """
import json, sys
import lambdalite.tasks.captioning
from lambdalite.tasks.detokenize import Detokenizer
vocab = open(sys.argv[2], encoding="utf-8").read().split("\\n")[:-1]
decode = Detokenizer(vocab, json.loads(sys.argv[3]))
print(decode(list(range(300, 320))))
"""


def zipped(paths: list[Path], root: Path) -> int:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for p in paths:
            zf.write(p, p.relative_to(root))
    return len(buf.getvalue())


def files_of(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-detok-"))
    cases = {}
    for name, size in (("GPT-2 size", 50257), ("seed 003 size", 9490)):
        described = hf_models.synthetic_bpe(size)
        tok_json = work / f"tokenizer-{size}.json"
        tok_json.write_text(json.dumps(described))
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tok_json))
        vocab = [tokenizer.id_to_token(i) for i in range(size)]
        vocab_txt = work / f"vocab-{size}.txt"
        vocab_txt.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        spec = {"decoder": "byte-level", "skip_ids": [size - 1]}
        assert Detokenizer(vocab, spec)(CAPTION) == tokenizer.decode(CAPTION, skip_special_tokens=True)
        cases[name] = (tok_json, vocab_txt, spec, tokenizer, vocab)

    load_before = os.getloadavg()[0]
    commands = {"the captioning task alone": [sys.executable, "-c", BARE]}
    for name, (tok_json, vocab_txt, spec, _, _) in cases.items():
        commands[f"tokenizers, {name}"] = [sys.executable, "-c", WITH_TOKENIZERS, str(tok_json)]
        commands[f"lambdalite, {name}"] = [sys.executable, "-c", WITH_LAMBDALITE, "", str(vocab_txt), json.dumps(spec)]
    cold = timed_runs(commands, args.runs)
    warm = {}
    for name, (_, _, spec, tokenizer, vocab) in cases.items():
        decode = Detokenizer(vocab, spec)
        for label, fn in (
            (f"tokenizers, {name}", lambda t=tokenizer: t.decode(CAPTION, skip_special_tokens=True)),
            (f"lambdalite, {name}", lambda d=decode: d(CAPTION)),
        ):
            samples = []
            for _ in range(2000):
                s = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - s)
            warm[label] = statistics.median(samples) * 1e6
    load_after = os.getloadavg()[0]

    import tokenizers

    package = Path(tokenizers.__file__).parent
    package_zip = zipped(files_of(package), package.parent)
    package_raw = sum(p.stat().st_size for p in files_of(package))
    bare = statistics.median(cold["the captioning task alone"])
    lines = [
        stamp(),
        "",
        f"**Cold**: a fresh interpreter imports the captioning task (as the function does anyway), then "
        f"loads the tokenizer and decodes a 20-token caption ({args.runs} interleaved runs, median; the "
        "task alone first, and subtracted in the last column):",
        "",
        "| how | cold (ms) | added to the cold start (ms) |",
        "| --- | --- | --- |",
    ]
    for label, samples in cold.items():
        med = statistics.median(samples)
        lines.append(f"| {label} | {med * 1e3:.0f} | {(med - bare) * 1e3:.0f} |")
    lines += [
        "",
        "**Warm**: decoding one 20-token caption once loaded (median of 2,000):",
        "",
        "| how | µs per caption |",
        "| --- | --- |",
        *(f"| {label} | {us:.1f} |" for label, us in warm.items()),
        "",
        "**Size** in the function zip (deflate level 9):",
        "",
        "| what | unzipped | zipped |",
        "| --- | --- | --- |",
        f"| the `tokenizers` package ({tokenizers.__version__}, this platform's wheel) | "
        f"{package_raw / 1e6:.1f} MB | {package_zip / 1e6:.1f} MB |",
        "| `lambdalite/tasks/detokenize.py` | "
        f"{(Path(sys.modules[Detokenizer.__module__].__file__ or '')).stat().st_size / 1e3:.1f} kB | – |",
    ]
    for name, (tok_json, vocab_txt, _, _, _) in cases.items():
        for label, path in (("tokenizer.json", tok_json), ("vocab.txt", vocab_txt)):
            lines.append(
                f"| {label}, {name} | {path.stat().st_size / 1e6:.2f} MB | {zipped([path], path.parent) / 1e6:.2f} MB |"
            )
    lines += [
        "",
        "Decision: imported captioners carry `vocab.txt` and decode with `lambdalite.tasks.detokenize` "
        "(byte-level BPE and WordPiece, checked at import against the tokenizer on every token and on "
        "random sequences). The function decodes ids to text only; it never tokenizes, so it needs neither "
        "the merges nor the normaliser, and `tokenizers` would add its native library to the zip and its "
        "import and file parsing to every cold start.",
        "",
        f"Load average (1 min) on this machine's shared CPUs: {load_before:.1f} when the runs began, "
        f"{load_after:.1f} when they ended.",
    ]
    write_section("Caption text: tokenizers or lambdalite's decoder (issue 19)", "\n".join(lines))


if __name__ == "__main__":
    main()
