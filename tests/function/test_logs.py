"""The function's log records in Lambda's two formats, checked against the real Powertools package,
and its metrics checked against the Embedded Metric Format's published JSON schema."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from PIL import Image

from lambdalite.function import logs
from lambdalite.function.app import Function
from lambdalite.model import load_model
from lambdalite.settings import Settings
from lambdalite.toolkit.local.invoke import LocalContext

from helpers.eventlib import load_event
from helpers.images import jpeg_bytes

RED = jpeg_bytes(Image.new("RGB", (40, 30), (250, 5, 5)), quality=95)
# The specification's schema has no $schema; its "$id" fragments are draft 7's style.
SCHEMA = jsonschema.Draft7Validator(
    json.loads((Path(__file__).parent.parent / "fixtures" / "emf-schema.json").read_text())
)
TRACE = "Root=1-6650a0b2-710d76f009d6e7785905449a;Parent=0efbd19962d95b05;Sampled=1"
POWERTOOLS_KEYS = [
    "level",
    "location",
    "message",
    "timestamp",
    "service",
    "cold_start",
    "function_name",
    "function_memory_size",
    "function_arn",
    "function_request_id",
]


@pytest.fixture()
def make(tiny_bundle, monkeypatch):
    model = load_model(str(tiny_bundle.root), threads=1)
    # A fresh execution environment for both loggers: the next invocation is a cold start.
    monkeypatch.setattr(logs, "_request", logs._Request())
    monkeypatch.setattr("aws_lambda_powertools.logging.logger.is_cold_start", True)

    def build(**settings) -> Function:
        return Function(model, Settings(**settings))

    yield build
    logs.configure(Settings())  # back to the default for the other tests in this process


def records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def powertools_records(context: LocalContext, messages: list[tuple[str, dict]], level: str = "INFO") -> list[dict]:
    """What Powertools' Logger writes for the same invocation (RFC 3339 timestamps, UTC)."""
    stream = io.StringIO()
    logger = Logger(
        service="cats",
        use_rfc3339=True,
        utc=True,
        logger_handler=logging.StreamHandler(stream),
        level=level,
    )

    @logger.inject_lambda_context
    def handler(event, ctx):
        for message, extra in messages:
            logger.info(message, extra=extra)

    handler({}, context)
    handler({}, context)  # the second invocation is warm
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def shape(value: str) -> str:
    """A timestamp's shape: every digit the same."""
    return re.sub(r"\d", "0", value)


def test_the_schema_is_a_valid_schema_and_refuses_what_the_specification_refuses():
    jsonschema.Draft7Validator.check_schema(SCHEMA.schema)
    good = {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "n", "Dimensions": [["A"]], "Metrics": []}]}}
    SCHEMA.validate(good)
    for bad in (
        {"_aws": {"CloudWatchMetrics": []}},  # no Timestamp
        {"_aws": {"Timestamp": 1.5, "CloudWatchMetrics": []}},
        {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "n", "Dimensions": [], "Metrics": []}]}},
        {
            "_aws": {
                "Timestamp": 1,
                "CloudWatchMetrics": [
                    {"Namespace": "n", "Dimensions": [["A"]], "Metrics": [{"Name": "m", "Unit": "Millis"}]}
                ],
            }
        },
    ):
        assert not SCHEMA.is_valid(bad), bad


def test_json_records_carry_powertools_keys_in_powertools_order(make, capsys, monkeypatch):
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE)
    function = make(log_format="json", service="cats", function_name="cats", memory_mb=512)
    context = LocalContext("cats", memory_mb=512)
    for _ in range(2):
        function(load_event("http-api-binary.json", RED), context)
    ours = [r for r in records(capsys.readouterr().out) if r.get("event") == "request"]
    theirs = powertools_records(context, [("request", {"source": "http"})])
    assert len(ours) == len(theirs) == 2
    for mine, reference in zip(ours, theirs, strict=True):
        # Every key Powertools writes, in its order, with the same type, then ours, then the trace id.
        assert list(mine)[: len(POWERTOOLS_KEYS)] == POWERTOOLS_KEYS == list(reference)[: len(POWERTOOLS_KEYS)]
        for key in [*POWERTOOLS_KEYS, "xray_trace_id"]:
            assert type(mine[key]) is type(reference[key]), key
        for key in ("service", "function_name", "function_memory_size", "function_arn", "function_request_id"):
            assert mine[key] == reference[key], key
        assert mine["xray_trace_id"] == reference["xray_trace_id"] == "1-6650a0b2-710d76f009d6e7785905449a"
        assert list(mine)[-1] == "xray_trace_id"
        assert mine["level"] == reference["level"] == "INFO"
        assert shape(mine["timestamp"]) == shape(reference["timestamp"])
        assert datetime.fromisoformat(mine["timestamp"]).utcoffset().total_seconds() == 0
        assert re.fullmatch(r"\w+:\d+", mine["location"])
        # ours, as in the text format
        assert mine["message"] == mine["event"] == "request"
        assert mine["source"] == "http" and mine["status"] == 200 and mine["top1"] == "red"
    assert [r["cold_start"] for r in ours] == [r["cold_start"] for r in theirs] == [True, False]


