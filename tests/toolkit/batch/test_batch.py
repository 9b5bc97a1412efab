"""`lambdalite batch` as users run it: the real CLI against `lambdalite serve` (several instances,
the official runtime client), S3 as moto in server mode over HTTP. Exactly one result per image,
through interruptions, corrupt files, throttling and timeouts."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageOps

from lambdalite.toolkit.batch.report import Summary, percentile
from lambdalite.toolkit.batch.run import plan_requests
from lambdalite.toolkit.batch.sinks import JsonlSink, result_name
from lambdalite.toolkit.batch.sources import Task, list_tasks

from helpers import CAT_CLASSES, HANDLERS
from helpers.lambda_servers import ServeProcess
from helpers.models import write_tiny_bundle
from helpers.servers import start_moto

LAMBDALITE = Path(sys.executable).parent / "lambdalite"
COLOURS = {"red": (250, 5, 5), "green": (5, 250, 5), "blue": (5, 5, 250)}


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def generated(seed: int, size: int = 96) -> Image.Image:
    """A scene of random shapes: no class to expect, but a real image to decode and run."""
    rng = random.Random(seed)
    img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rng.randrange(size), rng.randrange(size)
        box = (x, y, x + rng.randrange(8, 40), y + rng.randrange(8, 40))
        draw.ellipse(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def cat_variants(chelsea: Image.Image) -> list[bytes]:
    """The known photo, re-encoded, mirrored, cropped and shrunk: still a cat to the model."""
    w, h = chelsea.size
    out = []
    for quality in (60, 75, 90):
        out += [
            jpeg(chelsea, quality),
            jpeg(ImageOps.mirror(chelsea), quality),
            jpeg(chelsea.crop((w // 25, h // 25, w - w // 25, h - h // 25)), quality),
            jpeg(chelsea.resize((w * 3 // 4, h * 3 // 4)), quality),
        ]
    return out


def run_batch(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LAMBDALITE), "batch", *args], capture_output=True, text=True, timeout=timeout, env=env or os.environ
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def once_each(records: list[dict[str, Any]], ids: set[str]) -> None:
    counts = Counter(r["input"] for r in records)
    assert set(counts) == ids, {"missing": len(ids - set(counts)), "unknown": len(set(counts) - ids)}
    assert max(counts.values()) == 1, [i for i, n in counts.items() if n > 1][:5]


# -- the pieces, pure ------------------------------------------------------------------------------


def test_requests_keep_to_one_kind_the_count_and_the_payload(tmp_path):
    small, big = tmp_path / "small.jpg", tmp_path / "big.jpg"
    small.write_bytes(b"x" * 1000)
    big.write_bytes(b"x" * 3_000_000)
    tasks = [Task(f"s{i}", path=small) for i in range(5)] + [Task("u", url="s3://b/k")] + [Task("big", path=big)] * 3
    chunks = [[t.id for t in c] for c in plan_requests(tasks, per_request=4, max_payload=5_500_000)]
    assert chunks == [["s0", "s1", "s2", "s3"], ["s4"], ["u"], ["big"], ["big"], ["big"]]


def test_a_line_cut_short_by_a_kill_is_dropped_and_failures_can_run_again(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(
        '{"input":"a.jpg","result":[]}\n{"input":"b.jpg","error":{"type":"ImageDecodeError","message":"x"}}\n{"inp'
    )
    sink = JsonlSink(path)
    assert sink.done == {"a.jpg", "b.jpg"} and path.read_text().endswith("}\n")
    sink.write([{"input": "c.jpg", "result": []}])
    sink.close()
    retry = JsonlSink(path, retry_failed=True)
    retry.close()
    assert retry.done == {"a.jpg", "c.jpg"} and retry.failed_before == 1
    assert [r["input"] for r in lines(path)] == ["a.jpg", "c.jpg"]


def test_result_names_follow_the_input():
    assert result_name("s3://photos/in/cat.jpg") == "in/cat.jpg"
    assert result_name("cats/1.jpg") == "cats/1.jpg"
    assert result_name("../up/./x.jpg") == "up/x.jpg"
    assert result_name("https://example.com/a.jpg").startswith("urls/")


def test_percentiles_and_the_cost_model():
    assert percentile([], 50) is None
    assert percentile([float(i) for i in range(1, 101)], 50) == 50 and percentile([1.0, 2.0, 3.0], 99) == 3.0
    summary = Summary(done=1000, requests=140, invocations=125, billed_ms=[800] * 125, memory_mb=2048, elapsed_s=10)
    cost = summary.cost()
    # 125 invokes of 0.8 s at 2 GB: 200 GB-s at $0.0000166667, plus 125 requests at $0.20 per million
    # (the 15 throttled ones are free).
    assert cost["run_usd"] == pytest.approx(200 * 0.0000166667 + 125 * 0.2e-6)
    assert cost["per_million_images_usd"] == pytest.approx(cost["run_usd"] * 1000)
    assert cost["billed_ms_per_image"] == 100 and cost["measured"] is True
    assert summary.images_per_second == 100


def test_inputs_from_a_folder_a_list_and_refusals(tmp_path):
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for name in ("b.jpg", "a.PNG", "sub/c.webp", "notes.txt"):
        (tmp_path / "imgs" / name).write_bytes(b"x")
    assert [t.id for t in list_tasks(str(tmp_path / "imgs"))] == ["a.PNG", "b.jpg", "sub/c.webp"]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# images\n{tmp_path / 'imgs' / 'b.jpg'}\ns3://photos/x.jpg\n\nhttps://example.com/y.jpg\n")
    tasks = list_tasks(str(listing))
    assert [(t.path is not None, t.url) for t in tasks] == [
        (True, None),
        (False, "s3://photos/x.jpg"),
        (False, "https://example.com/y.jpg"),
    ]
    proc = run_batch(str(tmp_path / "nothing"), "-o", str(tmp_path / "o.jsonl"), "--endpoint", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "is neither a folder, a file list nor s3://" in proc.stderr
    proc = run_batch(str(tmp_path / "imgs"), "-o", str(tmp_path / "o.jsonl"), "--endpoint", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "(is `lambdalite serve` running there?)" in proc.stderr
    proc = run_batch(str(tmp_path / "imgs"), "-o", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 2 and "--endpoint URL (lambdalite serve) or --function NAME" in proc.stderr


# -- a thousand images through serve (the demo model) --------------------------------------------------


@pytest.fixture(scope="module")
def thousand(tmp_path_factory: pytest.TempPathFactory, chelsea_image: Image.Image) -> tuple[Path, set[str]]:
    """1,000 images: 12 variants of a known photo (a cat) cycled through 59 files, and 941 generated."""
    root = tmp_path_factory.mktemp("thousand")
    cats = cat_variants(chelsea_image)
    names = set()
    for i in range(1000):
        if i % 17 == 0:
            name = f"cat/{i:04d}.jpg"
            data = cats[i % len(cats)]
        else:
            name = f"gen/{i // 100}/{i:04d}.jpg"
            data = jpeg(generated(i))
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        names.add(name)
    return root, names


@pytest.fixture(scope="module")
def demo_serve(tmp_path_factory: pytest.TempPathFactory, demo_bundle: Path) -> Iterator[ServeProcess]:
    """The demo model behind serve, three instances at most, 429 when all are busy (no --queue)."""
    with ServeProcess(tmp_path_factory.mktemp("serve"), str(demo_bundle), "--max-concurrency", "3") as server:
        yield server


def test_a_thousand_images_through_serve_one_result_each(thousand, demo_serve, tmp_path):
    root, names = thousand
    out, summary_path = tmp_path / "labels.jsonl", tmp_path / "summary.json"
    proc = run_batch(
        str(root), "-o", str(out), "--endpoint", demo_serve.url, "-c", "6", "--summary-json", str(summary_path)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = lines(out)
    once_each(records, names)
    assert all("result" in r and r["model"] == {"name": "efficientnet-lite0", "version": "1.0.0"} for r in records)
    cats = [r for r in records if r["input"].startswith("cat/")]
    assert len(cats) == 59 and all(r["result"][0]["className"] in CAT_CLASSES for r in cats)
    summary = json.loads(summary_path.read_text())
    assert (summary["done"], summary["failed"], summary["unfinished"], summary["skipped"]) == (1000, {}, {}, 0)
    assert summary["images_per_request"] > 4  # batched: 8 per request but for retries' splits and the tail
    assert summary["cost"]["measured"] and summary["cost"]["memory_mb"] == 1024
    assert summary["cost"]["per_million_images_usd"] > 0
    assert "done      1000 of 1000 images" in proc.stdout and "per million images" in proc.stdout
    assert "ETA" in proc.stderr and "images/s" in proc.stderr  # the progress line
    # Nothing left to do: a rerun sends nothing.
    again = run_batch(str(root), "-o", str(out), "--endpoint", demo_serve.url)
    assert again.returncode == 0 and "(1000 were already in" in again.stdout and len(lines(out)) == 1000


def wait_for_lines(path: Path, at_least: int, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {at_least} lines (exit {proc.poll()})")


def sigint_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupted_killed_and_resumed_still_one_result_each(thousand, demo_serve, tmp_path):
    root, names = thousand
    out = tmp_path / "labels.jsonl"
    command = [str(LAMBDALITE), "batch", str(root), "-o", str(out), "--endpoint", demo_serve.url, "-c", "4"]

    # Ctrl-C: the requests in flight finish and are written; it says how to resume. The command starts
    # with SIGINT at its default, as from a terminal: a test run started in the background (`cmd &` in a
    # script, a CI runner) ignores SIGINT, children inherit that, and Python then never raises
    # KeyboardInterrupt.
    first = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_as_in_a_terminal
    )
    wait_for_lines(out, 200, first)
    first.send_signal(signal.SIGINT)
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stderr
    assert "interrupted: run the same command again to resume" in stdout and "Traceback" not in stderr
    after_interrupt = len(lines(out))
    assert 200 <= after_interrupt < 1000

    # A kill: nothing to tidy up; a line cut short would be dropped (here, a simulated one).
    second = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    wait_for_lines(out, after_interrupt + 200, second)
    second.kill()
    second.wait(timeout=30)
    killed_at = out.read_bytes().count(b"\n")
    assert killed_at < 1000, "finished before the kill: nothing was tested"
    with out.open("a") as f:
        f.write('{"input":"gen/9/0999.jpg","model":{"na')

    third = run_batch(str(root), "-o", str(out), "--endpoint", demo_serve.url, "-c", "4")
    assert third.returncode == 0, third.stdout + third.stderr
    assert f"({killed_at} were already in" in third.stdout
    once_each(lines(out), names)


# -- corrupt files, throttling, timeouts (the tiny model) ------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_tiny_bundle(tmp_path_factory.mktemp("tiny") / "tiny").root)


def coloured(root: Path, count: int) -> dict[str, str]:
    """`count` JPEGs of a known colour each: name -> the colour the tiny model must answer."""
    expected = {}
    for i in range(count):
        colour = list(COLOURS)[i % 3]
        name = f"{colour}/{i:04d}.jpg"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(jpeg(Image.new("RGB", (24, 24), COLOURS[colour])))
        expected[name] = colour
    return expected


def test_two_percent_corrupt_images_are_reported_and_the_rest_succeed(tiny, tmp_path):
    root = tmp_path / "photos"
    expected = coloured(root, 490)
    broken = {
        "broken/truncated-0.jpg": jpeg(Image.new("RGB", (64, 64), (9, 9, 9)))[:150],
        "broken/empty.jpg": b"",
        "broken/text.png": b"this is not an image at all\n" * 4,
        "broken/html.webp": b"<html><body>404</body></html>",
    }
    for i in range(6):
        broken[f"broken/garbage-{i}.jpg"] = bytes(random.Random(i).randrange(256) for _ in range(300))
    for name, data in broken.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    out = tmp_path / "labels.jsonl"
    with ServeProcess(tmp_path, tiny, "--max-concurrency", "2") as server:
        proc = run_batch(
            str(root), "-o", str(out), "--endpoint", server.url, "-c", "3", "--summary-json", str(tmp_path / "s.json")
        )
    assert proc.returncode == 1  # some images failed: said in the exit code too
    records = lines(out)
    once_each(records, set(expected) | set(broken))
    failed = {r["input"]: r["error"]["type"] for r in records if "error" in r}
    assert failed == {**dict.fromkeys(broken, "ImageDecodeError"), "broken/empty.jpg": "EventError"}  # no image
    assert all(r["result"][0]["className"] == expected[r["input"]] for r in records if "result" in r)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["done"] == 490 and summary["failed"] == {"ImageDecodeError": 9, "EventError": 1}
    assert "failed    10 (ImageDecodeError 9, EventError 1)" in proc.stdout


def test_throttling_and_timeouts_are_retried_with_backoff(tiny, tmp_path):
    root = tmp_path / "photos"
    expected = coloured(root, 24)
    out = tmp_path / "labels.jsonl"
    flaky = ["--handler", "flaky.handler", "--code-dir", str(HANDLERS), "--timeout", "1", "--max-concurrency", "1"]
    flaky += ["--env", f"FLAKY_UNTIL={time.time() + 6}", "--env", "FLAKY_DELAY=0.05"]
    with ServeProcess(tmp_path, tiny, *flaky) as server:
        proc = run_batch(
            str(root), "-o", str(out), "--endpoint", server.url, "-c", "4", "--per-request", "2",
            "--retries", "12", "--summary-json", str(tmp_path / "s.json"),
        )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = lines(out)
    once_each(records, set(expected))
    assert all(r["result"][0]["className"] == expected[r["input"]] for r in records)
    retries = json.loads((tmp_path / "s.json").read_text())["retries"]
    assert retries.get("Sandbox.Timedout", 0) >= 1  # the function's timeout, while the fault lasted
    assert retries.get("TooManyRequestsException", 0) >= 1  # one instance, four requests in flight


# -- S3 in and out, against moto over HTTP ----------------------------------------------------------


def test_s3_prefixes_in_and_out(tiny, tmp_path):
    import boto3

    proc_moto, endpoint = start_moto()
    try:
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
        )
        s3.create_bucket(Bucket="photos")
        expected = {}
        for i in range(30):
            colour = list(COLOURS)[i % 3]
            key = f"in/{colour} {i:02d}.jpg"  # a space: keys are not URLs
            s3.put_object(Bucket="photos", Key=key, Body=jpeg(Image.new("RGB", (24, 24), COLOURS[colour])))
            expected[f"s3://photos/{key}"] = colour
        s3.put_object(Bucket="photos", Key="in/broken.jpg", Body=b"\xff\xd8\xff\xe0 not really")
        s3.put_object(Bucket="photos", Key="in/readme.txt", Body=b"not an image name: not listed")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID="t",
            AWS_SECRET_ACCESS_KEY="t",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL_S3=endpoint,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        serve = [tiny, "--max-concurrency", "2", "--env", f"AWS_ENDPOINT_URL_S3={endpoint}"]
        with ServeProcess(tmp_path, *serve) as server:  # the function reads the images with its role
            target = ["--endpoint", server.url, "--per-request", "4"]
            proc = run_batch("s3://photos/in/", "-o", "s3://photos/out", *target, env=env)
            assert proc.returncode == 1 and "failed    1 (ImageDecodeError 1)" in proc.stdout, proc.stderr
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket="photos", Prefix="out/")["Contents"]]
            assert sorted(keys) == sorted(
                [f"out/{u.removeprefix('s3://photos/')}.json" for u in expected] + ["out/in/broken.jpg.error.json"]
            )
            for uri, colour in expected.items():
                body = json.loads(
                    s3.get_object(Bucket="photos", Key=f"out/{uri.removeprefix('s3://photos/')}.json")["Body"].read()
                )
                assert body["input"] == uri and body["result"][0]["className"] == colour
            again = run_batch("s3://photos/in/", "-o", "s3://photos/out", *target, env=env)
            assert "(31 were already in s3://photos/out)" in again.stdout  # resumed from what S3 holds
            # By name, as a deployed function: boto3 finds the endpoint where it would find AWS's.
            by_name = {**env, "AWS_ENDPOINT_URL_LAMBDA": server.url}
            local = run_batch(
                "s3://photos/in/", "-o", str(tmp_path / "from-s3.jsonl"), "--function", "tiny", env=by_name
            )
            assert local.returncode == 1 and "through tiny 0.1.0 (function tiny at AWS" in local.stderr
            once_each(lines(tmp_path / "from-s3.jsonl"), set(expected) | {"s3://photos/in/broken.jpg"})
    finally:
        proc_moto.terminate()
        proc_moto.wait(timeout=10)
