"""`lambdalite import DIR` on Hugging Face captioners (ViT + GPT-2, BLIP), against transformers itself.

The folders are built here from configs with random weights and tokenizers trained on a few
sentences (tests/helpers/hf_folders.py): nothing is downloaded. The captions are compared with
`model.generate` on the same pixels, token for token, greedy and beam, under many of generate's
settings; the text with the tokenizer's own decoding.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lambdalite.core.bundle import MANIFEST_NAME, Bundle, open_bundle
from lambdalite.errors import BundleError, InputError, UsageError
from lambdalite.model import load_model
from lambdalite.tasks.captioning import Captioner
from lambdalite.tasks.captioning import load as load_captioner
from lambdalite.toolkit.convert.hf_captioner import _CHECK_SEEDS
from lambdalite.toolkit.convert.importer import ImportOptions, import_model
from lambdalite.toolkit.zoo import scenes

from helpers import hf_folders

pytestmark = pytest.mark.timeout(900)

VED_EOS = 204  # a token this fixture's model picks now and then (see hf_folders): captions end at various lengths
LAMBDALITE = [str(Path(sys.executable).parent / "lambdalite")]


def _noise(seed: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# Pictures of several kinds, so that the captions differ: scenes, noise, a gradient.
IMAGES = [scenes.scene(seed).encode() for seed in range(2_000_000, 2_000_005)] + [
    _noise(1, (40, 50)),
    _noise(2, (64, 64)),
    _noise(3, (33, 90)),
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {
        "vit-gpt2": hf_folders.vit_gpt2(root / "vit-gpt2", eos=VED_EOS, std=0.2),
        "blip": hf_folders.blip(root / "blip"),
    }


def _import_cli(folder: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LAMBDALITE, "import", str(folder), "-o", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.fixture(scope="module")
def imported(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each folder imported with the command, as a user does: the .tar.gz, unpacked, and what it printed."""
    from lambdalite.core.archive import extract_archive

    out = tmp_path_factory.mktemp("imported")
    result: dict[str, Any] = {}
    for name, folder in folders.items():
        proc = _import_cli(folder, out / f"{name}.tar.gz")
        assert proc.returncode == 0, proc.stderr
        root = extract_archive(out / f"{name}.tar.gz", out / name)
        result[name] = (open_bundle(root), proc)
    return result


def _model(folder: Path) -> Any:
    from transformers import AutoConfig, BlipForConditionalGeneration, VisionEncoderDecoderModel

    kind = AutoConfig.from_pretrained(folder).model_type
    cls = VisionEncoderDecoderModel if kind == "vision-encoder-decoder" else BlipForConditionalGeneration
    return cls.from_pretrained(folder).eval()


@pytest.fixture(scope="module")
def models(folders: dict[str, Path]) -> dict[str, Any]:
    hf_folders._quiet()
    return {name: _model(folder) for name, folder in folders.items()}


def _pixels(task: Captioner) -> np.ndarray:
    return np.stack([task.preprocess(data) for data in IMAGES])


def _generate(model: Any, pixels: np.ndarray, **kwargs: Any) -> list[list[int]]:
    import torch

    with torch.no_grad():
        return model.generate(pixel_values=torch.from_numpy(pixels), **kwargs).tolist()  # type: ignore[no-any-return]


def _theirs(row: list[int], prompt: int, filler: set[int], length: int) -> list[int]:
    """generate's row without the prompt and the filler after the caption ends (`length` tokens)."""
    generated = row[prompt:]
    assert all(t in filler for t in generated[length:]), row
    return generated[:length]


def _with_options(bundle: Bundle, root: Path, **options: Any) -> Bundle:
    """The same bundle with some options changed (the manifest only: the model files stay)."""
    shutil.copytree(bundle.root, root)
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    manifest["options"].update(options)
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))
    return open_bundle(root)


# generate() keyword arguments -> the manifest options that say the same.
_OPTION_FOR = {
    "length_penalty": "length_penalty",
    "early_stopping": "early_stopping",
    "min_length": "min_length",
    "min_new_tokens": "min_new_tokens",
    "no_repeat_ngram_size": "no_repeat_ngram_size",
    "repetition_penalty": "repetition_penalty",
    "eos_token_id": "eos_ids",
    "suppress_tokens": "suppress_ids",
    "begin_suppress_tokens": "begin_suppress_ids",
    "forced_eos_token_id": "forced_eos_id",
}

