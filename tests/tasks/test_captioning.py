"""The image-to-text task against a tiny encoder/decoder whose every probability is known."""

from __future__ import annotations

import base64
import itertools
import json

import numpy as np
import pytest
from PIL import Image

from lambdalite.core.bundle import MANIFEST_NAME, OutputSpec, open_bundle
from lambdalite.errors import BundleError, InputError
from lambdalite.function.app import Function
from lambdalite.model import load_model
from lambdalite.tasks import load_task
from lambdalite.tasks.captioning import Captioner
from lambdalite.toolkit.local.invoke import LocalContext

from helpers.eventlib import load_event
from helpers.images import encode
from helpers.models import (
    TINY_VOCAB,
    tiny_caption_reference,
    tiny_classifier_onnx,
    tiny_decoder_onnx,
    tiny_encoder_onnx,
    write_tiny_captioner,
)

END = TINY_VOCAB.index("<end>")
WORDS = [i for i, t in enumerate(TINY_VOCAB) if not t.startswith("<")]
GRAY, RED, BLUE = (128, 128, 128), (255, 0, 0), (0, 0, 255)
# Colours whose best beams swap places between steps, so mixing up beam states changes the answer.
CROSSING = [(20, 76, 123), (108, 103, 7)]


def picture(rgb: tuple[int, int, int]) -> bytes:
    return encode(Image.new("RGB", (8, 8), rgb), "PNG")


