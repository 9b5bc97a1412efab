"""`lambdalite tune` against `lambdalite serve`, both as users run them: boto3 over HTTP, REPORT parsed."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from lambdalite.toolkit.local.control import Control
from lambdalite.toolkit.local.server import probe_sandbox
from lambdalite.toolkit.tune.analysis import analyse
from lambdalite.toolkit.tune.sweep import NONCE, Variant, parse_report, sweep

from helpers import HANDLERS
from helpers.lambda_servers import LAMBDALITE, ServeProcess, ServerThread, config, lambda_client

PRICE_GB_S = 0.0000166667  # us-east-1, x86_64
PRICE_REQUEST = 0.20 / 1e6


def expected_cost(memory_mb: int, billed_ms: list[float]) -> float:
    """USD per request at the mean billed duration: the bill's own arithmetic, written out again."""
    mean = sum(billed_ms) / len(billed_ms)
    return PRICE_REQUEST + memory_mb / 1024 * mean / 1000 * PRICE_GB_S


def test_tune_sweeps_serve_and_marks_cheapest_fastest_and_the_trade_off(tmp_path):
    args = ["--handler", "work.burn", "--code-dir", str(HANDLERS), "--function-name", "burner", "--memory", "512"]
    with ServeProcess(tmp_path, *args) as served:
        out = tmp_path / "out"
        proc = subprocess.run(
            [
                str(LAMBDALITE), "tune", "burner", "--endpoint-url", served.url, "--memory", "256,512,1024",
                "--payload", '{"n": 150000}', "--payload", '{"n": 100000}', "--cold", "1", "--warm", "3",
                "--cold-share", "0.1", "-o", str(out),
            ],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        after = lambda_client(served.url).get_function_configuration(FunctionName="burner")
    assert after["MemorySize"] == 512 and NONCE not in after["Environment"]["Variables"]  # restored
    data = json.loads((out / "tune.json").read_text())
    rows, samples = data["rows"], data["samples"]
    assert [r["memory_mb"] for r in rows] == [256, 512, 1024]
    for row in rows:
        mine = [s for s in samples if s["memory_mb"] == row["memory_mb"]]
        cold = [s for s in mine if s["cold"]]
        warm = [s for s in mine if not s["cold"]]
        assert (row["cold"], row["warm"]) == (len(cold), len(warm)) == (1, 3)
        assert all(s["init_ms"] > 0 for s in cold) and all(s["init_ms"] is None for s in warm)
        assert all(s["billed_ms"] >= s["duration_ms"] for s in warm)
        assert all(s["billed_ms"] >= s["duration_ms"] + s["init_ms"] for s in cold)  # init is billed
        assert all(0 < s["max_memory_mb"] <= row["memory_mb"] for s in mine)
        cost = 0.9 * expected_cost(row["memory_mb"], [s["billed_ms"] for s in warm]) + 0.1 * expected_cost(
            row["memory_mb"], [s["billed_ms"] for s in cold]
        )
        assert row["cost_per_million"] == pytest.approx(cost * 1e6, rel=1e-9)
    marked = {mark: [r["memory_mb"] for r in rows if mark in r["marks"]] for mark in ("cheapest", "fastest")}
    assert marked["cheapest"] == [min(rows, key=lambda r: r["cost_per_million"])["memory_mb"]]
    assert marked["fastest"] == [min(rows, key=lambda r: r["latency_ms"])["memory_mb"]]
    assert sum("best trade-off" in r["marks"] for r in rows) == 1
    table = (out / "tune.md").read_text()
    assert all(f"| {m} |" in table for m in (256, 512, 1024)) and "★ best trade-off" in table
    assert "| burner |" in proc.stdout
    with Image.open(out / "tune.png") as png:
        assert png.size[0] > 600 and png.size[1] > 300
    svg = ET.parse(out / "tune.svg").getroot()
    assert svg.tag.endswith("svg") and "cost against memory" in (out / "tune.svg").read_text()


def test_the_sweep_reads_json_platform_reports_and_variants(tmp_path):
    cfg = config("work.burn", log_format="JSON", environment={"STAGE": "base"})
    with ServerThread(cfg, probe_sandbox()) as s:
        Control.attach(s.server)
        client = lambda_client(s.url)
        samples = sweep(
            client,
            "probe",
            memory=[256],
            payloads=[b'{"n": 1000}'],
            cold=1,
            warm=2,
            variants=[Variant("a", {"STAGE": "a"}), Variant("b", {"STAGE": "b"})],
        )
        assert client.get_function_configuration(FunctionName="probe")["Environment"]["Variables"]["STAGE"] == "base"
        log = s.invoke({"n": 10}).log
    assert [(x.variant, x.cold) for x in samples] == [("a", True), ("a", False), ("a", False)] + [
        ("b", True),
        ("b", False),
        ("b", False),
    ]
    assert all(x.memory_mb == 256 and x.error is None for x in samples)
    report = parse_report(log)
    # The configuration was restored (512 MB), so this was a cold start in a new instance.
    assert report is not None and report.memory_mb == 512 and report.init_ms is not None
    rows = analyse(samples)
    assert [r.variant for r in rows] == ["a", "b"]


def test_parse_report_reads_lambdas_text_line():
    line = (
        "REPORT RequestId: 3f1b\tDuration: 12.34 ms\tBilled Duration: 260 ms\tMemory Size: 1024 MB\t"
        "Max Memory Used: 83 MB\tInit Duration: 246.80 ms\t"
    )
    report = parse_report("START RequestId: 3f1b Version: $LATEST\nEND RequestId: 3f1b\n" + line + "\n")
    assert report is not None
    assert (report.duration_ms, report.billed_ms, report.memory_mb, report.max_memory_mb, report.init_ms) == (
        12.34,
        260,
        1024,
        83,
        246.8,
    )
    assert parse_report("no report here") is None


def test_a_bad_memory_list_is_a_usage_error():
    proc = subprocess.run(
        [str(LAMBDALITE), "tune", "f", "--memory", "64,512", "--endpoint-url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "128 to 10240 MB" in proc.stderr and "Traceback" not in proc.stderr