SETTINGS = [
    pytest.param({}, id="defaults"),
    pytest.param({"length_penalty": 0.0}, id="length_penalty-0"),
    pytest.param({"length_penalty": 2.5}, id="length_penalty-2.5"),
    pytest.param({"length_penalty": -0.7}, id="length_penalty-negative"),
    pytest.param({"early_stopping": True}, id="early_stopping-true"),
    pytest.param({"early_stopping": "never", "length_penalty": 1.5}, id="early_stopping-never"),
    pytest.param({"max_length": 7}, id="max_length-7"),
    pytest.param({"min_length": 15}, id="min_length"),
    pytest.param({"min_new_tokens": 12}, id="min_new_tokens"),
    pytest.param({"no_repeat_ngram_size": 2}, id="no_repeat_ngram"),
    pytest.param({"repetition_penalty": 1.6}, id="repetition_penalty"),
    pytest.param({"suppress_tokens": [24, 171], "begin_suppress_tokens": [158, 165]}, id="suppress"),
    pytest.param({"forced_eos_token_id": VED_EOS, "max_length": 9}, id="forced_eos"),
    pytest.param({"eos_token_id": [VED_EOS, 158]}, id="two-eos"),
]


@pytest.mark.parametrize("beams", [1, 2, 4])
@pytest.mark.parametrize("settings", SETTINGS)
def test_vit_gpt2_captions_match_generate_token_for_token(
    imported: dict[str, Any], models: dict[str, Any], tmp_path: Path, settings: dict[str, Any], beams: int
) -> None:
    bundle, _ = imported["vit-gpt2"]
    max_length = settings.get("max_length", 20)
    options = {_OPTION_FOR[k]: v for k, v in settings.items() if k in _OPTION_FOR}
    if "eos_ids" in options:
        options["eos_ids"] = list(options["eos_ids"])
    task = load_captioner(_with_options(bundle, tmp_path / "b", **options), threads=1)
    pixels = _pixels(task)
    ours = task.generate(pixels, beams, max_length)
    theirs = _generate(models["vit-gpt2"], pixels, num_beams=beams, **{**settings, "max_length": max_length})
    eos = settings.get("eos_token_id", VED_EOS)
    filler = {task.rules.eos[0], bundle.manifest.metadata["pad_token_id"], *np.atleast_1d(eos).tolist()}
    for row, hyps in zip(theirs, ours, strict=True):
        assert list(hyps[0].tokens) == _theirs(row, 1, filler, len(hyps[0].tokens))
    assert len({h[0].tokens for h in ours}) >= 3  # the comparison means something: captions differ


@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize(
    "settings", [{}, {"length_penalty": 2.0}, {"no_repeat_ngram_size": 3}, {"max_length": 11, "min_length": 6}]
)
def test_blip_captions_match_generate_token_for_token(
    imported: dict[str, Any], models: dict[str, Any], tmp_path: Path, settings: dict[str, Any], beams: int
) -> None:
    bundle, _ = imported["blip"]
    max_length = settings.get("max_length", 20)
    options = {_OPTION_FOR[k]: v for k, v in settings.items() if k in _OPTION_FOR}
    task = load_captioner(_with_options(bundle, tmp_path / "b", **options), threads=1)
    pixels = _pixels(task)
    ours = task.generate(pixels, beams, max_length)
    theirs = _generate(models["blip"], pixels, num_beams=beams, **{**settings, "max_length": max_length})
    filler = {0, *task.rules.eos}
    for row, hyps in zip(theirs, ours, strict=True):
        assert row[0] == task.rules.prompt[0]  # BLIP's bos ([DEC]) starts every caption
        assert list(hyps[0].tokens) == _theirs(row, 1, filler, len(hyps[0].tokens))
    assert len({h[0].tokens for h in ours}) >= 3


@pytest.mark.parametrize("beams", [1, 3])
def test_the_fixture_captions_end_at_various_lengths(imported: dict[str, Any], beams: int) -> None:
    """So that the comparisons above cover captions that end early and at max_length, and beams
    that finish at different steps."""
    for name, (bundle, _) in imported.items():
        task = load_captioner(bundle, threads=1)
        found = task.generate(_pixels(task), beams, 20)
        lengths = {len(h.tokens) for hyps in found for h in hyps}
        assert len(lengths) >= 2 and min(lengths) < 19, (name, lengths)  # ended early, at several lengths
        assert name != "vit-gpt2" or max(lengths) == 19, lengths  # and some ran to max_length


def test_the_command_reports_its_checks(imported: dict[str, Any]) -> None:
    for name, (bundle, proc) in imported.items():
        assert "ONNX matches transformers" in proc.stderr
        n = len(_CHECK_SEEDS)
        assert f"greedy {n}/{n} identical" in proc.stderr, proc.stderr
        assert f"beam 2 {n}/{n} identical" in proc.stderr, proc.stderr
        assert proc.stdout.startswith("wrote ") and "decoder with a key/value cache" in proc.stdout
        manifest = bundle.manifest
        assert manifest.task == "image-to-text" and manifest.decoder is not None
        assert set(manifest.files) == {"encoder", "decoder", "vocab"}
        assert manifest.options["search"] == "transformers"
        assert manifest.metadata["checked"]["greedy_identical"] == [n, n]
        assert manifest.metadata["checked"]["beam_2_identical"] == [n, n]
        assert (
            manifest.metadata["architecture"]
            == {"vit-gpt2": "VisionEncoderDecoderModel", "blip": "BlipForConditionalGeneration"}[name]
        )


def test_generation_settings_come_from_the_folder(folders: dict[str, Path], tmp_path: Path) -> None:
    """A folder whose generation_config.json changes generate's defaults: the bundle, asked for
    nothing, captions as model.generate asked for nothing."""
    folder = hf_folders.vit_gpt2(
        tmp_path / "tuned",
        eos=VED_EOS,
        std=0.2,
        generation={
            "num_beams": 3,
            "max_length": 14,
            "length_penalty": 1.7,
            "no_repeat_ngram_size": 3,
            "min_length": 4,
            "early_stopping": True,
        },
    )
    bundle = import_model(folder, tmp_path / "bundle", ImportOptions())
    o = bundle.manifest.options
    assert (o["beam_size"], o["max_length"], o["length_penalty"], o["no_repeat_ngram_size"]) == (3, 14, 1.7, 3)
    assert (o["min_length"], o["early_stopping"], o["prompt_ids"], o["eos_ids"]) == (4, True, [0], [VED_EOS])
    model = _model(folder)
    captioner = load_model(str(bundle.root))
    task = captioner.task
    pixels = _pixels(task)
    theirs = _generate(model, pixels)  # generate with no arguments: the folder's settings
    ours = task.generate(pixels, o["beam_size"], o["max_length"])
    for row, hyps, data in zip(theirs, ours, IMAGES, strict=True):
        assert list(hyps[0].tokens) == _theirs(row, 1, {0, VED_EOS}, len(hyps[0].tokens))
        [result] = captioner.predict([data])  # a request with no options: the manifest's defaults
        assert result["caption"] == _decode(folder, row[: 1 + len(hyps[0].tokens)])
        assert result["alternatives"][0]["caption"] == result["caption"]


def _decode(folder: Path, row: list[int]) -> str:
    from transformers import AutoTokenizer

    return str(AutoTokenizer.from_pretrained(folder).decode(row, skip_special_tokens=True))


def test_blip_says_which_folder_settings_its_generate_ignores(tmp_path: Path) -> None:
    """BLIP's generate reads its text decoder's settings, not generation_config.json: the bundle
    does what generate does, and the import says so."""
    from lambdalite.core.progress import Stderr

    folder = hf_folders.blip(tmp_path / "blip", generation={"num_beams": 3, "max_length": 9})
    shown = io.StringIO()
    bundle = import_model(folder, tmp_path / "b", ImportOptions(), Stderr(shown))
    assert (bundle.manifest.options["beam_size"], bundle.manifest.options["max_length"]) == (1, 21)
    assert "generation_config.json sets num_beams=3, which BLIP's generate does not read (it uses 1)" in (
        shown.getvalue()
    )
    assert "pass --max-length to the import to use it" in shown.getvalue()


def test_flags_override_the_folder_as_generate_arguments_do(
    folders: dict[str, Path], models: dict[str, Any], tmp_path: Path
) -> None:
    bundle = import_model(
        folders["vit-gpt2"],
        tmp_path / "b",
        ImportOptions(generate={"num_beams": 3, "max_new_tokens": 9, "length_penalty": 0.5}),
    )
    o = bundle.manifest.options
    assert (o["beam_size"], o["max_length"], o["length_penalty"]) == (3, 10, 0.5)  # 1 prompt token + 9 new
    task = load_captioner(bundle, threads=1)
    pixels = _pixels(task)
    theirs = _generate(models["vit-gpt2"], pixels, num_beams=3, max_new_tokens=9, length_penalty=0.5)
    ours = task.generate(pixels, o["beam_size"], o["max_length"])
    for row, hyps in zip(theirs, ours, strict=True):
        assert list(hyps[0].tokens) == _theirs(row, 1, {0, VED_EOS}, len(hyps[0].tokens))


