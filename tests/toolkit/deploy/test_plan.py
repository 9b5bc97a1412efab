"""Deploy and destroy plans, computed from what exists (pure: no AWS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambdalite.errors import DeployError
from lambdalite.toolkit.deploy.artifact import Artifact
from lambdalite.toolkit.deploy.build import Build, BuildOptions
from lambdalite.toolkit.deploy.plan import (
    BUCKET_TAG,
    STACK_BUCKET_TAG,
    STACK_MODEL_TAG,
    CreateBucket,
    DeleteBucket,
    DeleteObjects,
    DeleteStack,
    DeployStack,
    Observed,
    Upload,
    artifact_prefix,
    describe,
    plan_deploy,
    plan_destroy,
)
from lambdalite.toolkit.deploy.target import Target
from lambdalite.toolkit.deploy.template import Settings

SHA = "ab" * 32


def fake_build(tmp_path: Path, *, layer: bool = False, image: bool = False) -> Build:
    artifacts = []
    for kind in ("function", "layer") if layer else ("function",):
        path = tmp_path / f"{kind}.zip"
        path.write_bytes(b"PK" + kind.encode())
        artifacts.append(Artifact(kind, path, SHA if kind == "function" else "cd" * 32, 100, 4, ()))  # type: ignore[arg-type]
    return Build(
        out=tmp_path,
        options=BuildOptions(target=Target("3.12", "arm64"), layer=layer, format="image" if image else "zip"),
        model_reference="efficientnet-lite0",
        model_name="efficientnet-lite0",
        model_version="1.0.0",
        model_env="/var/task/model",
        model_s3=None,
        template=tmp_path / "template.yaml",
        artifacts=tuple(artifacts),
        image_context=tmp_path / "image" if image else None,
    )


def observed(**changes: object) -> Observed:
    base: dict[str, object] = {"region": "eu-west-1", "account": "123456789012", "stack": "cats", "bucket": "b"}
    if changes.get("stack_status"):
        base["stack_tags"] = {STACK_MODEL_TAG: "efficientnet-lite0:1.0.0", STACK_BUCKET_TAG: "b"}
    base.update(changes)
    return Observed(**base)  # type: ignore[arg-type]


def test_first_deploy_creates_bucket_uploads_and_creates_stack(tmp_path):
    steps = plan_deploy(fake_build(tmp_path), observed(), settings=Settings(memory=1024), create_bucket=True)
    kinds = [type(s) for s in steps]
    assert kinds == [CreateBucket, Upload, DeployStack]
    create, upload, stack = steps
    assert create == CreateBucket("b", "eu-west-1", "cats")
    assert upload.key == f"{artifact_prefix('cats')}{SHA[:16]}/function.zip" and upload.bucket == "b"
    assert stack.action == "CREATE"
    function = stack.template["Resources"]["Function"]["Properties"]
    assert function["Code"] == {"S3Bucket": "b", "S3Key": upload.key}
    assert function["MemorySize"] == 1024 and function["Architectures"] == ["arm64"]
    assert "Transform" not in stack.template  # expanded: CloudFormation (and moto) get plain resources
    assert dict(stack.tags)[STACK_BUCKET_TAG] == "b"
    lines = describe(steps)
    assert lines[0].startswith("  + create bucket b") and BUCKET_TAG in lines[0]
    assert any("AWS::Lambda::Function" in line for line in lines)


def test_missing_bucket_without_create_bucket_is_an_error(tmp_path):
    with pytest.raises(DeployError, match="pass --create-bucket"):
        plan_deploy(fake_build(tmp_path), observed(), settings=Settings(), create_bucket=False)


def test_redeploy_skips_the_upload_and_updates(tmp_path):
    key = f"lambdalite/cats/{SHA[:16]}/function.zip"
    old = "lambdalite/cats/0000000000000000/function.zip"
    steps = plan_deploy(
        fake_build(tmp_path),
        observed(bucket_exists=True, stack_status="UPDATE_COMPLETE", artifact_keys=(key, old)),
        settings=Settings(),
        create_bucket=False,
    )
    assert [type(s) for s in steps] == [DeployStack, DeleteObjects]
    assert steps[0].action == "UPDATE"
    assert steps[1] == DeleteObjects("b", (old,), "artifacts of earlier deploys")


def test_layer_builds_upload_both_zips(tmp_path):
    steps = plan_deploy(
        fake_build(tmp_path, layer=True), observed(bucket_exists=True), settings=Settings(), create_bucket=False
    )
    uploads = [s for s in steps if isinstance(s, Upload)]
    assert [u.path.name for u in uploads] == ["function.zip", "layer.zip"]
    [stack] = [s for s in steps if isinstance(s, DeployStack)]
    layers = [r for r in stack.template["Resources"].values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    assert layers[0]["Properties"]["Content"] == {"S3Bucket": "b", "S3Key": uploads[1].key}


def test_a_failed_create_is_deleted_then_created_again(tmp_path):
    steps = plan_deploy(
        fake_build(tmp_path),
        observed(bucket_exists=True, stack_status="ROLLBACK_COMPLETE"),
        settings=Settings(),
        create_bucket=False,
    )
    assert [type(s) for s in steps] == [Upload, DeleteStack, DeployStack]
    assert steps[2].action == "CREATE"


@pytest.mark.parametrize(
    ("status", "message"), [("UPDATE_IN_PROGRESS", "busy"), ("UPDATE_ROLLBACK_FAILED", "fix or delete")]
)
def test_stacks_in_flux_are_left_alone(tmp_path, status, message):
    with pytest.raises(DeployError, match=message):
        plan_deploy(
            fake_build(tmp_path),
            observed(bucket_exists=True, stack_status=status),
            settings=Settings(),
            create_bucket=False,
        )


def test_image_builds_are_not_deployed_by_zip(tmp_path):
    with pytest.raises(DeployError, match="docker"):
        plan_deploy(
            fake_build(tmp_path, image=True), observed(bucket_exists=True), settings=Settings(), create_bucket=False
        )


def test_destroy_removes_stack_artifacts_and_the_bucket_deploy_created():
    keys = ("lambdalite/cats/1/function.zip",)
    state = observed(
        stack_status="CREATE_COMPLETE", bucket_exists=True, bucket_tags={BUCKET_TAG: "cats"}, artifact_keys=keys
    )
    assert plan_destroy(state) == (
        DeleteStack("cats", "destroy"),
        DeleteObjects("b", keys, "its artifacts"),
        DeleteBucket("b"),
    )


def test_destroy_keeps_a_bucket_it_did_not_create_or_that_holds_more():
    keys = ("lambdalite/cats/1/function.zip",)
    theirs = observed(stack_status="CREATE_COMPLETE", bucket_exists=True, artifact_keys=keys)
    assert DeleteBucket("b") not in plan_destroy(theirs)
    shared = observed(
        stack_status="CREATE_COMPLETE",
        bucket_exists=True,
        bucket_tags={BUCKET_TAG: "cats"},
        artifact_keys=keys,
        other_objects=True,
    )
    assert DeleteBucket("b") not in plan_destroy(shared)
    other_stack = observed(bucket_exists=True, bucket_tags={BUCKET_TAG: "dogs"})
    assert plan_destroy(other_stack) == ()


def test_destroy_after_the_stack_is_gone_still_cleans_up():
    state = observed(bucket_exists=True, bucket_tags={BUCKET_TAG: "cats"}, artifact_keys=("lambdalite/cats/1/f.zip",))
    assert [type(s) for s in plan_destroy(state)] == [DeleteObjects, DeleteBucket]


def test_stacks_deploy_did_not_make_are_never_touched(tmp_path):
    foreign = observed(bucket_exists=True, stack_status="CREATE_COMPLETE", stack_tags={"team": "payments"})
    with pytest.raises(DeployError, match="not made by lambdalite deploy; refusing to replace"):
        plan_deploy(fake_build(tmp_path), foreign, settings=Settings(), create_bucket=False)
    with pytest.raises(DeployError, match="refusing to destroy"):
        plan_destroy(foreign)
