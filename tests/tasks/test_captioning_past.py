"""The manifest's `decoder` section (a decoder with a key/value cache) and the options of
`search: "transformers"`: read strictly, checked against the models, every mistake named."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lambdalite.core.bundle import MANIFEST_NAME, Bundle, DecoderSpec, Manifest, open_bundle
from lambdalite.errors import BundleError
from lambdalite.tasks.captioning import load as load_captioner
from lambdalite.toolkit.convert.importer import ImportOptions, import_model

from helpers import hf_folders
from helpers.models import write_tiny_bundle, write_tiny_captioner

SECTION = {
    "kind": "past",
    "tokens": "input_ids",
    "logits": "logits",
    "past": [{"input": "past_0_key", "output": "present_0_key"}],
    "past_axis": 2,
    "context": ["cross_0_key"],
}


def _manifest(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    data = json.loads((write_tiny_captioner(tmp_path / "legacy").root / MANIFEST_NAME).read_text())
    data.update(changes)
    return data


def test_the_section_reads_back_as_written(tmp_path: Path) -> None:
    manifest = Manifest.from_dict(_manifest(tmp_path, decoder=SECTION))
    assert manifest.decoder == DecoderSpec("input_ids", "logits", (("past_0_key", "present_0_key"),), ("cross_0_key",))
    assert manifest.to_dict()["decoder"] == SECTION
    assert Manifest.from_dict(json.loads(manifest.to_json())) == manifest


def test_manifests_without_it_are_written_as_before(tmp_path: Path) -> None:
    written = (write_tiny_captioner(tmp_path / "legacy").root / MANIFEST_NAME).read_bytes()
    manifest = Manifest.from_dict(json.loads(written))
    assert manifest.decoder is None and "decoder" not in manifest.to_dict()
    assert manifest.to_json() == written


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "step"}, "decoder.kind: 'step' is not one of past"),
        ({"tokens": ""}, "decoder.tokens: expected a non-empty string"),
        ({"logits": None}, "decoder.logits: expected a non-empty string"),
        ({"past": []}, "decoder.past: expected a non-empty list"),
        ({"past": [{"input": "a"}]}, r"decoder.past\[0\].output: missing"),
        ({"past": [{"input": "a", "output": "b", "axis": 1}]}, r"decoder.past\[0\].axis: unknown key"),
        ({"past": [["a", "b"]]}, r"decoder.past\[0\]: expected an object"),
        ({"past_axis": 0}, "decoder.past_axis: expected an integer >= 1"),
        ({"context": "cross_0_key"}, "decoder.context: expected a list of decoder input names"),
        ({"context": ["past_0_key"]}, "the decoder input 'past_0_key' is named twice"),
        ({"logits": "present_0_key"}, "the decoder output 'present_0_key' is named twice"),
        ({"cache": {}}, "decoder.cache: unknown key"),
    ],
)
def test_bad_sections_are_refused_naming_the_key(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        Manifest.from_dict(_manifest(tmp_path, decoder={**SECTION, **change}))


def test_only_image_to_text_bundles_have_one(tmp_path: Path) -> None:
    data = json.loads((write_tiny_bundle(tmp_path / "cls").root / MANIFEST_NAME).read_text())
    with pytest.raises(BundleError, match="decoder: only image-to-text bundles have a decoder section"):
        Manifest.from_dict({**data, "decoder": SECTION})


# -- against real models ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    root = tmp_path_factory.mktemp("past")
    folder = hf_folders.vit_gpt2(root / "folder", std=0.2)
    return import_model(folder, root / "bundle", ImportOptions())


def _edited(bundle: Bundle, root: Path, edit: Any) -> Bundle:
    shutil.copytree(bundle.root, root)
    data = json.loads((root / MANIFEST_NAME).read_text())
    edit(data)
    (root / MANIFEST_NAME).write_text(json.dumps(data))
    return open_bundle(root)


def _drop_pair(d: dict[str, Any]) -> None:
    d["decoder"]["past"].pop()


def _rename(key: str, value: str) -> Any:
    def edit(d: dict[str, Any]) -> None:
        d["decoder"][key] = value

    return edit


def _float_tokens(d: dict[str, Any]) -> None:
    d["decoder"]["past"].pop()
    d["decoder"]["tokens"] = "past_1_value"


def _past_output(d: dict[str, Any]) -> None:
    d["decoder"]["past"][0]["output"] = "present_9_key"


def _context(d: dict[str, Any]) -> None:
    d["decoder"]["context"][0] = "past_0_key"
    d["decoder"]["past"][0]["input"] = "cross_0_key"


def _option(key: str, value: Any) -> Any:
    def edit(d: dict[str, Any]) -> None:
        d["options"][key] = value

    return edit


def _no_option(key: str) -> Any:
    def edit(d: dict[str, Any]) -> None:
        del d["options"][key]

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_drop_pair, "decoder: the decoder input 'past_1_value' is not named as tokens, past or context"),
        (_rename("tokens", "ids"), "decoder: tokens: the decoder has no integer \\(batch, tokens\\) input 'ids'"),
        (_float_tokens, "decoder: tokens: the decoder has no integer \\(batch, tokens\\) input 'past_1_value'"),
        (_rename("logits", "scores"), "decoder: logits: the decoder has no output 'scores'"),
        (_past_output, "decoder: past: the decoder has no output 'present_9_key'"),
        (_context, "decoder: context: the encoder has no output 'past_0_key'"),
        (_option("search", "fast"), "options.search: expected one of lambdalite, transformers"),
        (
            _option("start_token", "<s>"),
            "options.start_token: unknown key for image-to-text with search 'transformers'",
        ),
        (_no_option("prompt_ids"), "options.prompt_ids: missing"),
        (_option("max_length", 1), "options.max_length: 1 leaves no room after the 1 prompt token"),
        (_option("text", {"decoder": "sentencepiece"}), "options.text.decoder"),
    ],
)
def test_sections_and_options_are_checked_against_the_models(
    imported: Bundle, tmp_path: Path, edit: Any, message: str
) -> None:
    with pytest.raises(BundleError, match=message):
        load_captioner(_edited(imported, tmp_path / "b", edit), threads=1)


def test_transformers_options_need_search_transformers(imported: Bundle, tmp_path: Path) -> None:
    def legacy(d: dict[str, Any]) -> None:
        d["options"]["search"] = "lambdalite"

    with pytest.raises(
        BundleError, match="options.begin_suppress_ids: unknown key for image-to-text with search 'lambdalite'"
    ):
        load_captioner(_edited(imported, tmp_path / "b", legacy), threads=1)


def test_a_multi_token_prompt_needs_a_decoder_that_takes_several(tmp_path: Path) -> None:
    bundle = write_tiny_captioner(tmp_path / "legacy")
    data = json.loads((bundle.root / MANIFEST_NAME).read_text())
    options = copy.deepcopy(data["options"])
    for key in ("start_token", "end_token", "suppress_tokens"):
        options.pop(key, None)
    data["options"] = {**options, "search": "transformers", "prompt_ids": [1, 4], "eos_ids": [2]}
    (bundle.root / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="options.prompt_ids has 2 tokens but the decoder takes one token per call"):
        load_captioner(open_bundle(bundle.root), threads=1)
