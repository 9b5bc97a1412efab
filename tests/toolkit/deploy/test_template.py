"""The SAM template: valid for cfn-lint in every variant, least privilege, binary bodies pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lambdalite.errors import DeployError, UsageError
from lambdalite.toolkit.deploy.template import (
    BINARY_MEDIA_TYPES,
    FunctionSpec,
    ModelLocation,
    Settings,
    expand,
    sam_template,
    to_yaml,
    write_yaml,
)

S3 = {"Bucket": "artifacts", "Key": "lambdalite/cats/0123/function.zip"}
LAYER = {"Bucket": "artifacts", "Key": "lambdalite/cats/4567/layer.zip"}


def spec(**settings: object) -> FunctionSpec:
    model_s3 = settings.pop("model_s3", None)
    image = bool(settings.pop("image", False))
    return FunctionSpec(
        description="lambdalite: efficientnet-lite0 1.0.0 on python3.12 arm64",
        runtime="python3.12",
        arch="arm64",
        model_env="s3://models/cats/model.tar.gz" if model_s3 else "/var/task/model",
        settings=Settings(**settings),  # type: ignore[arg-type]
        image=image,
        model_s3=model_s3,  # type: ignore[arg-type]
    )


def lint(document: dict, tmp_path: Path, name: str) -> list[str]:
    from cfnlint.api import lint_file

    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(document))
    else:
        write_yaml(document, path)
    return [str(m) for m in lint_file(path) if m.rule.id.startswith("E")]


VARIANTS = {
    "http": {"auth": "none"},
    "http+url+layer": {"auth": "none", "function_url": True, "layer": True},
    "rest": {"api": "rest"},
    "none+iam-url": {"auth": "iam", "api": "none", "function_url": True, "url_auth": "AWS_IAM"},
    "s3-model": {"model_s3": ModelLocation("models", "cats/model.tar.gz")},
    "big": {"memory": 10240, "timeout": 900, "ephemeral_storage": 10240, "log_retention": 3653},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_passes_cfn_lint_as_sam_and_expanded(variant, tmp_path):
    options = dict(VARIANTS[variant])
    layer = options.pop("layer", False)
    local = sam_template(spec(**options), code="function.zip", layer="layer.zip" if layer else None)
    assert lint(local, tmp_path, "template.yaml") == []
    remote = sam_template(spec(**options), code=S3, layer=LAYER if layer else None)
    assert lint(expand(remote, "eu-west-1"), tmp_path, "template.json") == []


def test_image_template_passes_cfn_lint(tmp_path):
    template = sam_template(spec(image=True), code="image")
    function = template["Resources"]["Function"]
    assert function["Properties"]["PackageType"] == "Image"
    assert "Handler" not in function["Properties"] and "Runtime" not in function["Properties"]
    assert function["Metadata"]["DockerContext"] == "image"
    assert lint(template, tmp_path, "template.yaml") == []


def test_function_is_configured_as_asked():
    template = expand(sam_template(spec(memory=3008, timeout=20, ephemeral_storage=1024), code=S3), "eu-west-1")
    props = template["Resources"]["Function"]["Properties"]
    assert props["Handler"] == "lambdalite.handler.handler"
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert (props["MemorySize"], props["Timeout"], props["EphemeralStorage"]) == (3008, 20, {"Size": 1024})
    assert props["Environment"]["Variables"] == {
        "LAMBDALITE_MODEL": "/var/task/model",
        "LAMBDALITE_METRICS_NAMESPACE": "lambdalite",
    }
    # Lambda's JSON log format: Powertools-shaped records, platform.* events, log levels.
    assert props["LoggingConfig"] == {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO"}
    assert props["Code"] == {"S3Bucket": S3["Bucket"], "S3Key": S3["Key"]}
    assert props["FunctionName"] == {"Ref": "AWS::StackName"}
    log_group = template["Resources"]["LogGroup"]
    assert log_group["Properties"] == {
        "LogGroupName": {"Fn::Sub": "/aws/lambda/${AWS::StackName}"},
        "RetentionInDays": 14,
    }


def test_text_logs_and_no_metrics_when_asked():
    settings = {"log_format": "Text", "metrics_namespace": ""}
    props = expand(sam_template(spec(**settings), code=S3), "eu-west-1")["Resources"]["Function"]["Properties"]
    assert props["LoggingConfig"] == {"LogFormat": "Text"}
    assert props["Environment"]["Variables"] == {"LAMBDALITE_MODEL": "/var/task/model"}


def role_statements(template: dict) -> list[dict]:
    policies = template["Resources"]["FunctionRole"]["Properties"]["Policies"]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def test_role_is_least_privilege():
    statements = role_statements(sam_template(spec(), code=S3))
    assert statements == [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": {
                "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${LogGroup}:*"
            },
        }
    ]
    with_s3 = role_statements(sam_template(spec(model_s3=ModelLocation("models", "cats/model.tar.gz")), code=S3))
    assert with_s3[1] == {
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::models/cats/model.tar.gz"},
    }
    assert not any("*" in json.dumps(s["Action"]) for s in with_s3)


def test_rest_api_passes_binary_bodies_and_routes_every_path():
    template = expand(sam_template(spec(api="rest"), code=S3), "eu-west-1")
    apis = [r for r in template["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    assert len(apis) == 1
    assert apis[0]["Properties"]["BinaryMediaTypes"] == list(BINARY_MEDIA_TYPES)
    assert {"image~1*", "multipart~1form-data"} <= set(BINARY_MEDIA_TYPES)
    paths = set(apis[0]["Properties"]["Body"]["paths"])
    assert paths == {"/", "/{proxy+}"}  # GET / serves the page; everything else the model


def test_http_api_takes_every_route_and_reports_the_endpoint():
    sam = sam_template(spec(auth="none", function_url=True), code=S3)
    assert sam["Outputs"]["Endpoint"]["Value"] == {
        "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"
    }
    template = expand(sam, "eu-west-1")
    body = template["Resources"]["HttpApi"]["Properties"]["Body"]
    assert list(body["paths"]) == ["$default"]
    permissions = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Permission"]
    url_actions = {p["Action"] for p in permissions if p.get("Principal") == "*"}
    assert url_actions == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}  # both, since October 2025


def test_yaml_reads_back_to_the_same_document(tmp_path):
    template = sam_template(spec(api="rest", function_url=True, model_s3=ModelLocation("b", "k")), code="function.zip")
    template["Resources"]["Tricky"] = {
        "Type": "Custom::X",
        "Properties": {
            "a": "yes",
            "b": "2012-10-17",
            "c": "x: y",
            "d": "",
            "e": [],
            "f": {},
            "g": "on",
            "h": "#not a comment",
            "i": 1.5,
            "j": True,
        },
    }
    assert yaml.safe_load(to_yaml(template)) == template
    path = write_yaml(template, tmp_path / "t.yaml", header="first line\nsecond")
    assert path.read_text().startswith("# first line\n# second\n")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"memory": 64}, "memory must be 128 to 10240 MB"),
        ({"timeout": 901}, "timeout must be 1 to 900"),
        ({"ephemeral_storage": 100}, "ephemeral storage"),
        ({"log_retention": 10}, "log retention must be one of"),
    ],
)
def test_settings_outside_lambdas_quotas_are_refused(settings, message):
    with pytest.raises(UsageError, match=message):
        Settings(**settings)  # type: ignore[arg-type]


def test_settings_warn_when_the_gateway_gives_up_first():
    assert Settings(auth="none", timeout=30).notes() == []
    [note] = Settings(auth="none", timeout=120).notes()
    assert "HTTP API stops waiting after 30 s" in note and "--function-url" in note
    assert "REST API stops waiting after 29 s" in Settings(api="rest", timeout=60).notes()[0]
    assert Settings(auth="none", api="none", timeout=900).notes() == []


def test_settings_round_trip():
    settings = Settings(memory=1024, api="rest", function_url=True)
    assert Settings.from_dict(settings.to_dict()) == settings


def test_model_location_parses_s3_uris():
    assert ModelLocation.parse("s3://models/a/b.tar.gz") == ModelLocation("models", "a/b.tar.gz")
    pinned = ModelLocation.parse("s3://models/a%20b.tar.gz?versionId=3HL4kqtJ")
    assert pinned == ModelLocation("models", "a b.tar.gz", versioned=True)
    assert pinned.actions == ["s3:GetObject", "s3:GetObjectVersion"]
    with pytest.raises(DeployError):
        ModelLocation.parse("s3://just-a-bucket")
