"""`lambdalite serve` locks its doors as API Gateway and Lambda do, checked with real signing:
botocore's SigV4 signer, joserfc-signed JWTs, boto3 and the AWS CLI against the Invoke API."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lambdalite.toolkit.access import Quota, Throttle
from lambdalite.toolkit.local.sigv4 import MISMATCH, Credentials, SigV4Refusal, verify
from lambdalite.toolkit.local.usage import QuotaCounter, TokenBucket

from helpers import HANDLERS
from helpers.lambda_servers import ServeProcess, wait_until_gone

KEY_ID, SECRET = "AKIDLOCALTESTKEY", "local-test-secret-0123456789"
AWS = [str(Path(sys.executable).parent / "aws")]


def serve_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION="eu-west-1",
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def echo_server(tmp_path: Path, *args: str) -> ServeProcess:
    return ServeProcess(
        tmp_path,
        "--handler",
        "proxy.echo",
        "--code-dir",
        str(HANDLERS),
        "--max-concurrency",
        "1",
        *args,
        env=serve_env(tmp_path),
    )


def http(
    method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, got, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, got, raw = exc.code, dict(exc.headers), exc.read()
    return status, {k.lower(): v for k, v in got.items()}, json.loads(raw) if raw else None


def signed(method: str, url: str, body: bytes, *, key: str = KEY_ID, secret: str = SECRET, region: str = "eu-west-1"):
    """Headers botocore's SigV4 signer adds for execute-api."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(BotoCredentials(key, secret), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


# -- pure: SigV4 verification against botocore's signer ----------------------------------------------------


def verify_signed(headers: dict[str, str], body: bytes, path: str = "/predict", query: str = "", **kwargs: Any) -> str:
    lower = {k.lower(): v for k, v in headers.items()}
    lower["host"] = "127.0.0.1:9"
    now = kwargs.pop("now", datetime.datetime.now(datetime.UTC))
    return verify(
        "POST",
        path,
        query,
        lower,
        body,
        {KEY_ID: Credentials(KEY_ID, SECRET)},
        region="eu-west-1",
        service="execute-api",
        now=now,
        **kwargs,
    )


def test_botocore_signatures_verify_and_tampering_does_not():
    url = "http://127.0.0.1:9/predict/a%3Ab/../x?b=2&a=1&a=0"
    body = b'{"url": "https://example.com/cat.jpg"}'
    headers = signed("POST", url, body)
    path, _, query = url.split("9", 1)[1].partition("?")
    assert verify_signed(headers, body, path, query) == KEY_ID
    with pytest.raises(SigV4Refusal) as tampered:
        verify_signed(headers, body.replace(b"cat", b"dog"), path, query)
    assert tampered.value.error_type == "InvalidSignatureException"
    assert tampered.value.message.startswith(
        MISMATCH + "\n\nThe Canonical String for this request should have been\n'POST\n"
    )
    assert "The String-to-Sign should have been\n'AWS4-HMAC-SHA256\n" in tampered.value.message
    with pytest.raises(SigV4Refusal, match="does not match"):
        verify_signed(signed("POST", url, body, secret="not-the-secret"), body, path, query)
    with pytest.raises(SigV4Refusal) as unknown:
        verify_signed(signed("POST", url, body, key="AKIDSOMEONEELSE"), body, path, query)
    assert (unknown.value.error_type, unknown.value.message) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )
    with pytest.raises(SigV4Refusal, match="Credential should be scoped to a valid region, not 'us-west-2'"):
        verify_signed(signed("POST", url, body, region="us-west-2"), body, path, query)
    with pytest.raises(SigV4Refusal) as unsigned:
        verify_signed({}, body)
    assert (unsigned.value.error_type, unsigned.value.message) == (
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )


def test_a_signature_older_than_five_minutes_has_expired():
    headers = signed("POST", "http://127.0.0.1:9/predict", b"{}")
    stamp = headers["X-Amz-Date"]
    when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    assert verify_signed(headers, b"{}", now=when + datetime.timedelta(minutes=4)) == KEY_ID
    later = when + datetime.timedelta(minutes=10)
    with pytest.raises(SigV4Refusal) as expired:
        verify_signed(headers, b"{}", now=later)
    fmt = "%Y%m%dT%H%M%SZ"
    assert expired.value.message == (
        f"Signature expired: {stamp} is now earlier than "
        f"{(later - datetime.timedelta(minutes=5)).strftime(fmt)} ({later.strftime(fmt)} - 5 min.)"
    )
    with pytest.raises(SigV4Refusal, match=r"^Signature not yet current: .* \+ 5 min\.\)$"):
        verify_signed(headers, b"{}", now=when - datetime.timedelta(minutes=10))


