"""The only module that talks to AWS: observe, execute a plan, wait with progress, read logs.

    aws = Aws.connect(region="eu-west-1")             # endpoint from --endpoint-url or AWS_ENDPOINT_URL
    observed = aws.observe("cats", bucket=None)       # bucket None: the default bucket
    outputs = aws.execute(plan_deploy(...), progress)

Every botocore failure becomes a one-line `DeployError` naming what was being done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from lambdalite.core.progress import Progress
from lambdalite.errors import DeployError
from lambdalite.toolkit.deploy.plan import (
    BUCKET_TAG,
    STACK_BUCKET_TAG,
    CreateBucket,
    DeleteObjects,
    DeleteStack,
    DeployStack,
    Observed,
    Step,
    Upload,
    artifact_prefix,
    default_bucket,
)

__all__ = ["Aws"]

WAIT_SECONDS = 45 * 60  # CloudFormation's own default for a stack operation is hours; ours is bounded
_POLL = 2.0
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")


@contextmanager
def _aws(action: str) -> Iterator[None]:
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
    )
    from botocore.parsers import ResponseParserError

    try:
        yield
    except NoCredentialsError as exc:
        raise DeployError(
            f"{action}: no AWS credentials found; run `aws configure`, set AWS_PROFILE, or export "
            f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from exc
    except NoRegionError as exc:
        raise DeployError(f"{action}: no region; pass --region or set AWS_REGION") from exc
    except EndpointConnectionError as exc:
        raise DeployError(f"{action}: cannot reach {exc.kwargs.get('endpoint_url', 'AWS')}") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise DeployError(f"{action}: {error.get('Code', 'error')}: {error.get('Message', exc)}") from exc
    except (BotoCoreError, ResponseParserError) as exc:
        raise DeployError(f"{action}: {str(exc).splitlines()[0]}") from exc


class Aws:
    """boto3 clients for one region (and optionally one endpoint, e.g. a local moto server)."""

    def __init__(self, session: Any, region: str, endpoint_url: str | None) -> None:
        self.region = region
        self._session = session
        self._endpoint_url = endpoint_url
        self._clients: dict[str, Any] = {}

    @classmethod
    def connect(cls, *, region: str | None = None, endpoint_url: str | None = None, profile: str | None = None) -> Aws:
        import os

        import boto3

        # botocore reads AWS_DEFAULT_REGION; the other SDKs (and Lambda itself) set AWS_REGION.
        region = region or os.environ.get("AWS_REGION") or None
        with _aws("reading the AWS configuration"):
            session = boto3.session.Session(region_name=region, profile_name=profile)
        if not session.region_name:
            raise DeployError("no AWS region: pass --region or set AWS_REGION (or a region in your AWS profile)")
        return cls(session, session.region_name, endpoint_url)

    def client(self, name: str) -> Any:
        if name not in self._clients:
            self._clients[name] = self._session.client(name, endpoint_url=self._endpoint_url)
        return self._clients[name]

    # -- observe -------------------------------------------------------------------------------

    def account(self) -> str:
        with _aws("finding the AWS account"):
            return str(self.client("sts").get_caller_identity()["Account"])

    def _stack(self, stack: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            stacks = self.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
        except ClientError as exc:
            if "does not exist" in str(exc):
                return None
            raise
        live = [s for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]
        return live[0] if live else None

    def observe(self, stack: str, bucket: str | None) -> Observed:
        from botocore.exceptions import ClientError

        account = self.account()
        with _aws(f"reading stack {stack}"):
            found = self._stack(stack)
        tags = {t["Key"]: t["Value"] for t in (found or {}).get("Tags", [])}
        bucket = bucket or tags.get(STACK_BUCKET_TAG) or default_bucket(account, self.region)
        s3 = self.client("s3")
        exists, bucket_tags, keys, others = False, {}, [], False
        with _aws(f"reading bucket {bucket}"):
            try:
                s3.head_bucket(Bucket=bucket)
                exists = True
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in ("403", "AccessDenied"):
                    raise DeployError(
                        f"bucket {bucket} exists but this account may not use it (bucket names are global); "
                        f"pass --bucket with another name"
                    ) from exc
                if code not in ("404", "NoSuchBucket"):
                    raise
            if exists:
                bucket_tags = self._bucket_tags(bucket)
                prefix = artifact_prefix(stack)
                pages = s3.get_paginator("list_objects_v2")
                for page in pages.paginate(Bucket=bucket, Prefix=prefix):
                    keys += [obj["Key"] for obj in page.get("Contents", [])]
                if bucket_tags.get(BUCKET_TAG) == stack:  # ours to delete, if nothing else is in it
                    others = self._holds_more_than(bucket, prefix)
        return Observed(
            region=self.region,
            account=account,
            stack=stack,
            stack_status=found["StackStatus"] if found else None,
            stack_tags=tags,
            bucket=bucket,
            bucket_exists=exists,
            bucket_tags=bucket_tags,
            artifact_keys=tuple(sorted(keys)),
            other_objects=others,
        )

    def _holds_more_than(self, bucket: str, prefix: str) -> bool:
        """Whether `bucket` holds any object outside `prefix` (stops at the first one)."""
        for page in self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket):
            if any(not obj["Key"].startswith(prefix) for obj in page.get("Contents", [])):
                return True
        return False

    def _bucket_tags(self, bucket: str) -> dict[str, str]:
        from botocore.exceptions import ClientError

        try:
            tag_set = self.client("s3").get_bucket_tagging(Bucket=bucket)["TagSet"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchTagSet":
                return {}
            raise
        return {t["Key"]: t["Value"] for t in tag_set}

    # -- execute -------------------------------------------------------------------------------

    def execute(self, steps: Sequence[Step], progress: Progress) -> None:
        """Run the steps in order; the first failure stops the plan with a DeployError."""
        for step in steps:
            if isinstance(step, CreateBucket):
                self._create_bucket(step, progress)
            elif isinstance(step, Upload):
                self._upload(step, progress)
            elif isinstance(step, DeleteStack):
                self._delete_stack(step.stack, progress)
            elif isinstance(step, DeployStack):
                self._deploy_stack(step, progress)
            elif isinstance(step, DeleteObjects):
                self._delete_objects(step, progress)
            else:
                with _aws(f"deleting bucket {step.bucket}"), progress.step(f"Deleting bucket {step.bucket}"):
                    self.client("s3").delete_bucket(Bucket=step.bucket)

    def _create_bucket(self, step: CreateBucket, progress: Progress) -> None:
        s3 = self.client("s3")
        with _aws(f"creating bucket {step.bucket}"), progress.step(f"Creating bucket {step.bucket}"):
            args: dict[str, Any] = {"Bucket": step.bucket}
            if step.region != "us-east-1":  # us-east-1 rejects its own name as a LocationConstraint
                args["CreateBucketConfiguration"] = {"LocationConstraint": step.region}
            s3.create_bucket(**args)
            s3.put_bucket_tagging(Bucket=step.bucket, Tagging={"TagSet": [{"Key": BUCKET_TAG, "Value": step.stack}]})
            s3.put_public_access_block(
                Bucket=step.bucket,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )

    def _upload(self, step: Upload, progress: Progress) -> None:
        with _aws(f"uploading {step.path.name}"), progress.bar(f"Uploading {step.path.name}", step.size) as advance:
            self.client("s3").upload_file(
                str(step.path),
                step.bucket,
                step.key,
                ExtraArgs={"Metadata": {"sha256": step.sha256}},
                Callback=advance,
            )

    def _delete_objects(self, step: DeleteObjects, progress: Progress) -> None:
        s3 = self.client("s3")
        with (
            _aws(f"deleting objects from {step.bucket}"),
            progress.step(f"Deleting {len(step.keys)} object(s) ({step.reason})"),
        ):
            for i in range(0, len(step.keys), 1000):  # DeleteObjects takes at most 1,000 keys
                batch = [{"Key": k} for k in step.keys[i : i + 1000]]
                result = s3.delete_objects(Bucket=step.bucket, Delete={"Objects": batch, "Quiet": True})
                if result.get("Errors"):
                    first = result["Errors"][0]
                    raise DeployError(f"could not delete s3://{step.bucket}/{first['Key']}: {first.get('Message')}")

    def _delete_stack(self, stack: str, progress: Progress) -> None:
        cfn = self.client("cloudformation")
        with _aws(f"deleting stack {stack}"):
            found = self._stack(stack)
            if found is None:
                return
            stack_id = found["StackId"]
            cfn.delete_stack(StackName=stack_id)
            self._wait(stack_id, f"Deleting stack {stack}", progress, deleting=True)

    def _deploy_stack(self, step: DeployStack, progress: Progress) -> None:
        cfn = self.client("cloudformation")
        name = f"lambdalite-{int(time.time())}"
        with _aws(f"creating a change set for stack {step.stack}"):
            # TemplateBody takes up to 51,200 bytes; a lambdalite template is a few KB.
            created = cfn.create_change_set(
                StackName=step.stack,
                ChangeSetName=name,
                ChangeSetType=step.action,
                TemplateBody=step.body,
                Capabilities=["CAPABILITY_IAM"],
                Tags=[{"Key": k, "Value": v} for k, v in step.tags],
                Description=f"lambdalite deploy ({step.action.lower()})",
            )
            change_set = self._wait_change_set(created["Id"])
        if change_set["Status"] == "FAILED":
            reason = change_set.get("StatusReason", "")
            with _aws("removing an empty change set"):
                cfn.delete_change_set(ChangeSetName=created["Id"])
            if any(marker in reason for marker in _NO_CHANGES):
                progress.note(f"Stack {step.stack} is already up to date: nothing to change")
                return
            raise DeployError(f"CloudFormation refused the change set for {step.stack}: {reason}")
        for change in change_set.get("Changes", []):
            rc = change.get("ResourceChange", {})
            replace = " (replacement)" if rc.get("Replacement") == "True" else ""
            progress.note(
                f"    {rc.get('Action', '?'):<7} {rc.get('LogicalResourceId')} ({rc.get('ResourceType')}){replace}"
            )
        with _aws(f"executing the change set for stack {step.stack}"):
            cfn.execute_change_set(ChangeSetName=created["Id"])
            verb = "Creating" if step.action == "CREATE" else "Updating"
            self._wait(created["StackId"], f"{verb} stack {step.stack}", progress)

    def _wait_change_set(self, change_set_id: str) -> dict[str, Any]:
        cfn = self.client("cloudformation")
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            described: dict[str, Any] = cfn.describe_change_set(ChangeSetName=change_set_id)
            if described["Status"] in ("CREATE_COMPLETE", "FAILED"):
                return described
            if time.monotonic() > deadline:
                raise DeployError(f"the change set was not ready after {WAIT_SECONDS // 60} minutes")
            time.sleep(_POLL)

    def _wait(self, stack_id: str, title: str, progress: Progress, *, deleting: bool = False) -> None:
        """Wait for a stack operation to finish, printing its events as they come."""
        from botocore.exceptions import ClientError

        cfn = self.client("cloudformation")
        seen: set[str] = set()
        started = time.time()
        with progress.step(title):
            deadline = time.monotonic() + WAIT_SECONDS
            while True:
                try:
                    status = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"]
                except ClientError as exc:
                    if deleting and "does not exist" in str(exc):
                        return
                    raise
                failures = self._events(stack_id, seen, started, progress)
                if not status.endswith("_IN_PROGRESS"):
                    break
                if time.monotonic() > deadline:
                    raise DeployError(f"{title}: still {status} after {WAIT_SECONDS // 60} minutes")
                time.sleep(_POLL)
        if deleting and status == "DELETE_COMPLETE":
            return
        if status.endswith("_COMPLETE") and "ROLLBACK" not in status:
            return
        reason = failures[0] if failures else "see the stack's events in the CloudFormation console"
        raise DeployError(f"stack {stack_id.split('/')[1] if '/' in stack_id else stack_id} ended {status}: {reason}")

    def _events(self, stack_id: str, seen: set[str], since: float, progress: Progress) -> list[str]:
        """Print events not seen yet (oldest first); return the reasons of failed ones."""
        events = self.client("cloudformation").describe_stack_events(StackName=stack_id)["StackEvents"]
        failures = []
        for event in reversed(events):
            if event["EventId"] in seen or event["Timestamp"].timestamp() < since - 5:
                continue
            seen.add(event["EventId"])
            status = event.get("ResourceStatus", "")
            reason = event.get("ResourceStatusReason", "")
            progress.note(f"    {status:<22} {event.get('ResourceType', ''):<34} {event.get('LogicalResourceId', '')}")
            if status.endswith("_FAILED") and reason:
                failures.append(f"{event.get('LogicalResourceId')}: {reason}")
        return failures

    # -- read back -----------------------------------------------------------------------------

    def stack_info(self, stack: str) -> dict[str, str]:
        """The stack's outputs, plus its function and log group from its resources."""
        with _aws(f"reading stack {stack}"):
            found = self._stack(stack)
            if found is None:
                raise DeployError(f"there is no stack {stack} in {self.region}")
            info = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs") or []}
            resources = self.client("cloudformation").list_stack_resources(StackName=found["StackId"])
            for res in resources["StackResourceSummaries"]:
                if res.get("ResourceType") == "AWS::Lambda::Function":
                    info.setdefault("FunctionName", res["PhysicalResourceId"])
                elif res.get("ResourceType") == "AWS::Logs::LogGroup":
                    info.setdefault("LogGroupName", res["PhysicalResourceId"])
        info.setdefault("LogGroupName", f"/aws/lambda/{info.get('FunctionName', stack)}")
        return info

    def api_key(self, stack: str) -> str | None:
        """The value of the stack's API key (AWS::ApiGateway::ApiKey), or None when it has none."""
        with _aws(f"reading the API key of stack {stack}"):
            found = self._stack(stack)
            if found is None:
                raise DeployError(f"there is no stack {stack} in {self.region}")
            pages = self.client("cloudformation").get_paginator("list_stack_resources")
            for page in pages.paginate(StackName=found["StackId"]):
                for res in page["StackResourceSummaries"]:
                    if res.get("ResourceType") == "AWS::ApiGateway::ApiKey" and res.get("PhysicalResourceId"):
                        key = self.client("apigateway").get_api_key(apiKey=res["PhysicalResourceId"], includeValue=True)
                        return str(key["value"])
        return None

    def log_events(self, group: str, *, start_ms: int, pattern: str | None, seen: set[str]) -> list[dict[str, Any]]:
        """Events in `group` since `start_ms` that are not in `seen` (which this updates)."""
        logs = self.client("logs")
        args: dict[str, Any] = {"logGroupName": group, "startTime": start_ms}
        if pattern:
            args["filterPattern"] = pattern
        out = []
        with _aws(f"reading log group {group}"):
            for page in logs.get_paginator("filter_log_events").paginate(**args):
                for event in page.get("events", []):
                    if event["eventId"] not in seen:
                        seen.add(event["eventId"])
                        out.append(event)
        return sorted(out, key=lambda e: (e["timestamp"], e["eventId"]))

    def follow(
        self,
        group: str,
        *,
        start_ms: int,
        pattern: str | None,
        emit: Callable[[dict[str, Any]], None],
        tail: bool,
    ) -> None:
        """Print what is in `group`, then (with `tail`) keep polling until interrupted."""
        seen: set[str] = set()
        while True:
            events = self.log_events(group, start_ms=start_ms, pattern=pattern, seen=seen)
            for event in events:
                emit(event)
                start_ms = max(start_ms, event["timestamp"])
            if not tail:
                return
            time.sleep(_POLL)
