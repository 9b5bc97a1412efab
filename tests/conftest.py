from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from lambdalite.bundle import Bundle

from models import write_tiny_bundle

REPO = Path(__file__).resolve().parent.parent

# The run's caches live in the checkout (.lambdalite/, ignored by git), never in the user's ~/.cache:
# the zoo models the fixtures build (kept between runs, so CI does not rebuild them), the Lambda
# wheels `build` downloads, and what the tools under test cache in XDG_CACHE_HOME (onnxruntime's
# device id, Chromium's dconf). Set before any test, and inherited by every process a test starts.
TEST_HOME = REPO / ".lambdalite"
os.environ["LAMBDALITE_HOME"] = str(TEST_HOME)
os.environ["XDG_CACHE_HOME"] = str(TEST_HOME / "xdg-cache")


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
def test_photos(chelsea_jpeg: bytes) -> dict[str, bytes]:
    """The JPEG test photos: four scikit-image photos at quality 90, 92 and 95, and the cat fixture."""
    from lambdalite.zoo.calibration import photo

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
    from lambdalite.zoo import ensure_built

    return ensure_built("efficientnet-lite0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_moto(extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """moto in server mode on 127.0.0.1 and an ephemeral port; (process, endpoint URL)."""
    moto = Path(sys.executable).parent / "moto_server"
    for _attempt in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **(extra_env or {})},
        )
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                return proc, endpoint
            except OSError:
                time.sleep(0.1)
        proc.kill()
        proc.wait()
    raise RuntimeError("moto_server did not start")


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


def one_line_error(proc: subprocess.CompletedProcess[str], message: str) -> None:
    """A CLI failure as users must see it: nonzero exit, one line on stderr, no traceback."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert message in lines[0], lines[0]


CAT_CLASSES = {"tabby, tabby cat", "tiger cat", "Egyptian cat"}


class ImageServer:
    """A real HTTP server on 127.0.0.1 serving images, redirects and failures for URL tests."""

    def __init__(self, files: dict[str, bytes]) -> None:
        import http.server
        import threading
        import time

        routes = files

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                from urllib.parse import parse_qs, urlsplit

                parts = urlsplit(self.path)
                path = parts.path
                if path == "/redirect":  # /redirect?to=<url or path>
                    self.send_response(302)
                    self.send_header("Location", parse_qs(parts.query)["to"][0])
                    self.end_headers()
                    return
                if path == "/loop":
                    self.send_response(302)
                    self.send_header("Location", "/loop")
                    self.end_headers()
                    return
                if path == "/slow":
                    time.sleep(2.0)
                if path == "/huge":
                    self.send_response(200)
                    self.send_header("Content-Length", str(500 * 2**20))
                    self.end_headers()
                    return
                data = routes.get(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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


def lambda_interpreter(version: str) -> str | None:
    """A local Python `version` ("3.12"): on PATH, or a pyenv install. None if there is none."""
    import glob
    import shutil

    candidates = [shutil.which(f"python{version}") or ""]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
    for exe in candidates:
        if not exe:
            continue
        proc = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
        )
        if proc.returncode == 0 and proc.stdout.strip() == version:
            return exe
    return None


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
