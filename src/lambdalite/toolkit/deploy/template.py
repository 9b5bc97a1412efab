"""The AWS SAM template for a lambdalite function, and its expansion to plain CloudFormation.

One function (`lambdalite.handler.handler`, or the image's CMD), in front of it an HTTP API (binary
bodies arrive base64-encoded, which the handler decodes) or a REST API with binary media types,
optionally a Function URL; a role that may write the function's logs and, only when the model
lives in S3, read that one object; an explicit log group with a retention; outputs for the
endpoint and the function. The function is named after the stack, so `sam deploy --stack-name X`
and `lambdalite deploy --stack X` make the function `X` and its log group `/aws/lambda/X`.

    spec = FunctionSpec("my model", "python3.12", "x86_64", "/var/task/model", Settings(memory=2048))
    template = sam_template(spec, code="function.zip")
    write_yaml(template, out / "template.yaml")
    cfn = expand(sam_template(spec, code={"Bucket": b, "Key": k}), "eu-west-1")   # what CloudFormation gets
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from lambdalite.errors import DeployError, UsageError
from lambdalite.toolkit.deploy.package import HANDLER
from lambdalite.toolkit.deploy.triggers import add_sources, check_sources

__all__ = [
    "BINARY_MEDIA_TYPES",
    "LOG_RETENTION_DAYS",
    "FunctionSpec",
    "ModelLocation",
    "Settings",
    "expand",
    "sam_template",
    "to_yaml",
    "write_yaml",
]

ApiKind = Literal["http", "rest", "none"]
# REST APIs pass a body as bytes only when its Content-Type is listed here ("~1" is "/").
BINARY_MEDIA_TYPES = ("image~1*", "multipart~1form-data", "application~1octet-stream")
REST_STAGE = "prod"
_POLICY_VERSION = "2012-10-17"


@dataclass(frozen=True, slots=True)
class ModelLocation:
    """An S3 object the function reads its model from at cold start (`?versionId=` pins a version)."""

    bucket: str
    key: str
    versioned: bool = False

    @classmethod
    def parse(cls, uri: str) -> ModelLocation:
        from urllib.parse import parse_qs, unquote, urlsplit

        parts = urlsplit(uri)
        key = unquote(parts.path.lstrip("/"))
        if parts.scheme != "s3" or not parts.netloc or not key:
            raise DeployError(f"{uri!r} is not an s3://bucket/key model location")
        return cls(parts.netloc, key, "versionId" in parse_qs(parts.query))

    @property
    def actions(self) -> str | list[str]:
        # Reading a given version is its own permission.
        return ["s3:GetObject", "s3:GetObjectVersion"] if self.versioned else "s3:GetObject"


# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


@dataclass(frozen=True, slots=True)
class Settings:
    """What a user tunes about the deployed function; validated against Lambda's quotas."""

    memory: int = 2048
    timeout: int = 30
    ephemeral_storage: int = 512
    api: ApiKind = "http"
    function_url: bool = False
    url_auth: Literal["NONE", "AWS_IAM"] = "NONE"
    log_retention: int = 14
    # Batch sources (see triggers.py): new objects under `trigger` invoke the function (through an
    # SQS queue with a DLQ when `queue`), and it writes one JSON result per image under `results`.
    trigger: str | None = None
    results: str | None = None
    queue: bool = False
    batch_size: int = 10
    batch_window: int = 0

    def __post_init__(self) -> None:
        if not 128 <= self.memory <= 10240:
            raise UsageError(f"memory must be 128 to 10240 MB, not {self.memory}")
        if not 1 <= self.timeout <= 900:
            raise UsageError(f"timeout must be 1 to 900 seconds, not {self.timeout}")
        if not 512 <= self.ephemeral_storage <= 10240:
            raise UsageError(f"ephemeral storage (/tmp) must be 512 to 10240 MB, not {self.ephemeral_storage}")
        if self.api not in ("http", "rest", "none"):
            raise UsageError(f"api must be http, rest or none, not {self.api!r}")
        if self.log_retention not in LOG_RETENTION_DAYS:
            raise UsageError(
                f"log retention must be one of {', '.join(map(str, LOG_RETENTION_DAYS))} days, not {self.log_retention}"
            )
        check_sources(
            trigger=self.trigger,
            results=self.results,
            queue=self.queue,
            batch_size=self.batch_size,
            batch_window=self.batch_window,
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def notes(self) -> list[str]:
        """Warnings about settings that work but probably surprise."""
        out = []
        gateway = {"http": 30, "rest": 29}.get(self.api)
        if gateway is not None and self.timeout > gateway:
            out.append(
                f"the {self.api.upper()} API stops waiting after {gateway} s, before the function's {self.timeout} s "
                f"timeout{'; the Function URL waits the full time' if self.function_url else ' (add --function-url)'}"
            )
        return out


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """Everything the template says about the function."""

    description: str
    runtime: str
    arch: str
    model_env: str  # the value of LAMBDALITE_MODEL inside the function
    settings: Settings = Settings()
    image: bool = False
    model_s3: ModelLocation | None = None


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _role(spec: FunctionSpec) -> dict[str, Any]:
    statements: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            # The log group's streams, spelled out: GetAtt Arn ends in ":*" on AWS but not everywhere.
            "Resource": _sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${LogGroup}:*"),
        }
    ]
    if spec.model_s3 is not None:
        statements.append(
            {
                "Effect": "Allow",
                "Action": spec.model_s3.actions,
                "Resource": _sub(f"arn:${{AWS::Partition}}:s3:::{spec.model_s3.bucket}/{spec.model_s3.key}"),
            }
        )
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": "lambdalite function role: write its own logs"
            + (", read its model object" if spec.model_s3 else ""),
            "AssumeRolePolicyDocument": {
                "Version": _POLICY_VERSION,
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            },
            "Policies": [
                {"PolicyName": "function", "PolicyDocument": {"Version": _POLICY_VERSION, "Statement": statements}}
            ],
        },
    }


