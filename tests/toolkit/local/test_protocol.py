"""The wire formats, pure: routes, names, headers, error envelopes, log lines, billing."""

from __future__ import annotations

import base64
import json

import pytest

from lambdalite.errors import (
    FunctionNotFoundError,
    InvalidParameterValueError,
    InvalidRequestContentError,
    RequestTooLargeError,
    TooManyRequestsError,
)
from lambdalite.toolkit.local import protocol
from lambdalite.toolkit.local.protocol import FunctionRef, Report, RuntimeRoute


@pytest.mark.parametrize(
    ("raw", "query", "expected"),
    [
        ("my-fn", "", FunctionRef("my-fn")),
        ("function", "", FunctionRef("function")),
        ("my-fn%3A%24LATEST", "", FunctionRef("my-fn", "$LATEST")),  # botocore percent-encodes : and $
        ("my-fn:prod", "", FunctionRef("my-fn", "prod")),
        ("arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn", "", FunctionRef("my-fn")),
        ("arn:aws:lambda:eu-west-1:123456789012:function:my-fn:7", "", FunctionRef("my-fn", "7")),
        ("123456789012%3Afunction%3Amy-fn", "", FunctionRef("my-fn")),
        ("my-fn", "Qualifier=%24LATEST", FunctionRef("my-fn", "$LATEST")),
        ("my-fn:%24LATEST", "Qualifier=%24LATEST", FunctionRef("my-fn", "$LATEST")),
    ],
)
def test_function_names_as_clients_send_them(raw, query, expected):
    assert protocol.parse_function_name(raw, query) == expected


@pytest.mark.parametrize(
    ("raw", "query"), [("bad name", ""), ("a" * 65, ""), ("my-fn:prod", "Qualifier=dev"), ("f", "Qualifier=a%2Fb")]
)
def test_bad_function_names_are_parameter_errors(raw, query):
    with pytest.raises(InvalidParameterValueError):
        protocol.parse_function_name(raw, query)


def test_invoke_route_only_matches_post_on_the_invocations_path():
    assert protocol.match_invoke("POST", "/2015-03-31/functions/my-fn/invocations") == "my-fn"
    assert protocol.match_invoke("POST", "/2015-03-31/functions/my-fn%3A1/invocations/") == "my-fn%3A1"
    assert protocol.match_invoke("GET", "/2015-03-31/functions/my-fn/invocations") is None
    assert protocol.match_invoke("POST", "/2015-03-31/functions/my-fn") is None
    assert protocol.match_invoke("POST", "/invocations") is None


def test_runtime_routes():
    assert protocol.match_runtime("GET", "/2018-06-01/runtime/invocation/next") == RuntimeRoute("next")
    assert protocol.match_runtime("POST", "/2018-06-01/runtime/invocation/abc-1/response") == RuntimeRoute(
        "response", "abc-1"
    )
    assert protocol.match_runtime("POST", "/2018-06-01/runtime/invocation/abc-1/error") == RuntimeRoute(
        "error", "abc-1"
    )
    assert protocol.match_runtime("POST", "/2018-06-01/runtime/init/error") == RuntimeRoute("init_error")
    assert protocol.match_runtime("POST", "/2018-06-01/runtime/invocation/next") is None
    assert protocol.match_runtime("GET", "/2018-06-01/runtime/invocation/abc/response") is None
    assert protocol.match_runtime("GET", "/2020-01-01/extension/event/next") is None


def test_invocation_types():
    assert protocol.invocation_type(None) == "RequestResponse"
    assert protocol.invocation_type("Event") == "Event"
    assert protocol.invocation_type("DryRun") == "DryRun"
    with pytest.raises(InvalidParameterValueError):
        protocol.invocation_type("event")


def test_payload_checks():
    assert protocol.check_payload(b"", 0, "RequestResponse") == b"{}"  # awslambdaric cannot unmarshal b""
    assert protocol.check_payload(b'{"a": 1}', 8, "RequestResponse") == b'{"a": 1}'
    assert protocol.check_payload(b'"text"', 6, "Event") == b'"text"'
    with pytest.raises(InvalidRequestContentError, match="Could not parse request body into json"):
        protocol.check_payload(b"{nope", 5, "RequestResponse")
    with pytest.raises(InvalidRequestContentError):
        protocol.check_payload(b"\xff\xfe", 2, "RequestResponse")
    with pytest.raises(RequestTooLargeError, match="smaller than 6291456 bytes"):
        protocol.check_payload(b"", protocol.SYNC_PAYLOAD_LIMIT + 1, "RequestResponse")
    assert protocol.check_payload(b"1", protocol.SYNC_PAYLOAD_LIMIT, "RequestResponse") == b"1"
    with pytest.raises(RequestTooLargeError, match="too large for the Event invocation type"):
        protocol.check_payload(b"", protocol.ASYNC_PAYLOAD_LIMIT + 1, "Event")


def test_client_context_is_decoded_for_the_runtime():
    raw = base64.b64encode(b'{"custom": {"k": "v"}}').decode()
    assert protocol.decode_client_context(raw) == '{"custom": {"k": "v"}}'
    assert protocol.decode_client_context(None) is None
    for bad in ("not base64!", base64.b64encode(b"[1]").decode(), base64.b64encode(b"{").decode()):
        with pytest.raises(InvalidRequestContentError):
            protocol.decode_client_context(bad)
    with pytest.raises(InvalidParameterValueError):
        protocol.decode_client_context("A" * 3584)


