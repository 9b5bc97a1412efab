"""Locked doors in the template: every auth x API x Function URL combination is valid for cfn-lint
and the AWS SAM CLI (`sam validate`, offline, from .venv-sam), says what it locks, and what is
left open is printed with its price."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lambdalite.errors import UsageError
from lambdalite.toolkit.access import Quota, Throttle, monthly_worst_case
from lambdalite.toolkit.deploy.security import front_door, notes, warnings
from lambdalite.toolkit.deploy.template import FunctionSpec, Settings, expand, sam_template, write_yaml

from helpers import REPO

SAM = REPO / ".venv-sam" / "bin" / "sam"
S3 = {"Bucket": "artifacts", "Key": "lambdalite/cats/0123/function.zip"}
ISSUER = {"jwt_issuer": "https://issuer.example.com/pool", "jwt_audience": ("web-client", "cli-client")}

COMBINATIONS = {
    "none/http": {"auth": "none"},
    "none/http+url": {"auth": "none", "function_url": True},
    "none/rest": {"auth": "none", "api": "rest"},
    "none/rest+url": {"auth": "none", "api": "rest", "function_url": True},
    "none/url-only": {"auth": "none", "api": "none", "function_url": True},
    "api-key/rest": {},  # the default
    "api-key/rest+url": {"function_url": True, "reserved_concurrency": 3, "quota": Quota(500, "WEEK")},
    "api-key/rest+cors": {"cors_origins": ("https://app.example.com",)},
    "iam/rest+cors": {"auth": "iam", "api": "rest", "cors_origins": ("https://app.example.com",)},
    "iam/http": {"auth": "iam", "throttle": Throttle(2.5, 5)},
    "iam/http+url": {"auth": "iam", "function_url": True, "cors_origins": ("https://app.example.com",)},
    "iam/rest": {"auth": "iam", "api": "rest"},
    "iam/rest+url": {"auth": "iam", "api": "rest", "function_url": True, "reserved_concurrency": 2},
    "iam/url-only": {"auth": "iam", "api": "none", "function_url": True},
    "jwt/http": {"auth": "jwt", **ISSUER},
    "jwt/http+url": {
        "auth": "jwt",
        "function_url": True,
        "cors_origins": ("https://a.example", "http://localhost:3000"),
        **ISSUER,
    },
    # The other template features, validated by SAM too: SnapStart (issue 16) and batch sources (issue 18).
    "snapstart/api-key/rest": {"snapstart": True},
    "snapstart/iam/http+url": {"snapstart": True, "auth": "iam", "function_url": True},
    "trigger/s3": {"api": "none", "trigger": "s3://photos/uploads", "results": "s3://photos/labels"},
    "trigger/s3+queue/iam": {
        "auth": "iam",
        "trigger": "s3://photos/uploads",
        "results": "s3://labels/run-1",
        "queue": True,
        "batch_size": 50,
        "batch_window": 5,
    },
}


def spec(**settings: object) -> FunctionSpec:
    return FunctionSpec("lambdalite: test 1.0.0", "python3.12", "x86_64", "/var/task/model", Settings(**settings))  # type: ignore[arg-type]


def cfn_lint(path: Path) -> list[str]:
    from cfnlint.api import lint_file

    return [str(m) for m in lint_file(path) if m.rule.id.startswith("E")]


def sam_validate(path: Path) -> subprocess.CompletedProcess[str]:
    assert SAM.exists(), "the AWS SAM CLI is missing: run scripts/setup dev (it makes .venv-sam)"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(path.parent),
        "SAM_CLI_TELEMETRY": "0",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    return subprocess.run(
        [str(SAM), "validate", "--template", str(path), "--region", "eu-west-1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_every_combination_passes_cfn_lint_and_sam_validate(name, tmp_path):
    sam = sam_template(spec(**COMBINATIONS[name]), code="function.zip")
    path = write_yaml(sam, tmp_path / "template.yaml")
    assert cfn_lint(path) == []
    validated = sam_validate(path)
    assert validated.returncode == 0 and "is a valid SAM Template" in validated.stdout, (
        validated.stdout + validated.stderr
    )
    expanded = tmp_path / "template.json"
    expanded.write_text(json.dumps(expand(sam_template(spec(**COMBINATIONS[name]), code=S3), "eu-west-1")))
    assert cfn_lint(expanded) == []


def test_sam_validate_can_fail(tmp_path):
    sam = sam_template(spec(auth="jwt", **ISSUER), code="function.zip")
    sam["Resources"]["HttpApi"]["Properties"]["Auth"]["DefaultAuthorizer"] = "NoSuchAuthorizer"
    validated = sam_validate(write_yaml(sam, tmp_path / "template.yaml"))
    assert validated.returncode != 0 and "NoSuchAuthorizer" in validated.stdout + validated.stderr


def resources(settings: dict, kind: str) -> list[dict]:
    template = expand(sam_template(spec(**settings), code=S3), "eu-west-1")
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def test_api_key_is_a_rest_api_with_a_usage_plan_and_an_open_page():
    settings = {"throttle": Throttle(4, 8), "quota": Quota(1234, "MONTH")}
    [plan] = resources(settings, "AWS::ApiGateway::UsagePlan")
    assert plan["Throttle"] == {"RateLimit": 4.0, "BurstLimit": 8}
    assert plan["Quota"] == {"Limit": 1234, "Period": "MONTH"}
    [key] = resources(settings, "AWS::ApiGateway::ApiKey")
    assert "Value" not in key  # API Gateway makes the value; it is in no template
    assert len(resources(settings, "AWS::ApiGateway::UsagePlanKey")) == 1
    [api] = resources(settings, "AWS::ApiGateway::RestApi")
    root, proxy = api["Body"]["paths"]["/"], api["Body"]["paths"]["/{proxy+}"]
    assert root["x-amazon-apigateway-any-method"]["security"] == [{"api_key": []}]
    assert proxy["x-amazon-apigateway-any-method"]["security"] == [{"api_key": []}]
    assert root["get"].get("security", []) == []  # the page opens without a key, then asks for it
    [stage] = resources(settings, "AWS::ApiGateway::Stage")
    assert stage["MethodSettings"] == [
        {"ResourcePath": "/*", "HttpMethod": "*", "ThrottlingBurstLimit": 8, "ThrottlingRateLimit": 4.0}
    ]


def test_iam_signs_every_route_and_the_function_url():
    [api] = resources({"auth": "iam", "function_url": True}, "AWS::ApiGatewayV2::Api")
    [route] = api["Body"]["paths"]["$default"].values()
    assert route["security"] == [{"AWS_IAM": []}]
    [url] = resources({"auth": "iam", "function_url": True}, "AWS::Lambda::Url")
    assert url["AuthType"] == "AWS_IAM"
    [rest] = resources({"auth": "iam", "api": "rest"}, "AWS::ApiGateway::RestApi")
    assert rest["Body"]["paths"]["/{proxy+}"]["x-amazon-apigateway-any-method"]["security"] == [{"AWS_IAM": []}]
    [stage] = resources({"auth": "iam", "throttle": Throttle(2.5, 5)}, "AWS::ApiGatewayV2::Stage")
    assert stage["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 5, "ThrottlingRateLimit": 2.5}


def test_jwt_is_an_http_api_authorizer_with_issuer_and_audience():
    settings = {"auth": "jwt", "cors_origins": ("https://a.example",), **ISSUER}
    [api] = resources(settings, "AWS::ApiGatewayV2::Api")
    scheme = api["Body"]["components"]["securitySchemes"]["Jwt"]
    assert scheme["x-amazon-apigateway-authorizer"]["jwtConfiguration"] == {
        "issuer": ISSUER["jwt_issuer"],
        "audience": list(ISSUER["jwt_audience"]),
    }
    assert scheme["x-amazon-apigateway-authorizer"]["identitySource"] == "$request.header.Authorization"
    assert api["Body"]["x-amazon-apigateway-cors"]["allowOrigins"] == ["https://a.example"]


def test_reserved_concurrency_caps_the_function():
    [function] = resources({"reserved_concurrency": 7}, "AWS::Lambda::Function")
    assert function["ReservedConcurrentExecutions"] == 7
    [unbounded] = resources({}, "AWS::Lambda::Function")
    assert "ReservedConcurrentExecutions" not in unbounded


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"api": "http"}, "--auth api-key needs a REST API"),
        ({"auth": "jwt", "api": "rest", **ISSUER}, "HTTP API JWT authorizer"),
        ({"auth": "jwt"}, "--jwt-issuer"),
        ({"auth": "jwt", "jwt_issuer": "https://x.example"}, "--jwt-audience"),
        ({"auth": "jwt", "jwt_issuer": "http://plain.example", "jwt_audience": ("a",)}, "https://"),
        ({"auth": "iam", "quota": Quota(5, "DAY")}, "--quota is an API key's usage plan"),
        ({"auth": "none", "jwt_issuer": "https://x.example"}, "go with --auth jwt"),
        ({"reserved_concurrency": 0}, "reserved concurrency must be 1 or more"),
        ({"auth": "iam", "cors_origins": ("https://a.example/path",)}, "--cors-origin takes"),
        ({"cors_origins": ("https://a.example", "https://b.example")}, "a REST API's CORS takes one --cors-origin"),
    ],
)
def test_combinations_aws_has_no_meaning_for_are_refused(settings, message):
    with pytest.raises(UsageError, match=message):
        Settings(**settings)  # type: ignore[arg-type]


def test_defaults_follow_from_auth_and_survive_the_build_record():
    default = Settings()
    assert (default.auth, default.api, default.quota, default.url_auth) == (
        "api-key",
        "rest",
        Quota(10000, "DAY"),
        "AWS_IAM",
    )
    assert Settings(auth="none").url_auth == "NONE" and Settings(auth="none").api == "http"
    for settings in (Settings(), Settings(auth="jwt", cors_origins=("https://a.example",), **ISSUER)):  # type: ignore[arg-type]
        assert Settings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def test_the_plan_says_what_is_locked_and_a_public_endpoint_what_abuse_costs():
    locked = Settings(reserved_concurrency=4)
    text = "\n".join(front_door(locked))
    assert "REST API, auth api-key" in text and "10,000 requests/day per key" in text
    assert "at most 4 instances" in text and "capped by the quota" in text
    assert warnings(locked) == []
    public = Settings(auth="none")
    [warning] = warnings(public)
    assert "the HTTP API is public" in warning and "$1.20 per million requests" in warning
    assert "25,920,000 requests a month" in warning  # 10 requests/s for 30 days
    [url_warning] = warnings(Settings(auth="none", api="none", function_url=True))
    assert "Function URL is public" in url_warning and "nothing caps it" in url_warning
    assert any("bypasses the API's api-key" in n for n in notes(Settings(function_url=True, url_auth="NONE")))


def test_worst_case_spend_is_the_tightest_cap():
    spend = monthly_worst_case(
        api="http", memory_mb=1024, arch="x86_64", throttle=Throttle(10, 20), quota=None, reserved_concurrency=None
    )
    assert spend is not None and spend.requests == 10 * 30 * 86400 and spend.bound == "the throttle"
    # 1.00 + 0.20 per million, plus 1 GB-second each at $0.0000166667.
    assert spend.usd == pytest.approx(spend.requests * (1.20e-6 + 0.0000166667))
    quota = monthly_worst_case(
        api="rest",
        memory_mb=1024,
        arch="x86_64",
        throttle=Throttle(10, 20),
        quota=Quota(100, "DAY"),
        reserved_concurrency=None,
    )
    assert quota is not None and (quota.requests, quota.bound) == (3000, "the quota")
    none = monthly_worst_case(
        api="none", memory_mb=1024, arch="x86_64", throttle=None, quota=None, reserved_concurrency=None
    )
    assert none is None


def test_a_rest_api_with_cors_answers_preflights_and_the_function_adds_the_origin():
    settings = {"cors_origins": ("https://app.example.com",)}
    sam = sam_template(spec(**settings), code="function.zip")
    cors = sam["Resources"]["RestApi"]["Properties"]["Cors"]
    assert cors["AllowOrigin"] == "'https://app.example.com'" and "x-api-key" in cors["AllowHeaders"]
    variables = sam["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
    assert variables["LAMBDALITE_CORS_ORIGINS"] == "https://app.example.com"
    assert "LAMBDALITE_CORS_ORIGINS" not in str(sam_template(spec(auth="iam"), code="function.zip"))
