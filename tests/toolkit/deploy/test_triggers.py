"""Batch sources in the template: an S3 trigger (directly or through SQS with a DLQ), the results'
location, least privilege, and no output the trigger would fire on. Checked with cfn-lint, as SAM
and as the CloudFormation the SAM translator expands it to (what `sam validate` runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambdalite.errors import UsageError
from lambdalite.toolkit.deploy.template import FunctionSpec, Settings, expand, sam_template, write_yaml

S3 = {"Bucket": "artifacts", "Key": "lambdalite/cats/0123/function.zip"}
TRIGGER = {"trigger": "s3://photos/uploads", "results": "s3://photos/labels"}


def spec(**settings: Any) -> FunctionSpec:
    return FunctionSpec("lambdalite: tiny 0.1.0", "python3.12", "x86_64", "/var/task/model", Settings(**settings))


# SAM's own expansion of an API key's usage plan adds a DependsOn that cfn-lint calls obsolete;
# it is in SAM's output, not in our template, which is linted warning-free as written.
SAM_EXPANSION_WARNINGS = {"W3005"}


def lint(document: dict[str, Any], tmp_path: Path, name: str) -> list[str]:
    from cfnlint.api import lint_file

    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(document))
    else:
        write_yaml(document, path)
    ignored = SAM_EXPANSION_WARNINGS if name == "cfn.json" else set()
    return [str(m) for m in lint_file(path) if m.rule.id.startswith(("E", "W")) and m.rule.id not in ignored]


VARIANTS = {
    "s3": {**TRIGGER, "api": "none"},
    "s3-whole-bucket": {"trigger": "s3://photos", "results": "s3://labels/run-1"},
    "s3+queue": {**TRIGGER, "queue": True, "batch_size": 100, "batch_window": 20},
    "results-only": {"results": "s3://labels", "api": "rest"},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_passes_cfn_lint_as_sam_and_expanded(variant, tmp_path):
    local = sam_template(spec(**VARIANTS[variant]), code="function.zip")
    assert lint(local, tmp_path, "template.yaml") == []
    assert lint(expand(sam_template(spec(**VARIANTS[variant]), code=S3), "eu-west-1"), tmp_path, "cfn.json") == []


def resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    [policy] = template["Resources"]["FunctionRole"]["Properties"]["Policies"]
    return policy["PolicyDocument"]["Statement"]


def test_a_direct_trigger_is_an_s3_notification_filtered_by_the_prefix():
    sam = sam_template(spec(**TRIGGER), code=S3)
    variables = sam["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
    assert variables["LAMBDALITE_OUTPUT"] == "s3://photos/labels/"
    assert variables["LAMBDALITE_TRIGGER"] == "s3://photos/uploads/"
    cfn = expand(sam, "eu-west-1")
    [bucket] = resources(cfn, "AWS::S3::Bucket").values()
    assert bucket["DeletionPolicy"] == "Retain"  # the images outlive the stack
    [notification] = bucket["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    assert notification["Event"] == "s3:ObjectCreated:*"
    assert notification["Filter"] == {"S3Key": {"Rules": [{"Name": "prefix", "Value": "uploads/"}]}}
    permissions = [p["Properties"] for p in resources(cfn, "AWS::Lambda::Permission").values()]
    [s3] = [p for p in permissions if p["Principal"] == "s3.amazonaws.com"]
    assert s3["SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert resources(cfn, "AWS::SQS::Queue") == {}


def test_the_role_reads_only_the_input_prefix_and_writes_only_the_output_prefix():
    granted = {json.dumps(s["Action"]): s["Resource"] for s in statements(sam_template(spec(**TRIGGER), code=S3))}
    assert granted['"s3:GetObject"'] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::photos/uploads/*"}
    assert granted['"s3:PutObject"'] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::photos/labels/*"}
    assert len(granted) == 3  # and the function's own logs: no ListBucket, no DeleteObject, no wildcards
    queued = statements(sam_template(spec(**TRIGGER, queue=True), code=S3))
    [sqs] = [s for s in queued if isinstance(s["Action"], list) and s["Action"][0].startswith("sqs:")]
    assert sqs["Resource"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert set(sqs["Action"]) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
    }


def test_through_a_queue_with_a_dead_letter_queue_and_partial_batch_failures():
    sam = sam_template(spec(**TRIGGER, queue=True, batch_size=50, batch_window=5, timeout=60), code=S3)
    cfn = expand(sam, "eu-west-1")
    [mapping] = resources(cfn, "AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert (props["BatchSize"], props["MaximumBatchingWindowInSeconds"]) == (50, 5)
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = cfn["Resources"]["Queue"]["Properties"]
    assert queue["VisibilityTimeout"] == 6 * 60 + 5  # AWS: at least six times the function's timeout
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    [notification] = cfn["Resources"]["InputBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert notification["Queue"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "uploads/"}]
    [statement] = cfn["Resources"]["QueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"]["ArnLike"] == {"aws:SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:s3:::photos"}}
    assert "Upload" not in sam["Resources"]["Function"]["Properties"]["Events"]  # S3 notifies the queue only
    assert {"QueueUrl", "DeadLetterQueueUrl", "InputBucket", "Results"} <= set(sam["Outputs"])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"trigger": "s3://photos/uploads", "results": "s3://photos/uploads/labels"}, "would trigger the function"),
        ({"trigger": "s3://photos", "results": "s3://photos/labels"}, "the whole bucket triggers the function"),
        ({"trigger": "s3://photos/in", "results": "s3://photos"}, "would be written under 'in/'"),
        ({"trigger": "s3://photos/uploads"}, "--trigger needs --results"),
        ({"results": "s3://photos/labels", "queue": True}, "--queue sends the trigger's notifications"),
        ({"results": "photos/labels"}, "--results 'photos/labels': expected an S3 location"),
        ({**TRIGGER, "queue": True, "batch_size": 11}, "needs --batch-window of 1 second or more"),
        ({**TRIGGER, "queue": True, "batch_size": 0}, "--batch-size must be 1 to 10000"),
        ({**TRIGGER, "queue": True, "batch_window": 301}, "--batch-window must be 0 to 300"),
    ],
)
def test_what_cannot_work_is_refused_when_building(settings, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(**settings)


def test_the_build_record_keeps_the_sources():
    settings = Settings(**TRIGGER, queue=True, batch_size=20, batch_window=2)
    assert Settings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def test_build_writes_a_template_that_passes_cfn_lint(tmp_path):
    import subprocess
    import sys

    from cfnlint.api import lint_file

    from helpers.models import write_tiny_bundle

    tiny = write_tiny_bundle(tmp_path / "tiny")
    command = [str(Path(sys.executable).parent / "lambdalite"), "build", str(tiny.root), "-o", str(tmp_path / "dist")]
    command += ["--no-compile", "--trigger", "s3://photos/uploads", "--results", "s3://labels", "--queue"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    template = tmp_path / "dist" / "template.yaml"
    assert [str(m) for m in lint_file(template)] == []
    text = template.read_text()
    assert "ReportBatchItemFailures" in text and "Value: uploads/" in text