def mean(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.array(rgb, np.float64) / 255


def words(tokens: list[int] | tuple[int, ...]) -> str:
    return " ".join(TINY_VOCAB[t] for t in tokens)


def reference_score(rgb: tuple[int, int, int], caption: str, initial: np.ndarray | None = None) -> float:
    tokens = [TINY_VOCAB.index(w) for w in caption.split()] + [END]
    return tiny_caption_reference(mean(rgb), tokens, initial) / len(tokens)


def reference_greedy(rgb: tuple[int, int, int], max_length: int) -> tuple[str, float]:
    """Greedy decoding spelled out: at each step the token whose sequence is most probable."""
    seq: list[int] = []
    while len(seq) < max_length:
        best = max([*WORDS, END], key=lambda t: tiny_caption_reference(mean(rgb), [*seq, t]))
        if best == END:
            break
        seq.append(best)
    return words(seq), reference_score(rgb, words(seq))


def best_caption(rgb: tuple[int, int, int], max_length: int) -> tuple[str, float]:
    """The best caption of all, by exhaustive search."""
    scored = (
        (reference_score(rgb, words(seq)), words(seq))
        for n in range(max_length + 1)
        for seq in itertools.product(WORDS, repeat=n)
    )
    score, caption = max(scored)
    return caption, score


@pytest.fixture()
def captioner(tmp_path) -> Captioner:
    task = load_task(open_bundle(write_tiny_captioner(tmp_path / "cap").root), threads=1)
    assert isinstance(task, Captioner)
    return task


@pytest.mark.parametrize("rgb", [GRAY, RED, BLUE])
@pytest.mark.parametrize("max_length", [1, 2, 4])
def test_greedy_matches_the_reference(captioner, rgb, max_length):
    [result] = captioner.predict([picture(rgb)], max_length=max_length)
    caption, score = reference_greedy(rgb, max_length)
    assert result == {"caption": caption, "score": pytest.approx(score, abs=1e-5)}


def test_beam_search_finds_a_better_caption_than_greedy(captioner):
    [greedy] = captioner.predict([picture(GRAY)])
    [beam] = captioner.predict([picture(GRAY)], beam_size=2)
    best, best_score = best_caption(GRAY, 4)
    # Greedy takes "x" (p=0.5) and is stuck with a weak continuation; "y" (p=0.4) then ends at once.
    assert greedy["caption"] == "x z"
    assert (beam["caption"], best) == ("y", "y")
    assert beam["score"] == pytest.approx(best_score, abs=1e-5)
    assert beam["score"] > greedy["score"] + 0.05


@pytest.mark.parametrize("rgb", [GRAY, RED, BLUE, *CROSSING])
@pytest.mark.parametrize("beam_size", [2, 3, 5])
def test_alternatives_are_scored_exactly_and_sorted(captioner, rgb, beam_size):
    [result] = captioner.predict([picture(rgb)], beam_size=beam_size)
    alternatives = result["alternatives"]
    assert alternatives[0] == {"caption": result["caption"], "score": result["score"]}
    assert 1 < len(alternatives) <= beam_size
    assert len({a["caption"] for a in alternatives}) == len(alternatives)
    scores = [a["score"] for a in alternatives]
    assert scores == sorted(scores, reverse=True)
    for a in alternatives:  # the state (per-beam repetition counts) followed each beam correctly
        assert a["score"] == pytest.approx(reference_score(rgb, a["caption"]), abs=1e-5)
    assert result["score"] >= reference_greedy(rgb, 4)[1] - 1e-9


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_batch_answers_like_single_images(captioner, beam_size):
    # The images finish at different steps, so rows leave the batch while others go on.
    rgbs = [RED, GRAY, BLUE, GRAY, *CROSSING]
    batch = captioner.predict([picture(c) for c in rgbs], beam_size=beam_size)
    single = [captioner.predict([picture(c)], beam_size=beam_size)[0] for c in rgbs]
    assert batch == single


def test_max_length_ends_the_caption(captioner):
    [result] = captioner.predict([picture(GRAY)], max_length=1, beam_size=3)
    assert all(len(a["caption"].split()) <= 1 for a in result["alternatives"])
    # Out of room, a beam still ends on the model's own probability of <end>.
    assert result["score"] == pytest.approx(max(reference_score(GRAY, w) for w in ("x", "y", "red", "blue", "z")))


def test_initial_state_comes_from_the_encoder(tmp_path):
    initial = np.zeros(len(TINY_VOCAB), np.float32)
    initial[TINY_VOCAB.index("x")] = 1  # as if "x" were already said: it is penalised
    bundle = write_tiny_captioner(
        tmp_path / "init",
        files={
            "encoder": tiny_encoder_onnx(initial_counts=initial.tolist()),
            "decoder": tiny_decoder_onnx(),
            "vocab": ("\n".join(TINY_VOCAB) + "\n").encode(),
        },
    )
    [result] = load_task(open_bundle(bundle.root), threads=1).predict([picture(GRAY)])
    assert result["caption"] == "y"
    assert result["score"] == pytest.approx(reference_score(GRAY, "y", initial), abs=1e-5)


def test_a_decoder_giving_probabilities(captioner, tmp_path):
    bundle = write_tiny_captioner(
        tmp_path / "probs",
        files={
            "encoder": tiny_encoder_onnx(),
            "decoder": tiny_decoder_onnx(probabilities=True),
            "vocab": ("\n".join(TINY_VOCAB) + "\n").encode(),
        },
        output=OutputSpec(kind="probabilities"),
    )
    task = load_task(open_bundle(bundle.root), threads=1)
    images = [picture(GRAY), picture(RED)]
    for got, want in zip(task.predict(images, beam_size=3), captioner.predict(images, beam_size=3), strict=True):
        assert got["caption"] == want["caption"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)


def test_an_encoder_with_a_fixed_batch_runs_in_pieces(captioner, tmp_path):
    bundle = write_tiny_captioner(
        tmp_path / "fixed",
        files={
            "encoder": tiny_encoder_onnx(batch=1),
            "decoder": tiny_decoder_onnx(),
            "vocab": ("\n".join(TINY_VOCAB) + "\n").encode(),
        },
    )
    images = [picture(RED), picture(BLUE), picture(GRAY)]
    assert load_task(open_bundle(bundle.root), threads=1).predict(images) == captioner.predict(images)


def test_manifest_defaults_apply(tmp_path):
    bundle = write_tiny_captioner(tmp_path / "d", options={"beam_size": 2, "max_length": 1})
    [result] = load_task(open_bundle(bundle.root), threads=1).predict([picture(GRAY)])
    assert len(result["alternatives"]) == 2
    assert all(len(a["caption"].split()) <= 1 for a in result["alternatives"])


def test_warmup_runs_and_catches_a_wrong_input_size(captioner, tmp_path):
    captioner.warmup()
    bundle = write_tiny_captioner(tmp_path / "w", input=captioner.bundle.manifest.input._replace(size=(16, 16)))
    with pytest.raises(BundleError, match="do not run on the input the manifest describes"):
        load_task(open_bundle(bundle.root), threads=1).warmup()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"beam_size": 0}, "beam_size must be a whole number from 1 to 16, not 0"),
        ({"beam_size": 17}, "beam_size must be a whole number from 1 to 16, not 17"),
        ({"beam_size": "3"}, "beam_size must be a whole number from 1 to 16, not '3'"),
        ({"beam_size": 2.5}, "beam_size must be"),
        ({"beam_size": True}, "beam_size must be"),
        ({"max_length": 0}, "max_length must be a whole number from 1 to 128, not 0"),
        ({"max_length": 129}, "max_length must be a whole number from 1 to 128"),
        ({"max_length": [3]}, "max_length must be"),
        ({"top_k": 3}, "unknown option 'top_k' for image-to-text (options: beam_size, max_length)"),
    ],
)
def test_bad_options(captioner, options, message):
    with pytest.raises(InputError) as info:
        captioner.predict([picture(GRAY)], **options)
    assert message in str(info.value)


def test_none_means_the_default(captioner):
    assert captioner.predict([picture(GRAY)], beam_size=None, max_length=None, top_k=None) == captioner.predict(
        [picture(GRAY)]
    )


def test_no_images(captioner):
    with pytest.raises(InputError, match="no images to caption"):
        captioner.predict([])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"start_token": "<bos>"}, "options.start_token: '<bos>' is not in vocab.txt"),
        ({"end_token": "<eos>"}, "options.end_token: '<eos>' is not in vocab.txt"),
        ({"beam_size": 40}, "options.beam_size: expected a whole number from 1 to 16, got 40"),
        ({"max_length_limit": 0}, "options.max_length_limit: expected a whole number from 1 to 4096"),
        ({"beam_width": 3}, "options.beam_width: unknown key for image-to-text"),
        ({"suppress_tokens": ["<nope>"]}, "options.suppress_tokens: expected a list of tokens in the vocabulary"),
    ],
)
def test_bad_manifest_options(tmp_path, options, message):
    bundle = write_tiny_captioner(tmp_path / "o", options=options)
    with pytest.raises(BundleError) as info:
        load_task(open_bundle(bundle.root), threads=1)
    assert message in str(info.value)


