"""deploy, logs and destroy as users run them, against a local AWS (moto in server mode, real HTTP).

moto speaks S3, CloudFormation, IAM, Lambda and CloudWatch Logs. It does not run the SAM
transform (deploy sends the expanded template anyway), it skips API Gateway v2 and Function URL
resources without a word (so the stack reports no endpoint here), it cannot deploy a REST API
defined by an OpenAPI body (the REST variant is checked by cfn-lint and the expansion tests), and
it does not read a function's Architectures from a template (so the architecture is checked in
the template the stack received).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdalite.core.bundle import pack_bundle
from lambdalite.toolkit.deploy.plan import BUCKET_TAG

from helpers.servers import start_moto

LAMBDALITE = Path(sys.executable).parent / "lambdalite"
REGION = "eu-west-1"
# moto cannot create the REST API of the default --auth api-key (an OpenAPI body): deploy a locked HTTP API.
HTTP = ("--auth", "iam")


class Moto:
    """A moto server of our own (tests here reset its state, so it is not the shared one)."""

    def __init__(self) -> None:
        self.proc, self.url = start_moto()

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=10).close()

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION=REGION,
            AWS_ENDPOINT_URL=self.url,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env

    def client(self, service: str):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Moto]:
    server = Moto()
    yield server
    server.close()


@pytest.fixture()
def aws(moto_server: Moto) -> Moto:
    moto_server.reset()
    return moto_server


def lambdalite(aws: Moto, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LAMBDALITE), *args], capture_output=True, text=True, env=aws.env(), timeout=timeout)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def one_line_error(proc: subprocess.CompletedProcess[str], message: str, code: int = 1) -> None:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr


def sha256_of_object(aws: Moto, bucket: str, key: str) -> str:
    return hashlib.sha256(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()


def stack_names(aws: Moto) -> list[str]:
    summaries = aws.client("cloudformation").list_stacks()["StackSummaries"]
    return [s["StackName"] for s in summaries if s["StackStatus"] != "DELETE_COMPLETE"]


def test_deploy_an_s3_model_dry_run_then_for_real_then_destroy(aws, tiny_bundle, tmp_path):
    """MODEL is s3://: deploy builds (fetching the bundle once to learn its engine), ships no model,
    and the function's role may read exactly that object."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="models", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.upload_file(str(pack_bundle(tiny_bundle, tmp_path / "tiny.tar.gz")), "models", "tiny/v1.tar.gz")
    build_dir = tmp_path / "build"
    args = ["deploy", "s3://models/tiny/v1.tar.gz", "--stack", "tiny-cats", "--create-bucket", *HTTP]
    args += ["--build-dir", str(build_dir), "--memory", "1024", "--timeout", "20", "--no-compile"]
    dry = ok(lambdalite(aws, *args, "--dry-run"))
    bucket = "lambdalite-123456789012-eu-west-1"
    assert f"+ create bucket {bucket}" in dry
    assert "+ upload function.zip" in dry and "+ create stack tiny-cats" in dry
    assert "dry run: nothing was changed" in dry
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["models"]  # dry run: nothing created
    assert stack_names(aws) == []

    out = ok(lambdalite(aws, *args))
    assert "Deployed stack tiny-cats" in out and "FunctionName  tiny-cats" in out
    assert sorted(b["Name"] for b in s3.list_buckets()["Buckets"]) == [bucket, "models"]
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": BUCKET_TAG, "Value": "tiny-cats"}]
    [obj] = s3.list_objects_v2(Bucket=bucket)["Contents"]
    local = build_dir / "function.zip"
    assert obj["Key"].startswith("lambdalite/tiny-cats/") and obj["Key"].endswith("/function.zip")
    assert sha256_of_object(aws, bucket, obj["Key"]) == hashlib.sha256(local.read_bytes()).hexdigest()
    with zipfile.ZipFile(local) as zf:
        assert not any(name.startswith("model/") for name in zf.namelist())  # read from S3 at cold start

    config = aws.client("lambda").get_function_configuration(FunctionName="tiny-cats")
    assert config["MemorySize"] == 1024 and config["Timeout"] == 20
    assert config["Handler"] == "lambdalite.handler.handler" and config["Runtime"] == "python3.12"
    assert config["Environment"]["Variables"]["LAMBDALITE_MODEL"] == "s3://models/tiny/v1.tar.gz"
    assert config["Architectures"] == ["x86_64"]
    iam = aws.client("iam")
    role = config["Role"].rsplit("/", 1)[1]
    [policy] = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
    if isinstance(document, str):  # moto hands back the Python repr of the policy a stack created
        document = ast.literal_eval(document)
    statements = {json.dumps(s["Action"]): s["Resource"] for s in document["Statement"]}
    log_group = f"arn:aws:logs:{REGION}:123456789012:log-group:/aws/lambda/tiny-cats:*"
    assert statements == {
        '["logs:CreateLogStream", "logs:PutLogEvents"]': log_group,
        '"s3:GetObject"': "arn:aws:s3:::models/tiny/v1.tar.gz",
    }
    groups = aws.client("logs").describe_log_groups()["logGroups"]
    assert [(g["logGroupName"], g["retentionInDays"]) for g in groups] == [("/aws/lambda/tiny-cats", 14)]

    destroyed = ok(lambdalite(aws, "destroy", "--stack", "tiny-cats", "--yes"))
    assert f"delete bucket {bucket}" in destroyed and "destroyed tiny-cats" in destroyed
    assert stack_names(aws) == []
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["models"]  # the model's bucket is not ours
    assert aws.client("logs").describe_log_groups()["logGroups"] == []


