from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from lambdalite.bundle import Bundle

from models import write_tiny_bundle

REPO = Path(__file__).resolve().parent.parent


def jpeg_bytes(img: Image.Image, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="session")
def chelsea_image() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="session")
def chelsea_jpeg(chelsea_image: Image.Image) -> bytes:
    """scikit-image's `data.chelsea()` (a cat), saved as JPEG."""
    return jpeg_bytes(chelsea_image, quality=92)


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
    """The real demo model (efficientnet-lite0), built once into the normal cache."""
    from lambdalite.zoo import ensure_built

    return ensure_built("efficientnet-lite0")


CAT_CLASSES = {"tabby, tabby cat", "tiger cat", "Egyptian cat"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LAMBDALITE_AWS_TESTS") == "1":
        return
    # Real-AWS tests are opt-in: deselected (not skipped) unless LAMBDALITE_AWS_TESTS=1.
    deselected = [item for item in items if "aws" in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if "aws" not in item.keywords]