@pytest.mark.filterwarnings("ignore:Using the model-agnostic default")
def test_blip_prompt_is_fed_first_and_kept_in_the_caption(
    folders: dict[str, Path], models: dict[str, Any], tmp_path: Path
) -> None:
    import torch
    from transformers import BlipProcessor

    bundle = import_model(folders["blip"], tmp_path / "b", ImportOptions(prompt="a red circle"))
    processor = BlipProcessor.from_pretrained(folders["blip"])
    prompt = processor(text="a red circle", return_tensors="pt")["input_ids"]
    assert bundle.manifest.options["prompt_ids"][1:] == prompt[0, 1:-1].tolist()
    captioner = load_model(str(bundle.root))
    task = captioner.task
    pixels = torch.from_numpy(_pixels(task))
    for beams in (1, 3):
        with torch.no_grad():
            out = models["blip"].generate(pixel_values=pixels, input_ids=prompt.repeat(len(IMAGES), 1), num_beams=beams)
        want = processor.batch_decode(out, skip_special_tokens=True)
        got = [captioner.predict([data], beam_size=beams)[0]["caption"] for data in IMAGES]
        assert got == want
        assert all(caption.startswith("a red circle") for caption in got)


@pytest.mark.filterwarnings("ignore:Using the model-agnostic default")
@pytest.mark.parametrize("name", ["vit-gpt2", "blip"])
def test_captions_are_the_tokenizers_text(
    imported: dict[str, Any], models: dict[str, Any], folders: dict[str, Path], name: str
) -> None:
    """predict (the function's path), with the bundle's defaults, gives what generate gives with
    its own defaults, as `tokenizer.decode(..., skip_special_tokens=True)` writes it."""
    from transformers import AutoTokenizer

    bundle, _ = imported[name]
    captioner = load_model(str(bundle.root))
    tokenizer = AutoTokenizer.from_pretrained(folders[name])
    task = captioner.task
    pixels = _pixels(task)
    for beams in (1, 3):
        rows = _generate(models[name], pixels, num_beams=beams)
        found = task.generate(pixels, beams, task.default_max_length)
        # The caption ends at its end token: what follows is filler (and this fixture's end token is
        # an ordinary one, which decode would spell out).
        want = [
            tokenizer.decode(row[: 1 + len(h[0].tokens)], skip_special_tokens=True)
            for row, h in zip(rows, found, strict=True)
        ]
        got = [captioner.predict([data], beam_size=beams)[0]["caption"] for data in IMAGES]
        assert got == want
        for row, hyps in zip(rows, found, strict=True):
            assert list(hyps[0].tokens) == _theirs(row, 1, {0, *task.rules.eos}, len(hyps[0].tokens))


def test_the_decoder_runs_one_new_token_per_step(imported: dict[str, Any], tmp_path: Path) -> None:
    """The key/value cache at work: after the prompt, every decoder call takes one token and a
    cache one longer than the last, whatever the step; nothing before it is run again."""
    bundle, _ = imported["vit-gpt2"]
    task = load_captioner(_with_options(bundle, tmp_path / "b", eos_ids=[]), threads=1)  # never ends early
    calls: list[tuple[tuple[int, ...], int]] = []
    real = task.decoder

    class Recording:
        name, inputs, outputs = real.name, real.inputs, real.outputs

        def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            calls.append((feeds["input_ids"].shape, feeds["past_0_key"].shape[2]))
            return real.run(feeds)

    task.decoder = Recording()  # type: ignore[assignment]
    for beams in (1, 3):
        calls.clear()
        task.generate(_pixels(task)[:2], beams, 20)
        rows = 2 * beams
        assert calls[0] == ((rows, 1), 0)  # the prompt, with an empty cache
        assert calls[1:] == [((rows, 1), step) for step in range(1, 19)]  # 19 tokens, one per call


def test_the_serving_path_imports_no_transformers(imported: dict[str, Any], tmp_path: Path) -> None:
    from helpers.cold_path import THIRD_PARTY, serving_imports

    for name, (bundle, _) in imported.items():
        loaded = serving_imports(bundle.root, tmp_path, {"beam_size": 3})
        assert "onnxruntime" in loaded, name
        assert loaded <= THIRD_PARTY, loaded - THIRD_PARTY  # no transformers, tokenizers, torch


def test_predict_command_on_the_imported_archive(
    imported: dict[str, Any], tmp_path: Path, folders: dict[str, Path]
) -> None:
    bundle, _ = imported["vit-gpt2"]
    archive = bundle.root.parent / "vit-gpt2.tar.gz"
    picture = tmp_path / "scene.png"
    picture.write_bytes(IMAGES[0])
    proc = subprocess.run(
        [*LAMBDALITE, "predict", str(archive), str(picture), "--beam-size", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LAMBDALITE_HOME": str(tmp_path / "home")},  # unpacked into a cache of its own
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"caption", "score", "alternatives"} and len(result["alternatives"]) <= 3
    assert result["caption"] == load_model(str(bundle.root)).predict([IMAGES[0]], beam_size=3)[0]["caption"]


def test_requests_are_bounded_and_checked(imported: dict[str, Any]) -> None:
    bundle, _ = imported["vit-gpt2"]
    captioner = load_model(str(bundle.root))
    with pytest.raises(InputError, match="max_length must be more than the 1 prompt"):
        captioner.predict([IMAGES[0]], max_length=1)
    with pytest.raises(InputError, match="beam_size must be a whole number from 1 to 16"):
        captioner.predict([IMAGES[0]], beam_size=17)
    with pytest.raises(InputError, match="max_length must be a whole number from 1 to 64"):
        captioner.predict([IMAGES[0]], max_length=65)  # the decoder's 64 positions


# -- what is refused, and how ---------------------------------------------------------------------------


def test_an_image_processor_the_bundle_cannot_express_is_refused(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "cropped"
    shutil.copytree(folders["vit-gpt2"], folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    config.update(do_center_crop=True, crop_size={"height": 24, "width": 24})
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="the setting crop_size=.*a bundle cannot express it"):
        import_model(folder, tmp_path / "out", ImportOptions())
    config.update(do_center_crop=False, crop_size=None, size={"shortest_edge": 32})
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="shortest_edge.*only a resize to a fixed height and width is exact"):
        import_model(folder, tmp_path / "out2", ImportOptions())


def test_sampling_and_unknown_generation_settings_are_refused(folders: dict[str, Path], tmp_path: Path) -> None:
    for i, (extra, message) in enumerate(
        (
            ({"do_sample": True}, "do_sample: lambdalite captions are greedy or beam search"),
            ({"encoder_repetition_penalty": 1.3}, "generation setting encoder_repetition_penalty=1.3 is not"),
        )
    ):
        folder = tmp_path / f"gen{i}"
        shutil.copytree(folders["vit-gpt2"], folder)
        gc = json.loads((folder / "generation_config.json").read_text())
        (folder / "generation_config.json").write_text(json.dumps({**gc, **extra}))
        with pytest.raises(BundleError, match=message):
            import_model(folder, tmp_path / f"out{i}", ImportOptions())


def test_command_errors_are_one_line(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "no-tokenizer"
    shutil.copytree(folders["blip"], folder)
    (folder / "tokenizer.json").unlink()
    proc = _import_cli(folder, tmp_path / "out.tar.gz")
    assert proc.returncode != 0
    assert "no tokenizer.json" in proc.stderr and "Traceback" not in proc.stderr
    proc = _import_cli(folders["vit-gpt2"], tmp_path / "out2.tar.gz", "--prompt", "a picture of")
    assert proc.returncode != 0 and "--prompt is for BLIP" in proc.stderr and "Traceback" not in proc.stderr


def test_flags_for_other_models_are_refused_for_captioners(folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--mean does not apply to .*comes from its image processor"):
        import_model(folders["blip"], tmp_path / "out", ImportOptions(mean=(0.5, 0.5, 0.5)))


def test_flags_for_captioners_are_refused_for_other_models(tiny_bundle: Bundle, tmp_path: Path) -> None:
    model = tiny_bundle.root / tiny_bundle.manifest.files["model"].path
    labels = tiny_bundle.root / tiny_bundle.manifest.files["labels"].path
    with pytest.raises(UsageError, match="for Hugging Face captioner folders"):
        import_model(model, tmp_path / "out", ImportOptions(labels=labels, generate={"num_beams": 3}))