def test_service_errors_carry_the_shape_name_and_a_json_body():
    reply = protocol.service_error_reply(FunctionNotFoundError("Function not found: arn:x"), "rid")
    assert reply.status == 404
    assert ("x-amzn-ErrorType", "ResourceNotFoundException") in reply.headers
    assert ("x-amzn-RequestId", "rid") in reply.headers
    assert json.loads(reply.body) == {"Type": "User", "Message": "Function not found: arn:x"}

    reply = protocol.service_error_reply(TooManyRequestsError("Rate Exceeded.", reason="R"), "rid")
    assert reply.status == 429
    assert ("x-amzn-ErrorType", "TooManyRequestsException") in reply.headers
    assert json.loads(reply.body) == {"Reason": "R", "Type": "User", "message": "Rate Exceeded."}

    reply = protocol.service_error_reply(RequestTooLargeError("too big"), "rid")
    assert (reply.status, json.loads(reply.body)) == (413, {"message": "too big"})
    assert ("x-amzn-ErrorType", "RequestEntityTooLargeException") in reply.headers


def test_next_headers_exact_content_type_and_optional_headers_only_when_set():
    plain = protocol.next_headers("rid", 1700000000123, "arn:aws:lambda:us-east-1:1:function:f")
    assert plain == [
        ("Content-Type", "application/json"),
        ("Lambda-Runtime-Aws-Request-Id", "rid"),
        ("Lambda-Runtime-Deadline-Ms", "1700000000123"),
        ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:1:function:f"),
    ]
    full = dict(protocol.next_headers("rid", 1, "arn", trace_id="Root=1", client_context="{}", cognito_identity="{}"))
    assert full["Lambda-Runtime-Trace-Id"] == "Root=1"
    assert full["Lambda-Runtime-Client-Context"] == "{}"
    assert full["Lambda-Runtime-Cognito-Identity"] == "{}"


def test_trace_ids_look_like_xray_headers():
    trace = protocol.new_trace_id(1_700_000_000.5)
    assert trace.startswith("Root=1-6553f100-")
    root, parent, sampled = trace.split(";")
    assert len(root.split("-")[2]) == 24 and len(parent) == len("Parent=") + 16 and sampled == "Sampled=0"


def test_platform_error_payloads():
    assert json.loads(protocol.timeout_payload("rid", 3)) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "RequestId: rid Error: Task timed out after 3.00 seconds",
    }
    assert protocol.exit_description(42) == "exit status 42"
    assert protocol.exit_description(-9) == "signal: killed"
    assert protocol.exit_description(-11) == "signal: segmentation fault"
    assert protocol.exit_description(-64) == "signal: signal 64"
    assert json.loads(protocol.response_too_large_payload()) == {
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }


def test_log_lines_are_lambdas():
    assert protocol.start_line("rid") == "START RequestId: rid Version: $LATEST"
    assert protocol.end_line("rid") == "END RequestId: rid"
    cold = Report("rid", 15.744, 4048, 128, 56, init_ms=3986.5)
    assert protocol.report_line(cold) == (
        "REPORT RequestId: rid\tDuration: 15.74 ms\tBilled Duration: 4048 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 56 MB\tInit Duration: 3986.50 ms\t"
    )
    timeout = Report("rid", 3000.0, 3000, 128, 40, status="timeout")
    assert protocol.report_line(timeout).endswith("Max Memory Used: 40 MB\tStatus: timeout\t")
    crash = Report("rid", 2.0, 2, 128, 40, status="error", error_type="Runtime.ExitError")
    assert protocol.report_line(crash).endswith("\tStatus: error\tError Type: Runtime.ExitError\t")
    assert protocol.init_report_line(10000, "init", "timeout") == (
        "INIT_REPORT Init Duration: 10000.00 ms\tPhase: init\tStatus: timeout"
    )


@pytest.mark.parametrize(
    ("duration", "init", "billed"), [(15.74, None, 16), (3000.0, None, 3000), (0.2, None, 1), (61.09, 3986.5, 4048)]
)
def test_billing_rounds_up_to_the_millisecond_and_bills_init(duration, init, billed):
    assert protocol.billed_ms(duration, init) == billed


def test_cost_per_million_requests():
    cost = protocol.cost_per_million([100, 300], 1024)
    # 1 GB x 0.2 s x 1e6 = 200,000 GB-s at $0.0000166667
    assert cost.requests_usd == 0.20
    assert cost.compute_usd == pytest.approx(200_000 * 0.0000166667)
    assert cost.total_usd == pytest.approx(0.20 + 3.33334)
    assert protocol.cost_per_million([100], 2048, "arm64").compute_usd == pytest.approx(200_000 * 0.0000133334)


def test_log_tail_is_the_last_4_kb_in_base64():
    log = "START\n" + "x" * 5000 + "\nREPORT\n"
    tail = base64.b64decode(protocol.log_tail(log))
    assert len(tail) == 4096
    assert tail.endswith(b"x\nREPORT\n")
    assert base64.b64decode(protocol.log_tail("short\n")) == b"short\n"