def test_update_and_destroy_keep_a_bucket_deploy_did_not_create(aws, lite0_build):
    out, _ = lite0_build
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="my-artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="my-artifacts", Key="something/else.txt", Body=b"keep me")
    first = ok(lambdalite(aws, "deploy", str(out), "--stack", "cats", "--bucket", "my-artifacts", *HTTP))
    assert "create bucket" not in first
    cfn = aws.client("cloudformation")
    template = cfn.get_template(StackName="cats")["TemplateBody"]
    template = template if isinstance(template, dict) else json.loads(template)
    assert template["Resources"]["Function"]["Properties"]["Architectures"] == ["x86_64"]
    lam = aws.client("lambda")
    config = lam.get_function_configuration(FunctionName="cats")
    assert config["MemorySize"] == 2048
    assert config["Environment"]["Variables"]["LAMBDALITE_MODEL"] == "/var/task/model"  # shipped in the zip

    # Nothing changed: no upload, and CloudFormation has nothing to do.
    again = lambdalite(aws, "deploy", str(out), "--stack", "cats", "--bucket", "my-artifacts", *HTTP)
    assert "upload" not in ok(again) and "already up to date" in again.stderr

    # Same artifact, new settings: an update in place.
    updated = lambdalite(aws, "deploy", str(out), "--stack", "cats", "--memory", "3008", "--timeout", "25", *HTTP)
    assert "~ update stack cats" in ok(updated) and "Modify" in updated.stderr
    config = lam.get_function_configuration(FunctionName="cats")
    assert (config["MemorySize"], config["Timeout"]) == (3008, 25)
    assert cfn.describe_stacks(StackName="cats")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"

    ok(lambdalite(aws, "destroy", "--stack", "cats", "--yes"))
    assert stack_names(aws) == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="my-artifacts").get("Contents", [])]
    assert keys == ["something/else.txt"]  # our artifacts gone, the bucket and its other objects kept


def test_logs_prints_filters_and_follows(aws, lite0_build):
    out, _ = lite0_build
    ok(lambdalite(aws, "deploy", str(out), "--stack", "cats", "--create-bucket", *HTTP))
    logs = aws.client("logs")
    group, stream = "/aws/lambda/cats", "2026/01/31/[$LATEST]0123456789abcdef"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[
            {"timestamp": now - 2000, "message": '{"event":"cold_start","model":"efficientnet-lite0"}'},
            {"timestamp": now - 1000, "message": "ERROR something broke"},
        ],
    )
    printed = ok(lambdalite(aws, "logs", "--stack", "cats", "--since", "1h")).splitlines()
    assert len(printed) == 2
    assert printed[0].endswith('{"event":"cold_start","model":"efficientnet-lite0"}') and "01234567" in printed[0]
    assert printed[1].endswith("ERROR something broke")
    filtered = ok(lambdalite(aws, "logs", "--stack", "cats", "--since", "1h", "--filter", "ERROR")).splitlines()
    assert [line.rsplit(" ", 3)[-3:] for line in filtered] == [["ERROR", "something", "broke"]]

    follower = subprocess.Popen(
        [str(LAMBDALITE), "logs", "--stack", "cats", "--since", "1h", "--tail"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=aws.env(),
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline().endswith('"efficientnet-lite0"}\n')
        assert follower.stdout.readline().endswith("ERROR something broke\n")
        logs.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=[{"timestamp": int(time.time() * 1000), "message": "a new request"}],
        )
        assert follower.stdout.readline().endswith("a new request\n")  # bounded by the pytest timeout
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        follower.stdout.close()  # type: ignore[union-attr]
        follower.stderr.close()  # type: ignore[union-attr]

    # Someone else used the bucket deploy created: destroy removes our things and keeps the bucket.
    bucket = "lambdalite-123456789012-eu-west-1"
    aws.client("s3").put_object(Bucket=bucket, Key="notes.txt", Body=b"mine")
    destroyed = ok(lambdalite(aws, "destroy", "--stack", "cats", "--yes"))
    assert f"bucket {bucket} is kept: it holds other objects" in destroyed
    assert [o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=bucket)["Contents"]] == ["notes.txt"]