def sam_template(
    spec: FunctionSpec, *, code: str | dict[str, str], layer: str | dict[str, str] | None = None
) -> dict[str, Any]:
    """The SAM template. `code` is the zip (a local path or `{"Bucket", "Key"}`), or for an image
    function the image URI, or the build context directory when it is a local path."""
    environment = {"LAMBDALITE_MODEL": spec.model_env}
    props: dict[str, Any] = {
        "FunctionName": {"Ref": "AWS::StackName"},
        "Description": spec.description,
        "Architectures": [spec.arch],
        "MemorySize": spec.settings.memory,
        "Timeout": spec.settings.timeout,
        "EphemeralStorage": {"Size": spec.settings.ephemeral_storage},
        "Role": {"Fn::GetAtt": ["FunctionRole", "Arn"]},
        "Environment": {"Variables": environment},
    }
    function: dict[str, Any] = {"Type": "AWS::Serverless::Function", "DependsOn": "LogGroup"}
    if spec.image:
        props["PackageType"] = "Image"
        if isinstance(code, str) and not code.startswith(("/", ".")) and ".dkr.ecr." in code:
            props["ImageUri"] = code
        else:  # built by `sam build` from the context lambdalite wrote
            function["Metadata"] = {"Dockerfile": "Dockerfile", "DockerContext": code, "DockerTag": "latest"}
    else:
        props["Runtime"] = spec.runtime
        props["Handler"] = HANDLER
        props["CodeUri"] = code
    if layer is not None:
        props["Layers"] = [{"Ref": "DependenciesLayer"}]
    if spec.settings.function_url:
        props["FunctionUrlConfig"] = {"AuthType": spec.settings.url_auth}
    events = _events(spec)
    if events:
        props["Events"] = events
    function["Properties"] = props

    resources: dict[str, Any] = {
        "LogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "LogGroupName": _sub("/aws/lambda/${AWS::StackName}"),
                "RetentionInDays": spec.settings.log_retention,
            },
        },
        "FunctionRole": _role(spec),
        "Function": function,
    }
    if layer is not None:
        resources["DependenciesLayer"] = {
            "Type": "AWS::Serverless::LayerVersion",
            "Properties": {
                "Description": "lambdalite function dependencies (numpy, Pillow, the engine)",
                "ContentUri": layer,
                "CompatibleRuntimes": [spec.runtime],
                "CompatibleArchitectures": [spec.arch],
                "RetentionPolicy": "Delete",
            },
        }
    if spec.settings.api == "http":
        resources["HttpApi"] = {"Type": "AWS::Serverless::HttpApi", "Properties": {}}
    elif spec.settings.api == "rest":
        resources["RestApi"] = {
            "Type": "AWS::Serverless::Api",
            "Properties": {
                "Name": {"Ref": "AWS::StackName"},
                "StageName": REST_STAGE,
                "BinaryMediaTypes": list(BINARY_MEDIA_TYPES),
            },
        }

    outputs: dict[str, Any] = {
        "FunctionName": {"Description": "The Lambda function", "Value": {"Ref": "Function"}},
        "FunctionArn": {"Description": "The Lambda function's ARN", "Value": {"Fn::GetAtt": ["Function", "Arn"]}},
        "LogGroupName": {"Description": "Where the function logs", "Value": {"Ref": "LogGroup"}},
    }
    if spec.settings.api == "http":
        outputs["Endpoint"] = {
            "Description": "HTTP API endpoint (POST an image, or GET ?url=)",
            "Value": _sub("https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"),
        }
    elif spec.settings.api == "rest":
        outputs["Endpoint"] = {
            "Description": "REST API endpoint (POST an image, or GET ?url=)",
            "Value": _sub(f"https://${{RestApi}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/{REST_STAGE}/"),
        }
    if spec.settings.function_url:
        outputs["FunctionUrl"] = {
            "Description": "Function URL (no API Gateway in between: 900 s timeout, 6 MB bodies)",
            "Value": {"Fn::GetAtt": ["FunctionUrl", "FunctionUrl"]},  # SAM names it <Function>Url
        }
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": spec.description,
        "Resources": resources,
        "Outputs": outputs,
    }
    s = spec.settings
    return add_sources(
        template,
        trigger=s.trigger,
        results=s.results,
        queue=s.queue,
        batch_size=s.batch_size,
        batch_window=s.batch_window,
        timeout=s.timeout,
    )


