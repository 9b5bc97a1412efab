"""`lambdalite import` and `lambdalite export`: models from elsewhere into bundles.

    lambdalite import model.tar.gz -o bundle.tar.gz            # SageMaker / seed-004 archive
    lambdalite import vit-gpt2/ --num-beams 4 -o captioner.tar.gz   # Hugging Face captioner folder
    lambdalite import clothing.tflite --labels classes.txt --mean 0.5 0.5 0.5 --std 0.5 0.5 0.5 -o b.tar.gz
    lambdalite export mypkg.models:build --labels classes.txt -o bundle.tar.gz
    lambdalite export mypkg.models:build --labels classes.txt --quantize int8 --calibration photos/ -o b.tar.gz
    lambdalite export efficientnet-lite0 --quantize int8 --calibration photos/ -o lite0-int8.tar.gz

Heavy imports (torch, onnx, onnxruntime.quantization) happen inside the commands.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lambdalite.errors import UsageError

if TYPE_CHECKING:
    from lambdalite.core.progress import Progress
    from lambdalite.toolkit.convert.options import ImportOptions

__all__ = ["export_command", "import_command"]


def _preprocessing_options(f: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Class names."),
        click.option("--input-size", type=click.IntRange(8, 4096), help="Input side in pixels (read from the model)."),
        click.option("--resize", type=click.IntRange(8, 8192), help="Resize the short side first [size x 256/224]."),
        click.option("--no-crop", is_flag=True, help="Resize straight to the input size, no centre crop."),
        click.option("--mean", type=float, nargs=3, help="Per-channel mean after /255 [ImageNet]."),
        click.option("--std", type=float, nargs=3, help="Per-channel std after /255 [ImageNet]."),
        click.option(
            "--resample",
            type=click.Choice(["bilinear", "bicubic", "nearest", "lanczos", "box", "hamming"]),
            help="Resampling filter for the resize [bilinear].",
        ),
        click.option(
            "--full-decode",
            is_flag=True,
            help="Decode JPEGs at full size, as PIL.Image.open does [large JPEGs decode at reduced scale, faster].",
        ),
        click.option("--name", help="Bundle name [from the file name]."),
        click.option("--version", "version", default="1.0.0", show_default=True, help="Bundle version."),
        click.option(
            "-o", "--output", required=True, type=click.Path(path_type=Path), help="A .tar.gz or a new directory."
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _options(kw: dict[str, Any]) -> ImportOptions:
    from lambdalite.toolkit.convert.options import ImportOptions

    return ImportOptions(
        labels=kw["labels"],
        input_size=kw["input_size"],
        mean=tuple(kw["mean"]) if kw["mean"] else None,
        std=tuple(kw["std"]) if kw["std"] else None,
        resize=kw["resize"],
        crop="none" if kw["no_crop"] else "center",
        name=kw["name"],
        version=kw["version"],
        keep_torchscript=bool(kw.get("keep_torchscript", False)),
        resample=kw["resample"],
        full_decode=bool(kw["full_decode"]),
        check_images=kw.get("check_images"),
        tolerance=kw.get("tolerance") or 1e-4,
    )


def _check_output(output: Path) -> None:
    if output.exists() and (output.is_file() or any(output.iterdir())):
        if not output.name.endswith((".tar.gz", ".tgz")):
            raise UsageError(f"{output} exists and is not empty; choose a new directory or a .tar.gz")


def _finish(bundle_dir: Path, output: Path) -> None:
    from lambdalite.core.bundle import open_bundle, pack_bundle

    bundle = open_bundle(bundle_dir)
    if output.name.endswith((".tar.gz", ".tgz")):
        output.parent.mkdir(parents=True, exist_ok=True)
        pack_bundle(bundle, output)
    else:
        shutil.copytree(bundle_dir, output, dirs_exist_ok=True)
    m = bundle.manifest
    i = m.input
    if m.task == "image-to-text":
        what = f"{len(bundle.read('vocab').splitlines())} tokens, " + (
            "decoder with a key/value cache" if m.decoder is not None else "decoder step"
        )
    else:
        what = f"{len(bundle.read_lines('labels'))} classes, output {m.output.kind}"
    click.echo(
        f"wrote {output}: {m.name} {m.version}, engine {m.engine}, input {i.size[0]}x{i.size[1]} {i.layout}, {what}"
    )
    check = m.metadata.get("check")
    if isinstance(check, dict):  # an import checked against the original model
        click.echo(
            f"checked against {check['reference']}: top-1 agrees on {check['top1_agree']}/{check['photos']} photos, "
            f"max probability difference {check['max_probability_difference']:.1e}"
        )


def _captioner_options(f: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option("--num-beams", type=click.IntRange(1, 256), help="Captioners: default beams [generate's]."),
        click.option("--max-length", type=click.IntRange(2, 4096), help="Captioners: generate's max_length."),
        click.option("--max-new-tokens", type=click.IntRange(1, 4096), help="Captioners: generate's max_new_tokens."),
        click.option("--length-penalty", type=float, help="Captioners: beam search length penalty [generate's]."),
        click.option("--prompt", help="BLIP: text the caption continues, e.g. 'a picture of'."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command("import")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@_preprocessing_options
@click.option("--keep-torchscript", is_flag=True, help="Keep TorchScript for the torch engine (no ONNX conversion).")
@_captioner_options
@click.option(
    "--check-images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Photos to check a Hugging Face or Keras import against the original "
    "[scikit-image's samples; synthetic scenes for captioners].",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(0, 1),
    default=1e-4,
    show_default=True,
    help="Largest probability difference that check accepts.",
)
def import_command(source: Path, output: Path, **kw: Any) -> None:
    """Make a bundle from a model folder, archive or file.

    SOURCE is a Hugging Face image-classification folder (save_pretrained, or optimum-cli export
    onnx), a Hugging Face captioner folder (ViT + GPT-2 VisionEncoderDecoderModel, BLIP), a Keras
    .keras/.h5 file, a SageMaker or seed-004 model.tar.gz (TorchScript .pt/.pth and classes.txt),
    a bare TorchScript file, an .onnx or a .tflite. TorchScript becomes ONNX unless
    --keep-torchscript. Hugging Face and Keras imports are checked against the original on photos.
    """
    from lambdalite.core.progress import Stderr
    from lambdalite.toolkit.convert.importer import import_model

    _check_output(output)
    options = _options(kw)
    generate = {k: kw.pop(k) for k in ("num_beams", "max_length", "max_new_tokens", "length_penalty")}
    options = options._replace(generate={k: v for k, v in generate.items() if v is not None}, prompt=kw["prompt"])
    with tempfile.TemporaryDirectory(prefix="lambdalite-import-") as tmp:
        work = Path(tmp) / "bundle"
        import_model(source, work, options, Stderr())
        _finish(work, output)


@click.command("export")
@click.argument("source")
@_preprocessing_options
@click.option("--quantize", type=click.Choice(["int8"]), help="Static int8 quantization (needs --calibration).")
@click.option(
    "--calibration",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder of representative images for int8 calibration.",
)
@click.option(
    "--held-out",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Images for the accuracy report [every 5th calibration image, kept out of calibration].",
)
def export_command(
    source: str, output: Path, quantize: str | None, calibration: Path | None, held_out: Path | None, **kw: Any
) -> None:
    """Export a PyTorch model to an ONNX bundle, optionally static int8.

    SOURCE is module:factory (a callable returning a torch.nn.Module, imported from the current
    directory), a TorchScript file, or (with --quantize) an existing ONNX bundle or zoo name.
    """
    from lambdalite.core.progress import Stderr
    from lambdalite.toolkit.convert.importer import import_model

    progress = Stderr()
    _check_output(output)
    if quantize and calibration is None:
        raise UsageError("--quantize int8 needs --calibration DIR (representative images)")
    if calibration is not None and not quantize:
        raise UsageError("--calibration is for --quantize int8")
    options = _options(kw)
    with tempfile.TemporaryDirectory(prefix="lambdalite-export-") as tmp:
        work = Path(tmp)
        path = Path(source)
        if ":" in source and not path.exists():
            import torch

            from lambdalite.toolkit.convert.export import export_onnx, load_factory

            size = options.input_size or 224
            with progress.step(f"Building {source}"):
                module = load_factory(source)
            with progress.step(f"Exporting to ONNX ({size}x{size}, opset 17, dynamic batch)"):
                onnx_path = export_onnx(module, torch.zeros(1, 3, size, size), work / "model.onnx")
            name = options.name or source.split(":")[-1]
            bundle_dir = work / "fp32"
            import_model(onnx_path, bundle_dir, options._replace(name=name), progress)
        elif path.is_file() and path.suffix in (".pt", ".pth", ".torchscript"):
            bundle_dir = work / "fp32"
            import_model(path, bundle_dir, options, progress)
        elif quantize:
            from lambdalite.toolkit.zoo import resolve_model as resolve

            bundle_dir = resolve(source, progress)
        else:
            raise UsageError(f"{source!r} is neither module:factory nor a TorchScript file (.pt, .pth)")
        if calibration is not None:
            bundle_dir = _quantize(bundle_dir, work / "int8", calibration, held_out, options.name, progress)
        _finish(bundle_dir, output)


def _quantize(
    bundle_dir: Path, out: Path, calibration: Path, held_out: Path | None, name: str | None, progress: Progress
) -> Path:
    from lambdalite.core.bundle import open_bundle
    from lambdalite.toolkit.convert.options import image_files
    from lambdalite.toolkit.convert.quantize import quantize_bundle

    images = image_files(calibration)
    if held_out is not None:
        held = image_files(held_out)
        calib = images
    else:
        held = images[4::5]
        calib = [p for p in images if p not in held]
        if not held or not calib:
            raise UsageError(f"{calibration} needs at least 2 images (or pass --held-out DIR)")
    _, report = quantize_bundle(
        open_bundle(bundle_dir),
        out,
        [p.read_bytes() for p in calib],
        [(p.name, p.read_bytes()) for p in held],
        progress,
        name=name,
    )
    for line in report.lines():
        click.echo(line)
    return out