def test_suppressed_tokens_are_never_generated(tmp_path):
    bundle = write_tiny_captioner(tmp_path / "s", options={"suppress_tokens": ["<start>", "x"]})
    [result] = load_task(open_bundle(bundle.root), threads=1).predict([picture(GRAY)], beam_size=5)
    assert all("x" not in a["caption"].split() for a in result["alternatives"])


def _with_files(tmp_path, **files: bytes):
    base = {
        "encoder": tiny_encoder_onnx(),
        "decoder": tiny_decoder_onnx(),
        "vocab": ("\n".join(TINY_VOCAB) + "\n").encode(),
    }
    return write_tiny_captioner(tmp_path / "f", files={**base, **files})


def test_vocab_must_match_the_decoder(tmp_path):
    bundle = _with_files(tmp_path, vocab=b"<pad>\n<start>\n<end>\nx\n")
    with pytest.raises(BundleError, match="the decoder scores 8 tokens but vocab.txt lists 4"):
        load_task(open_bundle(bundle.root), threads=1)


def test_blank_vocab_lines_keep_their_ids(tmp_path):
    vocab = "\n".join(t if t != "z" else " " for t in TINY_VOCAB) + "\n"  # a token that is a space
    bundle = _with_files(tmp_path, vocab=vocab.encode())
    [result] = load_task(open_bundle(bundle.root), threads=1).predict([picture(GRAY)])
    assert result["caption"] == "x  "  # "x" then the space token: ids did not shift


def test_decoder_inputs_must_be_state_or_context(tmp_path):
    bundle = _with_files(tmp_path, encoder=tiny_classifier_onnx())  # gives "logits", not "features"
    data = json.loads((bundle.root / MANIFEST_NAME).read_text())
    data["input"]["name"] = "pixels"
    (bundle.root / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="decoder input 'features' is neither a state .* nor an encoder output"):
        load_task(open_bundle(bundle.root), threads=1)


def test_the_logits_output_is_named(tmp_path):
    bundle = write_tiny_captioner(tmp_path / "n", output=OutputSpec(name="scores"))
    with pytest.raises(BundleError, match="the decoder has no output 'scores'"):
        load_task(open_bundle(bundle.root), threads=1)


def test_a_corrupt_decoder_is_caught_by_its_checksum(tmp_path):
    bundle = write_tiny_captioner(tmp_path / "c")
    path = bundle.path("decoder")
    path.write_bytes(path.read_bytes()[:-7] + b"garbage")
    with pytest.raises(BundleError, match="decoder.onnx is corrupt: sha256"):
        load_task(open_bundle(bundle.root), threads=1)


# -- every front door of the function, through the common Task interface ---------------------------


@pytest.fixture()
def function(tmp_path):
    return Function(load_model(str(write_tiny_captioner(tmp_path / "fn").root), threads=1))


def call(function, event):
    out = function(event, LocalContext())
    if isinstance(out, dict) and "statusCode" in out:
        return out["statusCode"], json.loads(out["body"])
    return 200, json.loads(json.dumps(out))


@pytest.mark.parametrize(
    "name", ["rest-binary-jpeg.json", "function-url-binary.json", "rest-multipart.json", "http-api-multipart.json"]
)
def test_gateway_events_get_the_caption(function, name):
    status, body = call(function, load_event(name, picture(GRAY)))
    assert status == 200
    assert body == {"caption": "x z", "score": pytest.approx(reference_score(GRAY, "x z"), abs=1e-5)}


def test_options_from_the_query_string_and_direct_invokes(function):
    event = load_event("function-url-binary.json", picture(GRAY))
    event["rawQueryString"] = "beam_size=2&max_length=3"
    event["queryStringParameters"] = {"beam_size": "2", "max_length": "3"}
    status, body = call(function, event)
    assert status == 200 and body["caption"] == "y" and len(body["alternatives"]) == 2
    b64 = base64.b64encode(picture(RED)).decode()
    assert call(function, {"image": b64, "beam_size": 3})[1]["alternatives"][0]["caption"] == "red"
    status, batch = call(function, {"images": [b64, base64.b64encode(picture(GRAY)).decode()]})
    assert [r["caption"] for r in batch] == ["red", "x z"]


def test_a_classifier_option_is_a_400_not_a_crash(function):
    status, body = call(function, load_event("http-api-binary.json", picture(GRAY)))  # ?top_k=3
    assert status == 400
    assert body["error"]["type"] == "InputError" and "unknown option 'top_k'" in body["error"]["message"]
    assert call(function, load_event("rest-binary-jpeg.json", picture(GRAY)))[0] == 200  # still serving