def test_token_bucket_and_quota():
    now = [0.0]
    bucket = TokenBucket(Throttle(2, 3), lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5  # one token back at 2/s
    assert [bucket.take(), bucket.take()] == [True, False]
    day = datetime.datetime(2026, 3, 14, 23, 59, tzinfo=datetime.UTC).timestamp()
    clock = [day]
    quota = QuotaCounter(Quota(2, "DAY"), lambda: clock[0])
    assert [quota.take(), quota.take(), quota.take()] == [True, True, False]
    clock[0] += 120  # past midnight UTC: a new day
    assert quota.take() and quota.remaining == 1


# -- serve, end to end -------------------------------------------------------------------------------------


def test_api_key_usage_plan_and_the_open_page(tmp_path):
    with echo_server(tmp_path, "--auth", "api-key", "--api-key", "k-123", "--quota", "2/day") as server:
        assert "front door  auth api-key" in server.stderr() and "k-123" not in server.stderr()
        url = f"{server.url}/predict"
        status, headers, body = http("POST", url, b"{}")
        assert (status, body) == (403, {"message": "Forbidden"})
        assert headers["x-amzn-errortype"] == "ForbiddenException"  # a REST API (api-key implies it)
        status, _, body = http("POST", url, b"{}", {"x-api-key": "wrong"})
        assert (status, body) == (403, {"message": "Forbidden"})
        status, _, body = http("POST", url, b'{"a": 1}', {"x-api-key": "k-123"})
        assert status == 200 and body["event"]["httpMethod"] == "POST"  # payload 1.0: the REST API's event
        assert http("GET", f"{server.url}/")[0] == 200  # the page opens without a key (and uses no quota)
        assert http("POST", url, b"{}", {"x-api-key": "k-123"})[0] == 200
        status, headers, body = http("POST", url, b"{}", {"x-api-key": "k-123"})
        assert (status, body, headers["x-amzn-errortype"]) == (
            429,
            {"message": "Limit Exceeded"},
            "LimitExceededException",
        )
    assert wait_until_gone(server.mark) == []


def test_the_throttle_answers_429_past_the_burst():
    from lambdalite.toolkit.local.guard import Guard, Rules

    now = [100.0]
    guard = Guard(Rules(auth="none", api="http", throttle=Throttle(1, 2)), inner=None, monotonic=lambda: now[0])  # type: ignore[arg-type]
    assert guard.check("POST", "/predict", "", {}, b"") is None
    assert guard.check("POST", "/predict", "", {}, b"") is None
    status, headers, body = guard.check("POST", "/predict", "", {}, b"")  # type: ignore[misc]
    assert (status, json.loads(body)) == (429, {"message": "Too Many Requests"})
    assert any(name == "apigw-requestid" for name, _ in headers)
    now[0] += 1.0
    assert guard.check("POST", "/predict", "", {}, b"") is None


def test_iam_takes_botocore_signed_requests_and_refuses_the_rest(tmp_path, monkeypatch):
    with echo_server(tmp_path, "--auth", "iam") as server:
        url = f"{server.url}/predict?x=1"
        body = b'{"hello": "world"}'
        status, _, answer = http("POST", url, body, signed("POST", url, body))
        assert status == 200 and answer["event"]["body"] == body.decode()
        assert http("POST", url, body)[::2] == (403, {"message": "Missing Authentication Token"})
        status, _, answer = http("POST", url, body + b" ", signed("POST", url, body))
        assert status == 403 and answer["message"].startswith(MISMATCH + "\n\nThe Canonical String")
        status, _, answer = http("POST", url, body, signed("POST", url, body, secret="a-wrong-secret"))
        assert status == 403 and answer["message"].startswith(MISMATCH)
        status, _, answer = http("POST", url, body, signed("POST", url, body, key="AKIDNOTKNOWNHERE"))
        assert (status, answer) == (403, {"message": "The security token included in the request is invalid."})
        # Signed ten minutes ago, by botocore itself (its clock moved back).
        import botocore.auth

        past = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=10)
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: past)
        status, _, answer = http("POST", url, body, signed("POST", url, body))
        assert status == 403 and answer["message"].startswith(
            f"Signature expired: {past:%Y%m%dT%H%M%SZ} is now earlier than"
        )
        assert answer["message"].endswith(" - 5 min.)")


