"""`deploy --trigger ... --results ... [--queue]` as users run it, against moto in server mode over HTTP.

moto creates the bucket, the queues, the event source mapping, the role and the function from the
expanded template; it does not apply a bucket's NotificationConfiguration nor an
AWS::SQS::QueuePolicy (it warns and skips them), so those are checked in the template the stack
received, and it cannot run the function (no container runtime here).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.models import write_tiny_bundle
from helpers.servers import start_moto

LAMBDALITE = Path(sys.executable).parent / "lambdalite"
REGION = "eu-west-1"


class Moto:
    def __init__(self) -> None:
        self.proc, self.url = start_moto()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAMBDALITE_"))}
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

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def aws() -> Iterator[Moto]:
    server = Moto()
    yield server
    server.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_tiny_bundle(tmp_path_factory.mktemp("tiny") / "tiny").root)


def deploy(aws: Moto, tiny: str, build: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(LAMBDALITE), "deploy", tiny, "--create-bucket", "--no-compile", "--api", "none"]
    command += ["--build-dir", str(build), *args]
    return subprocess.run(command, capture_output=True, text=True, env=aws.env(), timeout=600)


def role_statements(aws: Moto, function: str) -> dict[str, Any]:
    iam = aws.client("iam")
    role = aws.client("lambda").get_function_configuration(FunctionName=function)["Role"].rsplit("/", 1)[1]
    [name] = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    if isinstance(document, str):  # moto hands back the Python repr of the policy a stack created
        document = ast.literal_eval(document)
    return {json.dumps(s["Action"]): s["Resource"] for s in document["Statement"]}


def received_template(aws: Moto, stack: str) -> dict[str, Any]:
    body = aws.client("cloudformation").get_template(StackName=stack)["TemplateBody"]
    return body if isinstance(body, dict) else json.loads(body)


def test_deploy_an_s3_trigger_through_a_queue_with_a_dead_letter_queue(aws, tiny, tmp_path):
    aws.client("s3").create_bucket(Bucket="labels", CreateBucketConfiguration={"LocationConstraint": REGION})
    args = ["--stack", "queued", "--trigger", "s3://photos/uploads", "--results", "s3://labels/run-1"]
    proc = deploy(aws, tiny, tmp_path / "build", *args, "--queue", "--batch-size", "20", "--batch-window", "2")
    assert proc.returncode == 0, proc.stderr
    assert "Deployed stack queued" in proc.stdout and "Traceback" not in proc.stderr

    config = aws.client("lambda").get_function_configuration(FunctionName="queued")
    variables = config["Environment"]["Variables"]
    assert variables["LAMBDALITE_TRIGGER"] == "s3://photos/uploads/"
    assert variables["LAMBDALITE_OUTPUT"] == "s3://labels/run-1/"
    buckets = {b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]}
    assert {"photos", "labels"} <= buckets  # the stack made the trigger's bucket

    sqs = aws.client("sqs")
    urls = sqs.list_queues()["QueueUrls"]
    assert len(urls) == 2
    attributes = {url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"] for url in urls}
    [(main, queue)] = [(u, a) for u, a in attributes.items() if "RedrivePolicy" in a]
    [(_, dead)] = [(u, a) for u, a in attributes.items() if u != main]
    assert json.loads(queue["RedrivePolicy"]) == {"deadLetterTargetArn": dead["QueueArn"], "maxReceiveCount": 5}
    assert queue["VisibilityTimeout"] == str(6 * 30 + 2)
    [mapping] = aws.client("lambda").list_event_source_mappings(FunctionName="queued")["EventSourceMappings"]
    assert mapping["EventSourceArn"] == queue["QueueArn"]
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"]) == (20, 2)
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]

    granted = role_statements(aws, "queued")
    assert granted['"s3:GetObject"'] == "arn:aws:s3:::photos/uploads/*"
    assert granted['"s3:PutObject"'] == "arn:aws:s3:::labels/run-1/*"
    sqs_actions = [a for a in granted if "sqs:ReceiveMessage" in a]
    assert [granted[a] for a in sqs_actions] == [queue["QueueArn"]]

    resources = received_template(aws, "queued")["Resources"]
    [notification] = resources["InputBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert notification["Event"] == "s3:ObjectCreated:*"
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "uploads/"}]
    assert resources["QueuePolicy"]["Type"] == "AWS::SQS::QueuePolicy"


def test_deploy_a_direct_s3_trigger(aws, tiny, tmp_path):
    args = ["--stack", "direct", "--trigger", "s3://snaps/in", "--results", "s3://snaps/out"]
    proc = deploy(aws, tiny, tmp_path / "build", *args)
    assert proc.returncode == 0, proc.stderr
    resources = received_template(aws, "direct")["Resources"]
    [notification] = resources["InputBucket"]["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "in/"}]
    assert resources["InputBucket"]["DependsOn"] == ["FunctionUploadPermission"]
    assert aws.client("lambda").list_event_source_mappings(FunctionName="direct")["EventSourceMappings"] == []
    granted = role_statements(aws, "direct")
    assert (granted['"s3:GetObject"'], granted['"s3:PutObject"']) == (
        "arn:aws:s3:::snaps/in/*",
        "arn:aws:s3:::snaps/out/*",
    )


def test_deploy_refuses_results_the_trigger_would_fire_on(aws, tiny, tmp_path):
    args = ["--stack", "loop", "--trigger", "s3://loop-bucket/uploads", "--results", "s3://loop-bucket/uploads/labels"]
    proc = deploy(aws, tiny, tmp_path / "build", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if line.strip()]
    assert line.startswith("error: --results 's3://loop-bucket/uploads/labels/' would trigger the function again")
    stacks = aws.client("cloudformation").list_stacks()["StackSummaries"]
    assert "loop" not in {s["StackName"] for s in stacks}
