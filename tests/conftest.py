from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from lambdalite.core.bundle import Bundle

from helpers import TEST_HOME, lambda_interpreter
from helpers.images import encode, jpeg_bytes
from helpers.models import write_tiny_bundle
from helpers.servers import ImageServer, start_moto

# The run's caches live in the checkout (.lambdalite/, ignored by git), never in the user's ~/.cache:
# the zoo models the fixtures build (kept between runs, so CI does not rebuild them), the Lambda
# wheels `build` downloads, and what the tools under test cache in XDG_CACHE_HOME (onnxruntime's
# device id, Chromium's dconf). Set before any test, and inherited by every process a test starts.
os.environ["LAMBDALITE_HOME"] = str(TEST_HOME)
os.environ["XDG_CACHE_HOME"] = str(TEST_HOME / "xdg-cache")


@pytest.fixture(scope="session")
def chelsea_image() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="session")
def chelsea_jpeg(chelsea_image: Image.Image) -> bytes:
    """scikit-image's `data.chelsea()` (a cat), saved as JPEG."""
    return jpeg_bytes(chelsea_image, quality=92)


@pytest.fixture(scope="session")
def test_photos(chelsea_jpeg: bytes) -> dict[str, bytes]:
    """The JPEG test photos: four scikit-image photos at quality 90, 92 and 95, and the cat fixture."""
    from lambdalite.toolkit.zoo.calibration import photo

    photos = {
        f"{name}-q{q}.jpg": encode(photo(name), "JPEG", quality=q)
        for name in ("chelsea", "coffee", "rocket", "astronaut")
        for q in (90, 92, 95)
    }
    photos["chelsea.jpg (fixture)"] = chelsea_jpeg
    return photos


@pytest.fixture(scope="session")
def chelsea_path(tmp_path_factory: pytest.TempPathFactory, chelsea_jpeg: bytes) -> Path:
    path = tmp_path_factory.mktemp("images") / "chelsea.jpg"
    path.write_bytes(chelsea_jpeg)
    return path


@pytest.fixture()
def tiny_bundle(tmp_path: Path) -> Bundle:
    return write_tiny_bundle(tmp_path / "tiny")


@pytest.fixture()
def lambdalite_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private, empty cache home for tests that fill or corrupt the cache."""
    home = tmp_path / "home"
    monkeypatch.setenv("LAMBDALITE_HOME", str(home))
    yield home


@pytest.fixture(scope="session")
def demo_bundle() -> Path:
    """The real demo model (efficientnet-lite0), built once into the test cache (TEST_HOME)."""
    from lambdalite.toolkit.zoo import ensure_built

    return ensure_built("efficientnet-lite0")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """An S3-speaking server (moto) for the whole run: its endpoint URL."""
    proc, endpoint = start_moto()
    try:
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture()
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Dummy credentials and AWS_ENDPOINT_URL_S3 pointing boto3 (and subprocesses) at moto."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    return moto_endpoint


@pytest.fixture(scope="session")
def image_server(chelsea_jpeg: bytes) -> Iterator[ImageServer]:
    from PIL import Image as PILImage

    red = jpeg_bytes(PILImage.new("RGB", (32, 32), (250, 5, 5)), quality=95)
    server = ImageServer({"/cat.jpg": chelsea_jpeg, "/red.jpg": red, "/slow": red, "/text.txt": b"hello"})
    yield server
    server.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LAMBDALITE_AWS_TESTS") == "1":
        return
    # Real-AWS tests are opt-in: deselected (not skipped) unless LAMBDALITE_AWS_TESTS=1.
    deselected = [item for item in items if "aws" in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if "aws" not in item.keywords]


# The Lambda runtime the artifact tests build for. python3.12 (Amazon Linux 2023) is what the pinned
# wheels load on; python3.11 runs on Amazon Linux 2, whose glibc 2.26 they do not support.
ARTIFACT_PYTHON = "3.12"


@pytest.fixture(scope="session")
def artifact_python() -> str:
    exe = lambda_interpreter(ARTIFACT_PYTHON)
    if exe is None:
        pytest.skip(f"no Python {ARTIFACT_PYTHON} here to run a python{ARTIFACT_PYTHON} Lambda artifact")
    return exe


@pytest.fixture(scope="session")
def lite0_build(tmp_path_factory: pytest.TempPathFactory, demo_bundle: Path, artifact_python: str) -> tuple[Path, str]:
    """`lambdalite build efficientnet-lite0 -o DIR` run as users run it: (DIR, what it printed)."""
    out = tmp_path_factory.mktemp("lite0-build")
    env = {**os.environ, "PATH": f"{Path(artifact_python).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "lambdalite"), "build", "efficientnet-lite0", "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout
