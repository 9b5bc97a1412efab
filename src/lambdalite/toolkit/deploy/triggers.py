"""Batch sources in the template: an S3 trigger (directly, or through an SQS queue with a dead-letter
queue) and the S3 location results go to, with a role that may read only the one and write only
the other.

    check_sources(trigger="s3://photos/uploads", results="s3://photos/labels", queue=True, ...)
    add_sources(template, trigger=..., results=..., queue=True, batch_size=10, batch_window=5, timeout=30)

SAM's S3 event needs the bucket in the same template, so the stack creates the trigger's bucket
(kept when the stack goes: `DeletionPolicy: Retain`); its notification is filtered by the prefix.
Through a queue, the bucket notifies the queue (allowed by a queue policy for this bucket and
account only), the function reads batches of `batch_size` messages gathered for up to
`batch_window` seconds and reports partial failures (`ReportBatchItemFailures`); a message that
fails `MAX_RECEIVES` times moves to the dead-letter queue. The function is told both locations
(`LAMBDALITE_TRIGGER`, `LAMBDALITE_OUTPUT`) and refuses at init an output the trigger would fire on;
`check_sources` refuses it here first.
"""

from __future__ import annotations

from typing import Any

from lambdalite.errors import UsageError
from lambdalite.settings import S3Prefix, loop_error

__all__ = ["MAX_RECEIVES", "add_sources", "check_sources", "parse_location"]

MAX_RECEIVES = 5  # receives before a message moves to the dead-letter queue (AWS suggests at least 5)
DLQ_RETENTION_S = 14 * 24 * 3600  # the most SQS keeps a message
_POLICY_VERSION = "2012-10-17"


def parse_location(uri: str, option: str) -> S3Prefix:
    """`s3://bucket/prefix` for a command-line option, or a UsageError saying what is expected."""
    try:
        return S3Prefix.parse(uri)
    except ValueError as exc:
        raise UsageError(f"{option} {uri!r}: expected {exc}") from None


def check_sources(*, trigger: str | None, results: str | None, queue: bool, batch_size: int, batch_window: int) -> None:
    """Refuse what cannot work: a trigger with nowhere to write, an output the trigger fires on,
    batch settings SQS does not take."""
    where = parse_location(results, "--results") if results else None
    source = parse_location(trigger, "--trigger") if trigger else None
    if queue and source is None:
        raise UsageError("--queue sends the trigger's notifications through SQS: it needs --trigger s3://bucket/prefix")
    if source is not None and where is None:
        raise UsageError(
            "--trigger needs --results s3://bucket/prefix: where the function writes a JSON result per image"
        )
    if source is not None and where is not None and (loop := loop_error(where, source)):
        raise UsageError(loop.replace("LAMBDALITE_OUTPUT=", "--results ").replace("LAMBDALITE_TRIGGER", "--trigger"))
    if not 1 <= batch_size <= 10000:
        raise UsageError(f"--batch-size must be 1 to 10000 messages, not {batch_size}")
    if not 0 <= batch_window <= 300:
        raise UsageError(f"--batch-window must be 0 to 300 seconds, not {batch_window}")
    if batch_size > 10 and batch_window < 1:
        raise UsageError(f"--batch-size {batch_size} (over 10) needs --batch-window of 1 second or more (an SQS rule)")


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _objects(where: S3Prefix) -> dict[str, str]:
    return _sub(f"arn:${{AWS::Partition}}:s3:::{where.bucket}/{where.prefix}*")


def _key_filter(where: S3Prefix) -> dict[str, Any]:
    return {"S3Key": {"Rules": [{"Name": "prefix", "Value": where.prefix}]}} if where.prefix else {}