def test_deploy_errors_are_one_line(aws, lite0_build, tmp_path):
    out, _ = lite0_build
    one_line_error(lambdalite(aws, "deploy", str(out), "--stack", "cats"), "pass --create-bucket")
    one_line_error(lambdalite(aws, "deploy", str(out), "--stack", "9lives"), "must start with a letter", code=2)
    one_line_error(lambdalite(aws, "destroy", "--stack", "nothing-here", "--yes"), "nothing to destroy")
    one_line_error(lambdalite(aws, "logs", "--stack", "nothing-here"), "there is no stack nothing-here")
    one_line_error(lambdalite(aws, "logs", "--stack", "x", "--since", "yesterday"), "--since takes", code=2)
    no_credentials = aws.env()
    del no_credentials["AWS_ACCESS_KEY_ID"], no_credentials["AWS_SECRET_ACCESS_KEY"]
    proc = subprocess.run(
        [str(LAMBDALITE), "destroy", "--stack", "cats", "--yes"],
        capture_output=True,
        text=True,
        env=no_credentials,
        timeout=60,
    )
    one_line_error(proc, "no AWS credentials found")
    ok(lambdalite(aws, "deploy", str(out), "--stack", "cats", "--create-bucket", *HTTP))
    unconfirmed = subprocess.run(
        [str(LAMBDALITE), "destroy", "--stack", "cats"],
        capture_output=True,
        text=True,
        env=aws.env(),
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    one_line_error(unconfirmed, "pass --yes", code=2)
    assert stack_names(aws) == ["cats"]  # not confirmed: nothing removed


def received_template(aws: Moto, stack: str) -> dict:
    body = aws.client("cloudformation").get_template(StackName=stack)["TemplateBody"]
    return body if isinstance(body, dict) else json.loads(body)


def test_deploy_locked_doors(aws, lite0_build):
    """--auth api-key (the default) is planned here (moto cannot create its REST API: real AWS is the
    opt-in test in test_aws.py); --auth iam with a Function URL and reserved concurrency deploys."""
    out, _ = lite0_build
    args = ["deploy", str(out), "--stack", "locked", "--create-bucket", "--reserved-concurrency", "3"]
    planned = lambdalite(aws, *args, "--throttle", "4,8", "--quota", "500/week", "--dry-run")
    text = ok(planned)
    assert "front door: REST API, auth api-key" in text and "500 requests/week per key" in text
    assert "at most 3 instances (reserved)" in text and "warning:" not in planned.stderr
    expanded = json.loads((out / "template.cfn.json").read_text())["Resources"]
    [plan] = [r["Properties"] for r in expanded.values() if r["Type"] == "AWS::ApiGateway::UsagePlan"]
    assert plan["Throttle"] == {"RateLimit": 4.0, "BurstLimit": 8} and plan["Quota"] == {"Limit": 500, "Period": "WEEK"}
    [key] = [r["Properties"] for r in expanded.values() if r["Type"] == "AWS::ApiGateway::ApiKey"]
    assert "Value" not in key

    deployed = lambdalite(aws, *args, "--auth", "iam", "--function-url")
    assert "front door: HTTP API, auth iam" in ok(deployed) and "function URL: AuthType AWS_IAM" in deployed.stdout
    concurrency = aws.client("lambda").get_function_concurrency(FunctionName="locked")
    assert concurrency["ReservedConcurrentExecutions"] == 3
    resources = received_template(aws, "locked")["Resources"]
    [url] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Url"]
    assert url["AuthType"] == "AWS_IAM"
    one_line_error(lambdalite(aws, "api-key", "--stack", "locked"), "stack locked has no API key")

    # Public on purpose: planned, with a warning that says what abuse costs.
    public = lambdalite(aws, "deploy", str(out), "--stack", "open", "--auth", "none", "--dry-run")
    ok(public)
    assert "warning: the HTTP API is public" in public.stderr and "requests a month, about $" in public.stderr