def test_json_levels_follow_lambdas_log_level_as_powertools_does(make, capsys):
    bad = load_event("http-api-binary.json", b"not an image at all")
    good = load_event("http-api-binary.json", RED)
    for alc, written in (("INFO", ["INFO", "WARNING"]), ("WARN", ["WARNING"]), ("ERROR", [])):
        function = make(log_format="json", log_level=Settings.from_env({"AWS_LAMBDA_LOG_LEVEL": alc}).log_level)
        function(good, LocalContext())
        function(bad, LocalContext())
        levels = [r["level"] for r in records(capsys.readouterr().out)]
        assert levels == written, alc
        # Powertools, told the same level by Lambda, writes the same levels.
        stream = io.StringIO()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_LAMBDA_LOG_LEVEL", alc)
            logger = Logger(service=f"alc-{alc}", logger_handler=logging.StreamHandler(stream))
            logger.info("request")
            logger.warning("request")
        assert [json.loads(line)["level"] for line in stream.getvalue().splitlines()] == written


def test_a_failed_request_says_why_at_warning_and_keeps_the_error_type(make, capsys):
    function = make(log_format="json")
    answer = function(load_event("http-api-binary.json", b"not an image at all"), LocalContext())
    assert answer["statusCode"] == 400
    [record] = records(capsys.readouterr().out)
    assert record["level"] == "WARNING" and record["error"] == "ImageDecodeError"
    assert "not an image" in record["message"] and "Traceback" not in json.dumps(record)


def test_text_format_stays_as_it_was(make, capsys):
    function = make()
    function(load_event("http-api-binary.json", RED), LocalContext())
    [record] = records(capsys.readouterr().out)
    assert list(record)[:3] == ["event", "requestId", "source"]
    assert not set(record) & {"level", "timestamp", "cold_start", "_aws"}
    for phase in ("durationMs", "decodeMs", "preprocessMs", "inferenceMs"):
        assert record[phase] >= 0
    assert record["decodeMs"] + record["preprocessMs"] + record["inferenceMs"] <= record["durationMs"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_metrics_are_emf_documents_valid_against_the_specification(make, capsys, log_format):
    function = make(log_format=log_format, metrics_namespace="lambdalite/test")
    function(load_event("http-api-binary.json", RED), LocalContext())
    function(load_event("http-api-binary.json", b"GIF89a broken"), LocalContext())
    good, bad = records(capsys.readouterr().out)
    for record in (good, bad):
        SCHEMA.validate(record)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "lambdalite/test"
            for dimension_set in directive["Dimensions"]:
                assert all(isinstance(record[d], str) for d in dimension_set)  # targets MUST be strings
            for metric in directive["Metrics"]:
                value = record[metric["Name"]]
                assert isinstance(value, int | float) and not isinstance(value, bool)
                assert metric["Unit"] in {u.value for u in MetricUnit}
    assert good["Model"] == "tiny" and good["ModelVersion"] == function.model.bundle.manifest.version
    named = {m["Name"]: m["Unit"] for m in good["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert named == {
        "durationMs": "Milliseconds",
        "decodeMs": "Milliseconds",
        "preprocessMs": "Milliseconds",
        "inferenceMs": "Milliseconds",
        "images": "Count",
        "imageBytes": "Bytes",
    }
    errors = bad["_aws"]["CloudWatchMetrics"][-1]
    assert errors["Dimensions"] == [["Model", "ModelVersion", "ErrorType"]]
    assert bad["ErrorType"] == "ImageDecodeError" and bad["errors"] == 1


def test_metrics_match_what_powertools_writes_for_the_same_values(make, capsys):
    function = make(metrics_namespace="lambdalite")
    function(load_event("http-api-binary.json", RED), LocalContext())
    [ours] = records(capsys.readouterr().out)
    [directive] = ours["_aws"]["CloudWatchMetrics"]
    metrics = Metrics(namespace="lambdalite")
    for dimension in ("Model", "ModelVersion"):
        metrics.add_dimension(dimension, ours[dimension])
    for metric in directive["Metrics"]:
        metrics.add_metric(name=metric["Name"], unit=MetricUnit(metric["Unit"]), value=ours[metric["Name"]])
    theirs = metrics.serialize_metric_set()
    SCHEMA.validate(theirs)
    assert theirs["_aws"]["CloudWatchMetrics"] == ours["_aws"]["CloudWatchMetrics"]
    for metric in directive["Metrics"]:  # Powertools writes a list of values; we write the one value
        assert theirs[metric["Name"]] == [ours[metric["Name"]]]
    assert {k: theirs[k] for k in ("Model", "ModelVersion")} == {k: ours[k] for k in ("Model", "ModelVersion")}


def test_the_cold_start_record_carries_its_phases_as_metrics(tiny_bundle, capsys):
    try:
        Function.from_settings(Settings(model=str(tiny_bundle.root), metrics_namespace="lambdalite"))
        [cold] = records(capsys.readouterr().out)
    finally:
        logs.configure(Settings())
    SCHEMA.validate(cold)
    assert cold["event"] == "cold_start" and cold["coldStart"] == 1
    named = [m["Name"] for m in cold["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert named == ["coldStart", "initMs", "modelFetchMs", "importsMs", "sessionMs", "firstRunMs"]