def add_sources(
    template: dict[str, Any],
    *,
    trigger: str | None,
    results: str | None,
    queue: bool,
    batch_size: int,
    batch_window: int,
    timeout: int,
) -> dict[str, Any]:
    """Add the trigger, the queues and the permissions to a SAM template made by `sam_template`."""
    if not trigger and not results:
        return template
    resources = template["Resources"]
    function = resources["Function"]["Properties"]
    role = resources["FunctionRole"]["Properties"]
    statements: list[dict[str, Any]] = role["Policies"][0]["PolicyDocument"]["Statement"]
    outputs = template["Outputs"]
    does = []
    if results:
        output = parse_location(results, "--results")
        function["Environment"]["Variables"]["LAMBDALITE_OUTPUT"] = str(output)
        statements.append({"Effect": "Allow", "Action": "s3:PutObject", "Resource": _objects(output)})
        outputs["Results"] = {
            "Description": "Where the function writes one JSON result per image",
            "Value": str(output),
        }
        does.append("write its results")
    if trigger:
        source = parse_location(trigger, "--trigger")
        function["Environment"]["Variables"]["LAMBDALITE_TRIGGER"] = str(source)
        statements.append({"Effect": "Allow", "Action": "s3:GetObject", "Resource": _objects(source)})
        does.insert(0, "read its images")
        bucket: dict[str, Any] = {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",  # the images outlive the stack
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": source.bucket,
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
            },
        }
        resources["InputBucket"] = bucket
        outputs["InputBucket"] = {"Description": "New objects here invoke the function", "Value": str(source)}
        if queue:
            _through_queue(resources, function, statements, outputs, source, batch_size, batch_window, timeout)
            does.append("read the queue")
        else:
            function.setdefault("Events", {})["Upload"] = {
                "Type": "S3",
                "Properties": {
                    "Bucket": {"Ref": "InputBucket"},
                    "Events": "s3:ObjectCreated:*",
                    **({"Filter": _key_filter(source)} if source.prefix else {}),
                },
            }
    role["Description"] = role["Description"].rstrip() + ", " + ", ".join(does)
    return template


def _through_queue(
    resources: dict[str, Any],
    function: dict[str, Any],
    statements: list[dict[str, Any]],
    outputs: dict[str, Any],
    source: S3Prefix,
    batch_size: int,
    batch_window: int,
    timeout: int,
) -> None:
    queue_arn = {"Fn::GetAtt": ["Queue", "Arn"]}
    resources["DeadLetterQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {"MessageRetentionPeriod": DLQ_RETENTION_S, "SqsManagedSseEnabled": True},
    }
    resources["Queue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            # AWS: at least six times the function's timeout (plus the batching window), so a
            # message is not handed out again while a retried invoke still holds it.
            "VisibilityTimeout": min(43200, 6 * timeout + batch_window),
            "SqsManagedSseEnabled": True,
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                "maxReceiveCount": MAX_RECEIVES,
            },
        },
    }
    resources["QueuePolicy"] = {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [{"Ref": "Queue"}],
            "PolicyDocument": {
                "Version": _POLICY_VERSION,
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "s3.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": queue_arn,
                        "Condition": {
                            "ArnLike": {"aws:SourceArn": _sub(f"arn:${{AWS::Partition}}:s3:::{source.bucket}")},
                            "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                        },
                    }
                ],
            },
        },
    }
    bucket = resources["InputBucket"]
    bucket["DependsOn"] = "QueuePolicy"  # S3 checks it may send to the queue when it is configured
    notification: dict[str, Any] = {"Event": "s3:ObjectCreated:*", "Queue": queue_arn}
    if source.prefix:
        notification["Filter"] = _key_filter(source)
    bucket["Properties"]["NotificationConfiguration"] = {"QueueConfigurations": [notification]}
    statements.append(
        {
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
            ],
            "Resource": queue_arn,
        }
    )
    function.setdefault("Events", {})["Queue"] = {
        "Type": "SQS",
        "Properties": {
            "Queue": queue_arn,
            "BatchSize": batch_size,
            "MaximumBatchingWindowInSeconds": batch_window,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    }
    outputs["QueueUrl"] = {"Description": "The queue S3 notifies; the function reads it", "Value": {"Ref": "Queue"}}
    outputs["DeadLetterQueueUrl"] = {
        "Description": f"Messages that failed {MAX_RECEIVES} times",
        "Value": {"Ref": "DeadLetterQueue"},
    }