def _events(spec: FunctionSpec) -> dict[str, Any]:
    if spec.settings.api == "http":
        # No Path or Method: the $default route, so every path reaches the function.
        return {"Http": {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": "HttpApi"}}}}
    if spec.settings.api == "rest":
        api = {"Ref": "RestApi"}
        return {
            "Root": {"Type": "Api", "Properties": {"RestApiId": api, "Path": "/", "Method": "ANY"}},
            "Proxy": {"Type": "Api", "Properties": {"RestApiId": api, "Path": "/{proxy+}", "Method": "ANY"}},
        }
    return {}


def expand(template: dict[str, Any], region: str) -> dict[str, Any]:
    """Run the SAM transform locally, for a stack in `region`, and return plain CloudFormation."""
    try:
        import boto3
        from samtranslator.model.exceptions import InvalidDocumentException
        from samtranslator.parser.parser import Parser
        from samtranslator.translator.translator import Translator
    except ImportError as exc:
        raise DeployError(
            "deploying needs the SAM translator: pip install 'lambdalite[deploy]' (aws-sam-translator)"
        ) from exc
    # The translator reads the region (and from it the partition) from a boto3 session.
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    try:
        expanded: dict[str, Any] = translator.translate(
            json.loads(json.dumps(template)), parameter_values={}, get_managed_policy_map=dict
        )
    except InvalidDocumentException as exc:
        causes = "; ".join(str(cause) for cause in exc.causes) or str(exc)
        raise DeployError(f"the SAM template is invalid: {causes}") from exc
    return expanded


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if value is None:
        return "null"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)


def _lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        out = []
        for key, item in value.items():
            head = f"{pad}{_scalar(key)}:"
            if isinstance(item, dict | list) and item:
                out.append(head)
                out += _lines(item, indent + 1)
            else:
                out.append(f"{head} {_inline(item)}")
        return out
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        out = []
        for item in value:
            if isinstance(item, dict | list) and item:
                nested = _lines(item, indent + 1)
                out.append(f"{pad}- {nested[0].lstrip()}")
                out += nested[1:]
            else:
                out.append(f"{pad}- {_inline(item)}")
        return out
    return [pad + _scalar(value)]


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def to_yaml(template: dict[str, Any]) -> str:
    """Block-style YAML for a JSON-like document (strings quoted whenever YAML could misread them)."""
    return "\n".join(_lines(template, 0)) + "\n"


def write_yaml(template: dict[str, Any], path: Path, header: str = "") -> Path:
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    path.write_text(comment + to_yaml(template))
    return path