def jwks_and_keys(tmp_path: Path) -> tuple[Path, Any, Any]:
    from joserfc.jwk import KeySet, RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    impostor = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)  # same kid, other key
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(KeySet([key]).as_dict(private=False)))
    return path, key, impostor


def token(key: Any, **claims: Any) -> str:
    from joserfc import jwt

    now = int(time.time())
    body = {"iss": "https://issuer.example.com", "aud": "web", "sub": "u1", "iat": now - 5, "exp": now + 300, **claims}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, body, key)


def test_jwt_authorizer_verifies_tokens_against_the_jwks(tmp_path):
    jwks, key, impostor = jwks_and_keys(tmp_path)
    args = ["--auth", "jwt", "--jwt-issuer", "https://issuer.example.com", "--jwt-audience", "web"]
    with echo_server(tmp_path, *args, "--jwt-audience", "cli", "--jwks", str(jwks)) as server:
        url = f"{server.url}/predict"
        status, _, answer = http("POST", url, b"{}", {"Authorization": f"Bearer {token(key)}"})
        assert status == 200 and answer["event"]["version"] == "2.0"  # an HTTP API
        assert http("POST", url, b"{}", {"Authorization": token(key, aud="cli")})[0] == 200  # no "Bearer": fine
        status, headers, answer = http("POST", url, b"{}")
        assert (status, answer) == (401, {"message": "Unauthorized"}) and "www-authenticate" not in headers
        cases = {
            "the token has expired": token(key, exp=int(time.time()) - 60),
            "the token does not have a valid issuer": token(key, iss="https://evil.example.com"),
            "the token does not have a valid audience": token(key, aud="someone-else"),
            "signature is invalid": token(impostor),
        }
        for description, bad in cases.items():
            status, headers, answer = http("POST", url, b"{}", {"Authorization": f"Bearer {bad}"})
            assert (status, answer) == (401, {"message": "Unauthorized"}), description
            assert headers["www-authenticate"] == (
                f'Bearer scope="" error="invalid_token" error_description="{description}"'
            )


def test_invoke_api_requires_sigv4_from_boto3_and_the_aws_cli(tmp_path):
    import boto3
    from botocore.config import Config

    with echo_server(tmp_path, "--invoke-auth", "iam") as server:
        assert "Invoke API  requires SigV4 for lambda in eu-west-1" in server.stderr()

        def client(key: str, secret: str) -> Any:
            return boto3.client(
                "lambda",
                endpoint_url=server.url,
                region_name="eu-west-1",
                aws_access_key_id=key,
                aws_secret_access_key=secret,
                config=Config(retries={"max_attempts": 0}),
            )

        answer = client(KEY_ID, SECRET).invoke(FunctionName="function", Payload=b'{"n": 7}')
        assert json.loads(json.loads(answer["Payload"].read())["body"])["event"] == {"n": 7}
        with pytest.raises(client(KEY_ID, SECRET).exceptions.ClientError) as wrong:
            client(KEY_ID, "not-the-secret").invoke(FunctionName="function", Payload=b"{}")
        assert wrong.value.response["Error"]["Code"] == "InvalidSignatureException"
        assert wrong.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        with pytest.raises(client(KEY_ID, SECRET).exceptions.ClientError) as unknown:
            client("AKIDSOMEBODYELSE", SECRET).invoke(FunctionName="function", Payload=b"{}")
        assert unknown.value.response["Error"] == {
            "Code": "UnrecognizedClientException",
            "Message": "The security token included in the request is invalid.",
        }
        status, headers, answer = http("POST", f"{server.url}/2015-03-31/functions/function/invocations", b"{}")
        assert (status, headers["x-amzn-errortype"]) == (403, "MissingAuthenticationTokenException")
        out = tmp_path / "out.json"
        cli = subprocess.run(
            [
                *AWS,
                "lambda",
                "invoke",
                "--endpoint-url",
                server.url,
                "--function-name",
                "function",
                "--payload",
                '{"from": "cli"}',
                str(out),
            ],
            capture_output=True,
            text=True,
            env=serve_env(tmp_path),
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        assert json.loads(json.loads(out.read_text())["body"])["event"] == {"from": "cli"}
        env = {**serve_env(tmp_path), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
        refused = subprocess.run(
            [*AWS, "lambda", "invoke", "--endpoint-url", server.url, "--function-name", "function", str(out)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert refused.returncode != 0 and "InvalidSignatureException" in refused.stderr
