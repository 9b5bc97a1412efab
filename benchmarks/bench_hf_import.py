"""An imported Hugging Face classifier served by lambdalite vs the same model with torch + transformers.

    .venv/bin/python benchmarks/bench_hf_import.py [--runs 5]

The model: ViT-Base/16 at 224x224 (google/vit-base-patch16-224's config: 12 layers, hidden 768,
1000 classes, 86 M parameters) with seeded random weights, saved with `save_pretrained` next to
its image processor (ViTImageProcessor, 224x224 bilinear, mean/std 0.5). Nothing is downloaded.

1. `lambdalite import` of that folder (torch export to ONNX, checked against transformers).
2. What each function ships, as Lambda would run it (python3.11 x86_64, manylinux wheels):
   * lambdalite: the function's modules and numpy, Pillow and ONNX Runtime unpacked from their
     Lambda-platform wheels and slimmed exactly as `lambdalite build` stages a zip
     (`copy_lambdalite`, `unpack_wheel`, `slim`), plus the bundle in model/;
   * torch + transformers: `pip install --target` of torch 2.13.0+cpu (the local cp311 wheel),
     transformers 5.24.0 and their requirements at this repo's pins, Pillow, a minimal handler,
     and the save_pretrained folder.
   Both trees precompiled (Lambda's /var/task is read-only), zipped with lambdalite's zip writer.
   The models are measured apart: ViT-Base's weights alone exceed a zip's 250 MB.
3. Cold start of each tree in a fresh `python3.11 -I -S` (only the task root on sys.path, as
   Lambda): imports, model load and one prediction on a 224x224 image, interleaved runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from lambdalite.core.bundle import open_bundle
from lambdalite.core.images import FORMATS
from lambdalite.core.progress import Stderr
from lambdalite.toolkit.convert.importer import import_model
from lambdalite.toolkit.convert.options import ImportOptions
from lambdalite.toolkit.deploy.artifact import MAX_UNZIPPED, MAX_ZIPPED_UPLOAD, write_zip
from lambdalite.toolkit.deploy.package import copy_lambdalite
from lambdalite.toolkit.deploy.slim import slim

from helpers import lambda_interpreter
from report import ROOT, median_ms, stamp, timed_runs, write_section

TORCH_WHEEL = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
# The smallest honest torch function: load at init (Lambda's init phase), one warm-up prediction.
TORCH_HANDLER = """\
import io, os
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification
MODEL = os.environ["MODEL_DIR"]
processor = AutoImageProcessor.from_pretrained(MODEL)
model = AutoModelForImageClassification.from_pretrained(MODEL).eval()
torch.set_grad_enabled(False)

def predict(image):
    logits = model(**processor(image.convert("RGB"), return_tensors="pt")).logits[0]
    best = int(logits.argmax())
    return {"className": model.config.id2label[best], "probability": float(logits.softmax(-1)[best])}

predict(Image.new("RGB", (224, 224)))

def handler(event, context):
    import base64
    return predict(Image.open(io.BytesIO(base64.b64decode(event["image"]))))
