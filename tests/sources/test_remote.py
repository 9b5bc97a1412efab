"""https:// sources and the download cache, against a real HTTPS server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from lambdalite.core.bundle import open_bundle, pack_bundle
from lambdalite.errors import ChecksumError, SourceError, SourceTimeoutError, UnsafeArchiveError
from lambdalite.settings import Settings
from lambdalite.sources.references import resolve

from helpers.models import write_tiny_bundle
from helpers.servers import free_port, https_site


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with https_site(tmp_path_factory.mktemp("tls")) as served:
        yield served


@pytest.fixture()
def site(server, monkeypatch, lambdalite_home):
    site, base, cert = server
    site.routes.clear()
    site.hits.clear()
    site.chunk_delay = 0.0
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return site, base


def packed_tiny(tmp_path: Path, name: str = "tiny", padding: int = 0) -> bytes:
    from helpers.models import TINY_LABELS, tiny_classifier_onnx

    files: dict[str, bytes] = {"model": tiny_classifier_onnx(), "labels": ("\n".join(TINY_LABELS) + "\n").encode()}
    if padding:
        files["weights"] = os.urandom(padding)  # incompressible bulk, as real weights are
    bundle = write_tiny_bundle(tmp_path / f"src-{name}", name=name, files=files)
    return pack_bundle(bundle, tmp_path / f"{name}.tar.gz").read_bytes()


def test_pinned_https_bundle_downloads_once(site, tmp_path, lambdalite_home):
    site, base = site
    data = packed_tiny(tmp_path)
    site.routes["/models/tiny.tar.gz"] = (200, data, {})
    ref = f"{base}/models/tiny.tar.gz#sha256={hashlib.sha256(data).hexdigest()}"
    root = resolve(ref)
    assert open_bundle(root).manifest.name == "tiny"
    assert root.is_relative_to(lambdalite_home / "remote")
    record = json.loads((root.parent / "source.json").read_text())
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["bytes"] == len(data)
    assert resolve(ref) == root
    assert site.hits["/models/tiny.tar.gz"] == 1


def test_pin_mismatch_is_a_checksum_error_and_caches_nothing(site, tmp_path, lambdalite_home):
    site, base = site
    site.routes["/tiny.tar.gz"] = (200, packed_tiny(tmp_path), {})
    with pytest.raises(ChecksumError, match="does not match the pinned"):
        resolve(f"{base}/tiny.tar.gz#sha256={'0' * 64}")
    assert not [p for p in (lambdalite_home / "remote").iterdir() if not p.name.endswith(".lock")]


def test_bad_pin_syntax(site):
    _, base = site
    with pytest.raises(SourceError, match="#sha256=<64 hex digits>"):
        resolve(f"{base}/tiny.tar.gz#md5=abc")


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (404, r"/missing.tar.gz\?…: not found \(HTTP 404\)"),
        (403, r"access denied \(HTTP 403\)"),
        (500, "the server answered HTTP 500"),
    ],
)
def test_http_errors_are_one_line(site, status, message):
    site, base = site
    if status != 404:
        site.routes["/missing.tar.gz"] = (status, b"no", {})
    with pytest.raises(SourceError, match=message) as info:
        resolve(f"{base}/missing.tar.gz?X-Amz-Signature=secret")
    assert "secret" not in str(info.value) and "\n" not in str(info.value)


def test_refused_connection(lambdalite_home):
    with pytest.raises(SourceError, match="connection refused by 127.0.0.1"):
        resolve(f"https://127.0.0.1:{free_port()}/model.tar.gz")


def test_timeout(site, monkeypatch):
    _, base = site
    monkeypatch.setenv("LAMBDALITE_SOURCE_TIMEOUT", "0.5")
    with pytest.raises(SourceTimeoutError, match="LAMBDALITE_SOURCE_TIMEOUT"):
        resolve(f"{base}/hang")


def test_truncated_download(site, tmp_path):
    site, base = site
    data = packed_tiny(tmp_path)
    site.routes["/short.tar.gz"] = (200, data, {"Content-Length": str(len(data) + 100)})
    with pytest.raises(SourceError, match=r"broke off|stopped at"):
        resolve(f"{base}/short.tar.gz")


def test_untrusted_certificate(site, monkeypatch):
    _, base = site
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(SourceError, match="TLS certificate of 127.0.0.1.* not trusted.*SSL_CERT_FILE"):
        resolve(f"{base}/tiny.tar.gz")


def test_s3_style_etag_is_checked(site, tmp_path):
    site, base = site
    data = packed_tiny(tmp_path)
    wrong = hashlib.md5(b"something else").hexdigest()
    site.routes["/etag.tar.gz"] = (200, data, {"ETag": f'"{wrong}"', "x-amz-request-id": "1"})
    with pytest.raises(ChecksumError, match="does not match the ETag"):
        resolve(f"{base}/etag.tar.gz")
    site.routes["/etag.tar.gz"] = (200, data, {"ETag": f'"{hashlib.md5(data).hexdigest()}"', "x-amz-request-id": "2"})
    assert open_bundle(resolve(f"{base}/etag.tar.gz")).manifest.name == "tiny"


def test_a_bare_model_file_points_at_import(site):
    site, base = site
    site.routes["/model.onnx"] = (200, b"\x08\x07onnx-ish", {})
    with pytest.raises(SourceError, match="lambdalite import model.onnx"):
        resolve(f"{base}/model.onnx")


def _tar(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
    return buf.getvalue()


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (("../../escape.txt", b"gotcha"), "refusing path with '..'"),
        (("/tmp/lambdalite-escape.txt", b"gotcha"), "refusing absolute path"),
        (_link("classes.txt", "../../escape.txt", tarfile.SYMTYPE), "refusing link"),
        (_link("model.pt", "/etc/passwd", tarfile.LNKTYPE), "refusing link"),
    ],
)
def test_hostile_archives_are_refused_and_nothing_escapes(site, tmp_path, lambdalite_home, entry, message):
    site, base = site
    site.routes["/evil.tar.gz"] = (200, _tar([("model.pt", b"x"), entry]), {})
    with pytest.raises(UnsafeArchiveError, match=message):
        resolve(f"{base}/evil.tar.gz")
    assert not (tmp_path / "escape.txt").exists() and not (lambdalite_home / "escape.txt").exists()
    assert not Path("/tmp/lambdalite-escape.txt").exists()
    leftovers = [p for p in lambdalite_home.rglob("*") if not p.name.endswith(".lock") and p.is_file()]
    assert leftovers == []  # not even the download stays


def test_least_recently_used_entries_are_evicted(site, tmp_path, lambdalite_home, monkeypatch):
    site, base = site
    archives = {name: packed_tiny(tmp_path, name) for name in ("a", "b", "c")}
    for name, data in archives.items():
        site.routes[f"/{name}.tar.gz"] = (200, data, {})
    root_a = resolve(f"{base}/a.tar.gz")
    time.sleep(0.01)
    root_b = resolve(f"{base}/b.tar.gz")
    time.sleep(0.01)
    assert resolve(f"{base}/a.tar.gz") == root_a  # a is now the most recently used
    # Room for exactly two entries: fetching c must evict one, the least recently used (b).
    monkeypatch.setenv("LAMBDALITE_CACHE_BYTES", str(Settings.from_env().cache.usage() + 2 * len(archives["c"]) - 1))
    root_c = resolve(f"{base}/c.tar.gz")
    assert root_a.is_dir() and root_c.is_dir()
    assert not root_b.parent.exists()
    assert site.hits["/a.tar.gz"] == 1
    # b comes back by downloading again.
    assert open_bundle(resolve(f"{base}/b.tar.gz")).manifest.name == "b"
    assert site.hits["/b.tar.gz"] == 2


def test_a_model_over_the_budget_is_refused(site, tmp_path, monkeypatch, lambdalite_home):
    site, base = site
    data = packed_tiny(tmp_path)
    site.routes["/big.tar.gz"] = (200, data, {})
    monkeypatch.setenv("LAMBDALITE_CACHE_BYTES", str(len(data)))
    with pytest.raises(SourceError, match="cache budget .*LAMBDALITE_CACHE_BYTES"):
        resolve(f"{base}/big.tar.gz")


CONCURRENT = """
import json, sys, time
from lambdalite.sources.references import resolve
started = time.time()
root = str(resolve(sys.argv[1]))
print(json.dumps({"root": root, "started": started, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_concurrent_cold_starts_download_once(site, tmp_path, lambdalite_home):
    site, base = site
    data = packed_tiny(tmp_path, padding=40 * 4096)
    site.routes["/shared.tar.gz"] = (200, data, {})
    site.chunk_delay = 0.05  # about 2 s: both processes start while the download is under way
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, f"{base}/shared.tar.gz"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    assert outputs[0]["root"] == outputs[1]["root"]
    deadline = time.time() + 10  # the server thread records the end just after its last write
    while "/shared.tar.gz" not in site.finished and time.time() < deadline:
        time.sleep(0.01)
    assert all(out["started"] < site.finished["/shared.tar.gz"] for out in outputs)  # both were cold at once
    assert site.hits["/shared.tar.gz"] == 1
    # An https download needs only the standard library.
    assert {"boto3", "botocore", "torch", "onnx", "click"}.isdisjoint(outputs[0]["modules"])
