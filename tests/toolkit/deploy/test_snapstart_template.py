"""`build --snapstart`: SnapStart on published versions, an alias every front door calls, AWS's refusals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from lambdalite.errors import UsageError
from lambdalite.toolkit.deploy.template import FunctionSpec, Settings, expand, sam_template, write_yaml

from helpers.cli import one_line_error
from helpers.lambda_servers import LAMBDALITE

S3 = {"Bucket": "artifacts", "Key": "lambdalite/cats/0123/function.zip"}


def spec(runtime: str = "python3.12", image: bool = False, **settings: object) -> FunctionSpec:
    return FunctionSpec(
        description="lambdalite: efficientnet-lite0 1.0.0 on python3.12 x86_64",
        runtime=runtime,
        arch="x86_64",
        model_env="/var/task/model",
        settings=Settings(snapstart=True, **settings),  # type: ignore[arg-type]
        image=image,
    )


def lint(document: dict, path: Path) -> list[str]:
    from cfnlint.api import lint_file

    if path.suffix == ".json":
        path.write_text(json.dumps(document))
    else:
        write_yaml(document, path)
    return [str(m) for m in lint_file(path) if m.rule.id.startswith("E")]


VARIANTS = {
    "http+iam": {"api": "http", "auth": "iam"},
    "rest+api-key+url": {"api": "rest", "function_url": True},  # the default front door, and a URL
    "url-only": {"api": "none", "function_url": True, "auth": "iam"},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_snapstart_templates_pass_cfn_lint_and_every_front_door_calls_the_alias(variant, tmp_path):
    sam = sam_template(spec(**VARIANTS[variant]), code="function.zip")
    props = sam["Resources"]["Function"]["Properties"]
    assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert props["AutoPublishAlias"] == "live"
    assert lint(sam, tmp_path / "template.yaml") == []

    cfn = expand(sam_template(spec(**VARIANTS[variant]), code=S3), "eu-west-1")
    assert lint(cfn, tmp_path / "template.json") == []
    resources = cfn["Resources"]
    [version] = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Version"]
    assert version["DeletionPolicy"] == "Delete"  # a replaced version's cached snapshot stops costing
    [alias] = [name for name, r in resources.items() if r["Type"] == "AWS::Lambda::Alias"]
    assert resources[alias]["Properties"]["Name"] == "live"
    assert resources["Function"]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    targets = [
        r["Properties"].get("FunctionName") or r["Properties"].get("TargetFunctionArn")
        for r in resources.values()
        if r["Type"] in ("AWS::Lambda::Permission", "AWS::Lambda::Url")
    ]
    assert targets and all(t == {"Ref": alias} for t in targets)  # never $LATEST, which is not snapshotted
    assert cfn["Outputs"]["FunctionAlias"]["Value"] == {"Ref": alias}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Settings(snapstart=True, ephemeral_storage=1024), "ephemeral storage over 512 MB"),
        (lambda: sam_template(spec(image=True), code="image"), "does not support container images"),
        (lambda: sam_template(spec(runtime="python3.11"), code="function.zip"), "needs python3.12 or later"),
    ],
)
def test_what_aws_refuses_with_snapstart_is_refused(make, message):
    with pytest.raises(UsageError, match=message):
        make()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LAMBDALITE), *args], capture_output=True, text=True, timeout=600)


def test_build_and_serve_refuse_snapstart_where_lambda_does(tmp_path, tiny_bundle):
    root = str(tiny_bundle.root)
    one_line_error(
        run("build", root, "--snapstart", "--format", "image", "-o", str(tmp_path / "o")), "container images"
    )
    one_line_error(run("build", root, "--snapstart", "--python", "3.11", "-o", str(tmp_path / "o")), "python3.12")
    refused = run("serve", root, "--snapstart", "--ephemeral-storage", "1024", "--port", "0")
    one_line_error(refused, "SnapStart does not support ephemeral storage over 512 MB (--ephemeral-storage 1024)")
    assert refused.returncode == 2


def test_build_snapstart_writes_the_template(tmp_path, tiny_bundle):
    out = tmp_path / "dist"
    proc = run("build", str(tiny_bundle.root), "--snapstart", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    template = yaml.safe_load((out / "template.yaml").read_text())
    props = template["Resources"]["Function"]["Properties"]
    assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"} and props["AutoPublishAlias"] == "live"
    assert lint(template, tmp_path / "check.yaml") == []


def test_the_build_notes_say_what_snapstart_costs():
    from lambdalite.toolkit.local.protocol import PRICE_SNAPSTART_CACHE_PER_GB_SECOND, PRICE_SNAPSTART_RESTORE_PER_GB

    [note] = [n for n in Settings(snapstart=True, memory=4096).notes() if "SnapStart" in n]
    month = 4 * 3600 * 24 * 30 * PRICE_SNAPSTART_CACHE_PER_GB_SECOND
    assert f"${month:.2f} per 30 days" in note
    assert f"${4 * PRICE_SNAPSTART_RESTORE_PER_GB * 1e6:.2f} per million" in note
    assert "alias live" in note
    assert not any("SnapStart" in n for n in Settings().notes())


def test_a_new_memory_size_publishes_a_new_version_for_the_alias():
    def version_ids(memory: int) -> set[str]:
        resources = expand(sam_template(spec(memory=memory), code=S3), "eu-west-1")["Resources"]
        return {name for name, r in resources.items() if r["Type"] == "AWS::Lambda::Version"}

    assert version_ids(2048) == version_ids(2048)
    assert version_ids(2048) != version_ids(3008)  # else the alias would keep the old configuration
