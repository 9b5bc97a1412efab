"""Deploy and destroy as plans: frozen steps computed from what exists, shown, then executed.

Pure: no boto3, no I/O. `apply.py` observes the account (bucket, stack, objects), asks for a plan
here, prints it with `describe`, and executes it step by step (or stops there for `--dry-run`).

    plan = plan_deploy(build, "cats", observed, settings=settings, create_bucket=True)
    for line in describe(plan): print(line)

What deploy creates is recorded where destroy finds it, even after a failed deploy: the bucket
it creates is tagged `lambdalite:created-for=<stack>`, and the stack is tagged with the bucket
holding its artifacts. Artifacts are content-addressed (`lambdalite/<stack>/<sha256>/function.zip`),
so an unchanged artifact is not uploaded again and a changed one is always a code update.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lambdalite import __version__
from lambdalite.errors import DeployError
from lambdalite.toolkit.deploy.build import Build
from lambdalite.toolkit.deploy.template import Settings, expand, sam_template

__all__ = [
    "BUCKET_TAG",
    "STACK_BUCKET_TAG",
    "STACK_MODEL_TAG",
    "CreateBucket",
    "DeleteBucket",
    "DeleteObjects",
    "DeleteStack",
    "DeployStack",
    "Observed",
    "Step",
    "Upload",
    "artifact_prefix",
    "default_bucket",
    "describe",
    "plan_deploy",
    "plan_destroy",
]

BUCKET_TAG = "lambdalite:created-for"  # on a bucket deploy created: the stack it was created for
STACK_BUCKET_TAG = "lambdalite:bucket"  # on a stack: the bucket that holds its artifacts
STACK_MODEL_TAG = "lambdalite:model"  # on a stack: what it serves; also marks it as deploy's
_BUSY = ("_IN_PROGRESS",)
_BROKEN = ("ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_ROLLBACK_FAILED")


@dataclass(frozen=True, slots=True)
class Observed:
    """What exists in the account, as far as one stack is concerned."""

    region: str
    account: str
    stack: str
    stack_status: str | None = None  # None: there is no such stack
    stack_tags: Mapping[str, str] = field(default_factory=dict)
    bucket: str | None = None
    bucket_exists: bool = False
    bucket_tags: Mapping[str, str] = field(default_factory=dict)
    artifact_keys: tuple[str, ...] = ()  # our objects under artifact_prefix(stack)
    other_objects: bool = False  # a bucket deploy created for this stack also holds other objects


@dataclass(frozen=True, slots=True)
class CreateBucket:
    bucket: str
    region: str
    stack: str


@dataclass(frozen=True, slots=True)
class Upload:
    path: Path
    bucket: str
    key: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class DeleteStack:
    stack: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeployStack:
    stack: str
    action: Literal["CREATE", "UPDATE"]
    template: Mapping[str, Any]
    tags: tuple[tuple[str, str], ...]

    @property
    def body(self) -> str:
        return json.dumps(self.template, indent=1, sort_keys=True)

    def resources(self) -> list[tuple[str, str]]:
        return sorted((rid, res["Type"]) for rid, res in self.template["Resources"].items())


@dataclass(frozen=True, slots=True)
class DeleteObjects:
    bucket: str
    keys: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class DeleteBucket:
    bucket: str


Step = CreateBucket | Upload | DeleteStack | DeployStack | DeleteObjects | DeleteBucket


def default_bucket(account: str, region: str) -> str:
    """The bucket deploy uses when none is named (like SAM's managed bucket, one per account and region)."""
    return f"lambdalite-{account}-{region}"


def artifact_prefix(stack: str) -> str:
    return f"lambdalite/{stack}/"


def _ours(observed: Observed, verb: str) -> None:
    if observed.stack_status is not None and STACK_MODEL_TAG not in observed.stack_tags:
        raise DeployError(
            f"stack {observed.stack} exists in {observed.region} but was not made by lambdalite deploy; "
            f"refusing to {verb} it (choose another --stack)"
        )


def _status_check(observed: Observed) -> None:
    status = observed.stack_status
    if status is None:
        return
    _ours(observed, "replace its resources in")
    if status.endswith(_BUSY):
        raise DeployError(f"stack {observed.stack} is busy ({status}); wait for it to finish and try again")
    if status in _BROKEN:
        raise DeployError(
            f"stack {observed.stack} is {status}; fix or delete it in the CloudFormation console "
            f"(or `lambdalite destroy --stack {observed.stack}`) and deploy again"
        )


def plan_deploy(build: Build, observed: Observed, *, settings: Settings, create_bucket: bool) -> tuple[Step, ...]:
    """The steps that make stack `observed.stack` serve `build`."""
    if build.options.format != "zip":
        raise DeployError(
            f"deploy ships zip builds; for the image in {build.image_context}, build and push it with docker, "
            f"then `sam deploy` the template"
        )
    _status_check(observed)
    bucket = observed.bucket
    if bucket is None:  # pragma: no cover - apply always names one
        raise DeployError("no bucket for the artifacts")
    steps: list[Step] = []
    if not observed.bucket_exists:
        if not create_bucket:
            raise DeployError(
                f"bucket {bucket} does not exist in {observed.region}: pass --create-bucket to create it, "
                f"or --bucket NAME to use one you have"
            )
        steps.append(CreateBucket(bucket, observed.region, observed.stack))
    prefix = artifact_prefix(observed.stack)
    locations: dict[str, dict[str, str]] = {}
    for artifact in build.artifacts:
        key = f"{prefix}{artifact.sha256[:16]}/{artifact.path.name}"
        locations[artifact.kind] = {"Bucket": bucket, "Key": key}
        if key not in observed.artifact_keys:
            steps.append(Upload(artifact.path, bucket, key, artifact.sha256, artifact.compressed))
    if observed.stack_status == "ROLLBACK_COMPLETE":
        # A stack whose creation failed cannot be updated, only deleted and created again.
        steps.append(DeleteStack(observed.stack, "its creation failed (ROLLBACK_COMPLETE)"))
        action: Literal["CREATE", "UPDATE"] = "CREATE"
    else:
        action = "CREATE" if observed.stack_status is None else "UPDATE"
    template = expand(
        sam_template(build.spec(settings), code=locations["function"], layer=locations.get("layer")),
        observed.region,
    )
    tags = (
        (STACK_BUCKET_TAG, bucket),
        (STACK_MODEL_TAG, f"{build.model_name}:{build.model_version}"),
        ("lambdalite:version", __version__),
    )
    steps.append(DeployStack(observed.stack, action, template, tags))
    current = {loc["Key"] for loc in locations.values()}
    stale = tuple(k for k in observed.artifact_keys if k not in current)
    if stale:
        steps.append(DeleteObjects(bucket, stale, "artifacts of earlier deploys"))
    return tuple(steps)


def plan_destroy(observed: Observed) -> tuple[Step, ...]:
    """The steps that remove stack `observed.stack` and what deploy created for it."""
    if observed.stack_status is not None and observed.stack_status.endswith(_BUSY):
        raise DeployError(f"stack {observed.stack} is busy ({observed.stack_status}); wait and try again")
    _ours(observed, "destroy")
    steps: list[Step] = []
    if observed.stack_status is not None:
        steps.append(DeleteStack(observed.stack, "destroy"))
    if observed.bucket is not None and observed.bucket_exists:
        if observed.artifact_keys:
            steps.append(DeleteObjects(observed.bucket, observed.artifact_keys, "its artifacts"))
        if observed.bucket_tags.get(BUCKET_TAG) == observed.stack and not observed.other_objects:
            steps.append(DeleteBucket(observed.bucket))
    return tuple(steps)


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def describe(steps: Sequence[Step]) -> list[str]:
    """One or more lines per step, for the plan a user reads before anything happens."""
    lines: list[str] = []
    for step in steps:
        if isinstance(step, CreateBucket):
            lines.append(f"  + create bucket {step.bucket} in {step.region} (tagged {BUCKET_TAG}={step.stack})")
        elif isinstance(step, Upload):
            lines.append(f"  + upload {step.path.name} ({_mb(step.size)}) to s3://{step.bucket}/{step.key}")
        elif isinstance(step, DeleteStack):
            lines.append(f"  - delete stack {step.stack} ({step.reason})")
        elif isinstance(step, DeployStack):
            verb = "create" if step.action == "CREATE" else "update"
            lines.append(f"  {'+' if verb == 'create' else '~'} {verb} stack {step.stack} with:")
            for rid, rtype in step.resources():
                lines.append(f"      {rtype:<36} {rid}")
            if verb == "update":
                lines.append("    (CloudFormation computes what changes; the change set is shown before it runs)")
        elif isinstance(step, DeleteObjects):
            lines.append(f"  - delete {len(step.keys)} object(s) from s3://{step.bucket} ({step.reason})")
        else:
            lines.append(f"  - delete bucket {step.bucket} (created by deploy for this stack)")
    return lines
