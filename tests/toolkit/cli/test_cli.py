"""The CLI as users run it: a real process, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from lambdalite.core.bundle import MANIFEST_NAME, pack_bundle

from helpers.cli import one_line_error
from helpers.images import jpeg_bytes, png_header_only

LAMBDALITE = Path(sys.executable).parent / "lambdalite"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LAMBDALITE), *args], capture_output=True, text=True, timeout=120, env=env)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], message: str) -> None:
    one_line_error(proc, message)
    assert proc.stdout == ""


def test_predict_tiny_bundle_table_and_json(tiny_bundle, tmp_path):
    img = tmp_path / "red.png"
    Image.new("RGB", (16, 16), (240, 10, 10)).save(img)
    table = run("predict", str(tiny_bundle.root), str(img), "--top-k", "2")
    assert table.returncode == 0, table.stderr
    assert "red" in table.stdout.splitlines()[1]
    both = run("predict", str(tiny_bundle.root), str(img), str(img), "--json")
    assert both.returncode == 0, both.stderr
    parsed = json.loads(both.stdout)
    assert len(parsed) == 2 and parsed[0][0]["className"] == "red"


@pytest.fixture()
def images(tmp_path: Path) -> dict[str, Path]:
    good = jpeg_bytes(Image.new("RGB", (200, 150), (10, 200, 30)), quality=95)
    files = {
        "text.jpg": b"this is not an image at all\n",
        "truncated.jpg": good[: len(good) // 2],
        "empty.jpg": b"",
        "bomb.png": png_header_only(30000, 30000),
        "good.jpg": good,
    }
    out = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        out[name] = tmp_path / name
    return out


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("text.jpg", "text.jpg: not an image"),
        ("truncated.jpg", "truncated.jpg: corrupt or truncated JPEG"),
        ("empty.jpg", "empty.jpg: the image is empty"),
        ("bomb.png", "bomb.png: image is 30000x30000"),
    ],
)
def test_bad_images(tiny_bundle, images, image, message):
    assert_one_line_error(run("predict", str(tiny_bundle.root), str(images[image])), message)


def test_unknown_model(images):
    assert_one_line_error(run("predict", "resnet-9000", str(images["good.jpg"])), "unknown model 'resnet-9000'")


def test_missing_image_file(tiny_bundle, tmp_path):
    proc = run("predict", str(tiny_bundle.root), str(tmp_path / "nope.jpg"))
    assert_one_line_error(proc, "nope.jpg: No such file or directory")
    assert proc.returncode == 2


def test_manifest_with_a_bad_key(tiny_bundle, images):
    data = json.loads((tiny_bundle.root / MANIFEST_NAME).read_text())
    data["input"]["layout"] = "HWCN"
    (tiny_bundle.root / MANIFEST_NAME).write_text(json.dumps(data))
    assert_one_line_error(run("predict", str(tiny_bundle.root), str(images["good.jpg"])), "input.layout")


def test_checksum_mismatch(tiny_bundle, images):
    model = tiny_bundle.path("model")
    model.write_bytes(model.read_bytes() + b"\x00")
    assert_one_line_error(run("predict", str(tiny_bundle.root), str(images["good.jpg"])), "is corrupt: sha256")


def test_corrupt_bundle_archive(tiny_bundle, images, tmp_path):
    archive = pack_bundle(tiny_bundle, tmp_path / "tiny.tar.gz")
    archive.write_bytes(archive.read_bytes()[:200])
    env = {"LAMBDALITE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    assert_one_line_error(run("predict", str(archive), str(images["good.jpg"]), env=env), "tiny.tar.gz")


def test_bundle_inspect_and_pack(tiny_bundle, tmp_path):
    proc = run("bundle", "inspect", str(tiny_bundle.root))
    assert proc.returncode == 0, proc.stderr
    assert "tiny 0.1.0" in proc.stdout and "sha256 verified" in proc.stdout
    as_json = json.loads(run("bundle", "inspect", str(tiny_bundle.root), "--json").stdout)
    assert as_json["task"] == "image-classification"
    packed = run("bundle", "pack", str(tiny_bundle.root), "-o", str(tmp_path / "t.tar.gz"))
    assert packed.returncode == 0 and (tmp_path / "t.tar.gz").stat().st_size > 0


def test_models_lists_the_zoo(tmp_path):
    proc = run("models", "--json", env={"LAMBDALITE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    listed = json.loads(proc.stdout)
    names = {m["name"]: m for m in listed["models"]}
    assert "efficientnet-lite0" in names and names["efficientnet-lite0"]["cached"] is False


def test_invoke_local_runs_an_event_file(tiny_bundle, tmp_path):
    import base64

    from helpers.eventlib import load_event

    red = jpeg_bytes(Image.new("RGB", (20, 20), (250, 0, 0)), quality=95)
    event = tmp_path / "event.json"
    event.write_text(json.dumps(load_event("rest-binary-jpeg.json", red)))
    proc = run("invoke-local", str(tiny_bundle.root), str(event))
    assert proc.returncode == 0, proc.stderr
    response = json.loads(proc.stdout)  # stdout is the response only; logs went to stderr
    assert response["statusCode"] == 200
    assert json.loads(response["body"])[0]["className"] == "red"
    assert '"event":"cold_start"' in proc.stderr
    direct = tmp_path / "direct.json"
    direct.write_text(json.dumps({"image": base64.b64encode(red).decode()}))
    top1 = json.loads(run("invoke-local", str(tiny_bundle.root), str(direct), "--response", "top1").stdout)
    assert top1["body"]["class"] == "red"


def test_invoke_local_function_error_is_the_lambda_envelope(tiny_bundle, tmp_path):
    event = tmp_path / "event.json"
    event.write_text('{"nothing": true}')
    proc = run("invoke-local", str(tiny_bundle.root), str(event))
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    envelope = json.loads(proc.stdout)
    assert envelope["errorType"] == "EventError" and "no image" in envelope["errorMessage"]