"""
COLD_LAMBDALITE = (
    "import os, sys; os.environ['LAMBDA_TASK_ROOT'] = {root!r}; sys.path.insert(0, {root!r}); import lambdalite.handler"
)
COLD_TORCH = "import os, sys; os.environ['LAMBDA_TASK_ROOT'] = {root!r}; sys.path.insert(0, {root!r}); import app"


def mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def verdict(size: tuple[int, int, int]) -> str:
    zipped, unzipped, _ = size
    direct = "fit a direct upload" if zipped <= MAX_ZIPPED_UPLOAD else "need an upload through S3"
    limit = "within" if unzipped <= MAX_UNZIPPED else "over"
    return f"{direct} and are {limit} the 250 MB limit"


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def vit_base(folder: Path) -> Path:
    import torch
    import transformers as T

    labels = {i: f"class {i}" for i in range(1000)}
    config = T.ViTConfig(image_size=224, patch_size=16, id2label=labels, label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    T.AutoModelForImageClassification.from_config(config).eval().save_pretrained(folder)
    T.ViTImageProcessorPil(size={"height": 224, "width": 224}, resample=2).save_pretrained(folder)
    return folder


def lambdalite_root(bundle_dir: Path, root: Path, progress: Stderr) -> None:
    """What `lambdalite build` stages for a zip, less the model (over 250 MB, it is kept apart).

    The dependencies come from `pip install --target` (cp311 wheels, this repo's pins) rather
    than `lambdalite build`'s Lambda-platform download: lambdalite builds for python3.12+ (the
    pinned numpy has no wheel for python3.11's Amazon Linux 2), and the torch function can only
    be run here on python3.11 (the local torch wheel), so both sides run the same interpreter.
    Then the build's own slimming and module copy.
    """
    bundle = open_bundle(bundle_dir)
    with progress.step("pip install --target: numpy, Pillow, onnxruntime"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--target",
                str(root),
                "-c",
                str(ROOT / "requirements" / "constraints.txt"),
                "numpy",
                "pillow",
                "onnxruntime",
            ],
            check=True,
        )
    shutil.rmtree(root / "bin", ignore_errors=True)
    third_party = {p.name.removesuffix(".py") for p in root.iterdir() if not p.name.endswith((".dist-info", ".libs"))}
    slim(root, keep_formats=FORMATS)
    copy_lambdalite(root, third_party=third_party, engine=bundle.manifest.engine)


def torch_root(hf_folder: Path, root: Path, progress: Stderr) -> None:
    with progress.step("pip install --target: torch 2.13.0+cpu, transformers 5.24.0 and requirements, Pillow"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--target",
                str(root),
                "-c",
                str(ROOT / "requirements" / "constraints.txt"),
                str(TORCH_WHEEL),
                "transformers",
                "pillow",
            ],
            check=True,
        )
    shutil.rmtree(root / "bin", ignore_errors=True)  # console scripts: nothing in a function runs them
    (root / "app.py").write_text(TORCH_HANDLER)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    python = lambda_interpreter("3.11")
    if python is None:
        sys.exit("needs a Python 3.11 (on PATH or under ~/.pyenv) to run both functions")
    progress = Stderr()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-hf-") as tmp:
        work = Path(tmp)
        with progress.step("Building ViT-Base/16 (random weights) with save_pretrained"):
            hf = vit_base(work / "vit-base")
        start = time.perf_counter()
        import_model(hf, work / "bundle", ImportOptions(), progress)
        import_s = time.perf_counter() - start
        bundle = open_bundle(work / "bundle")
        check = bundle.manifest.metadata["check"]

        ll, th = work / "lambdalite-root", work / "torch-root"
        lambdalite_root(work / "bundle", ll, progress)
        torch_root(hf, th, progress)
        for root in (ll, th):
            with progress.step(f"Precompiling {root.name} with {python}"):
                # Not checked: a few files in torch's tree do not compile (templates, other Pythons'
                # syntax); nothing imports them, and Lambda would not either.
                subprocess.run([python, "-m", "compileall", "-q", "-j", "0", str(root)], capture_output=True)
        sizes = {}
        for label, root, model in (("lambdalite", ll, work / "bundle"), ("torch + transformers", th, hf)):
            write_zip(work / f"{root.name}.zip", [(root, "")], progress)
            sizes[label] = ((work / f"{root.name}.zip").stat().st_size, tree_size(root), tree_size(model))

        commands = {
            "lambdalite": [python, "-I", "-S", "-c", COLD_LAMBDALITE.format(root=str(ll))],
            "torch + transformers": [python, "-I", "-S", "-c", COLD_TORCH.format(root=str(th))],
        }
        env = {
            "PATH": "/usr/bin:/bin",
            "HF_HUB_OFFLINE": "1",
            "LAMBDALITE_HOME": str(work / "home"),
            "LAMBDALITE_MODEL": str(work / "bundle"),  # the model on local disk for both, read in place
            "MODEL_DIR": str(hf),
        }
        times = timed_runs(commands, args.runs, env=env)
    cold = {label: median_ms(samples) for label, samples in times.items()}
    spread = {label: f"{min(s) * 1e3:,.0f}-{max(s) * 1e3:,.0f}" for label, s in times.items()}

    table = [
        "| function | code + dependencies, zipped | unzipped | model | total unzipped | fits a 250 MB zip | "
        "cold start (median) | range |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for label, (z, code, model) in sizes.items():
        fits = "yes" if code + model <= MAX_UNZIPPED else f"no, {(code + model) / MAX_UNZIPPED:.1f}x over"
        table.append(
            f"| {label} | {mb(z)} | {mb(code)} | {mb(model)} | {mb(code + model)} | {fits} | "
            f"{cold[label]:,.0f} ms | {spread[label]} ms |"
        )
    ratio = cold["torch + transformers"] / cold["lambdalite"]
    code_ratio = sizes["torch + transformers"][1] / sizes["lambdalite"][1]
    body = f"""
{stamp()} Load average at start: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}.

ViT-Base/16 at 224x224 (86 M parameters, random weights, 1000 classes) saved with
`save_pretrained`. `lambdalite import` of the folder took {import_s:.0f} s (torch export to ONNX and
the check: {check["reference"]}, top-1 agrees on {check["top1_agree"]}/{check["photos"]} photos,
max probability difference {check["max_probability_difference"]:.1e}, input tensors equal to
{check.get("max_input_difference", float("nan")):.1e}).

Each function as `pip install --target` lays it out for python3.11 x86_64 (manylinux wheels at
this repo's pins; lambdalite slimmed as `lambdalite build` does), precompiled; cold start = a
fresh `python3.11 -I -S` with only the task root on sys.path, the model read from local disk (the bundle directory; the
save_pretrained folder): imports, model load and one prediction ({args.runs} interleaved runs).
MB = 2^20 bytes; Lambda's limits: 50 MB zipped for a direct upload, 250 MB unzipped.

{chr(10).join(table)}

torch + transformers cold-starts {ratio:.1f}x slower and ships {code_ratio:.0f}x the code and
dependencies. Neither fits a zip with this model: the float32 weights alone are about 330 MB,
over the 250 MB limit, so both need a container image or the model fetched to /tmp at cold start
(lambdalite: `LAMBDALITE_MODEL=s3://...`, with /tmp raised above the default 512 MB). Code and
dependencies alone: lambdalite's {verdict(sizes["lambdalite"])}; torch's {verdict(sizes["torch + transformers"])}.
"""
    write_section("Imported Hugging Face classifier: lambdalite vs torch + transformers", body)


if __name__ == "__main__":
    main()
