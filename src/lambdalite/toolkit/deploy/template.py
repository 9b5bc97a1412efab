"""The AWS SAM template for a lambdalite function, and its expansion to plain CloudFormation.

One function (`lambdalite.handler.handler`, or the image's CMD), in front of it an HTTP API (binary
bodies arrive base64-encoded, which the handler decodes) or a REST API with binary media types,
optionally a Function URL; a role that may write the function's logs and, only when the model
lives in S3, read that one object; an explicit log group with a retention; outputs for the
endpoint and the function. The function is named after the stack, so `sam deploy --stack-name X`
and `lambdalite deploy --stack X` make the function `X` and its log group `/aws/lambda/X`.

With SnapStart (`Settings(snapstart=True)`) every deploy publishes a version
(`AutoPublishAlias: live`), Lambda snapshots it, and the API and the Function URL call the alias:
SnapStart applies to published versions only, never to $LATEST.

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
from lambdalite.toolkit.access import (
    AUTHS,
    DEFAULT_AUTH,
    DEFAULT_QUOTA,
    DEFAULT_THROTTLE,
    PUBLIC_WITH_API_KEY,
    Auth,
    Quota,
    Throttle,
)
from lambdalite.toolkit.deploy.package import HANDLER
from lambdalite.toolkit.deploy.triggers import add_sources, check_sources

__all__ = [
    "BINARY_MEDIA_TYPES",
    "LOG_RETENTION_DAYS",
    "FunctionSpec",
    "ModelLocation",
    "SNAPSTART_ALIAS",
    "Settings",
    "check_snapstart",
    "expand",
    "sam_template",
    "to_yaml",
    "write_yaml",
]

ApiKind = Literal["http", "rest", "none"]
# REST APIs pass a body as bytes only when its Content-Type is listed here ("~1" is "/").
BINARY_MEDIA_TYPES = ("image~1*", "multipart~1form-data", "application~1octet-stream")
REST_STAGE = "prod"
SNAPSTART_ALIAS = "live"  # the alias SAM publishes each version under (AutoPublishAlias)
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
    """What a user tunes about the deployed function; validated against Lambda's quotas.

    Who may call it (`auth`, `toolkit/access.py`): `api` defaults to a REST API for api-key (API
    keys and usage plans are REST API features) and an HTTP API otherwise; a Function URL
    defaults to AWS_IAM unless auth is none; api-key gets the default quota unless given one.
    """

    memory: int = 2048
    timeout: int = 30
    ephemeral_storage: int = 512
    api: ApiKind | None = None
    function_url: bool = False
    url_auth: Literal["NONE", "AWS_IAM"] | None = None
    log_retention: int = 14
    auth: Auth = DEFAULT_AUTH
    throttle: Throttle = DEFAULT_THROTTLE
    quota: Quota | None = None
    jwt_issuer: str | None = None
    jwt_audience: tuple[str, ...] = ()
    reserved_concurrency: int | None = None
    cors_origins: tuple[str, ...] = ()
    snapstart: bool = False
    log_format: Literal["JSON", "Text"] = "JSON"
    log_level: str = "INFO"  # JSON: the application log level
    metrics_namespace: str = "lambdalite"  # EMF metrics in the function's records; "" for none
    # Batch sources (see triggers.py): new objects under `trigger` invoke the function (through an
    # SQS queue with a DLQ when `queue`), and it writes one JSON result per image under `results`.
    trigger: str | None = None
    results: str | None = None
    queue: bool = False
    batch_size: int = 10
    batch_window: int = 0

    def __post_init__(self) -> None:
        _resolve_access(self)
        if not 128 <= self.memory <= 10240:
            raise UsageError(f"memory must be 128 to 10240 MB, not {self.memory}")
        if not 1 <= self.timeout <= 900:
            raise UsageError(f"timeout must be 1 to 900 seconds, not {self.timeout}")
        if not 512 <= self.ephemeral_storage <= 10240:
            raise UsageError(f"ephemeral storage (/tmp) must be 512 to 10240 MB, not {self.ephemeral_storage}")
        if self.api not in ("http", "rest", "none"):
            raise UsageError(f"api must be http, rest or none, not {self.api!r}")
        if self.log_format not in ("JSON", "Text"):
            raise UsageError(f"log format must be JSON or Text, not {self.log_format!r}")
        if self.log_level not in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"):
            raise UsageError(f"log level must be TRACE, DEBUG, INFO, WARN, ERROR or FATAL, not {self.log_level!r}")
        if len(self.metrics_namespace) > 255 or self.metrics_namespace.startswith("AWS/"):
            raise UsageError("metrics namespace must be at most 255 characters, not starting with AWS/")
        if self.log_retention not in LOG_RETENTION_DAYS:
            raise UsageError(
                f"log retention must be one of {', '.join(map(str, LOG_RETENTION_DAYS))} days, not {self.log_retention}"
            )
        if self.snapstart:
            check_snapstart(ephemeral_storage=self.ephemeral_storage)
        check_sources(
            trigger=self.trigger,
            results=self.results,
            queue=self.queue,
            batch_size=self.batch_size,
            batch_window=self.batch_window,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["throttle"] = self.throttle.spec()
        out["quota"] = self.quota.spec() if self.quota else None
        out["jwt_audience"] = list(self.jwt_audience)
        out["cors_origins"] = list(self.cors_origins)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("throttle"), str):
            values["throttle"] = Throttle.parse(values["throttle"])
        if isinstance(values.get("quota"), str):
            values["quota"] = Quota.parse(values["quota"])
        for name in ("jwt_audience", "cors_origins"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def notes(self) -> list[str]:
        """Warnings about settings that work but probably surprise."""
        out = []
        api = self.api or "http"
        gateway = {"http": 30, "rest": 29}.get(api)
        if gateway is not None and self.timeout > gateway:
            out.append(
                f"the {api.upper()} API stops waiting after {gateway} s, before the function's {self.timeout} s "
                f"timeout{'; the Function URL waits the full time' if self.function_url else ' (add --function-url)'}"
            )
        if self.snapstart:
            from lambdalite.toolkit.local.protocol import snapstart_cost

            price = snapstart_cost(self.memory)
            out.append(
                f"SnapStart at {self.memory} MB: the cached snapshot costs ${price.cache_usd_per_hour * 24 * 30:.2f} "
                f"per 30 days for each published version (${price.minimum_cache_usd:.4f} at least: 3 hours), and "
                f"each restore ${price.restore_usd:.6f} (${price.restore_usd * 1e6:.2f} per million) besides its "
                f"billed restore time; invoke the alias {SNAPSTART_ALIAS} ($LATEST is not snapshotted)"
            )
        return out


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
# What a browser page may send across origins: the key, a token, SigV4's headers.
CORS_HEADERS = ("content-type", "x-api-key", "authorization", "x-amz-date", "x-amz-security-token")
CORS_MAX_AGE = 600


def _resolve_access(s: Settings) -> None:
    """Fill the defaults that depend on `auth` and refuse combinations AWS has no meaning for."""
    if s.auth not in AUTHS:
        raise UsageError(f"auth must be one of {', '.join(AUTHS)}, not {s.auth!r}")
    api = s.api or ("rest" if s.auth == "api-key" else "http")
    object.__setattr__(s, "api", api)
    if api == "none" and not s.function_url and s.auth == DEFAULT_AUTH:
        # No front door at all (a function only events invoke): there is nothing for a key to lock.
        object.__setattr__(s, "auth", "none")
    if s.auth == "api-key" and api != "rest":
        raise UsageError(
            "--auth api-key needs a REST API (API keys and usage plans are REST API features): "
            "use --api rest, or --auth iam, jwt or none with an HTTP API"
        )
    if s.auth == "jwt" and api != "http":
        raise UsageError(
            "--auth jwt is an HTTP API JWT authorizer: use --api http (lambdalite sets up no REST API authorizer)"
        )
    if s.auth == "jwt":
        if not s.jwt_issuer or not s.jwt_issuer.startswith("https://"):
            raise UsageError(
                "--auth jwt needs --jwt-issuer https://... (the token issuer, whose JWKS API Gateway reads)"
            )
        if not s.jwt_audience:
            raise UsageError("--auth jwt needs --jwt-audience (one or more; a token's aud or client_id must match one)")
    elif s.jwt_issuer or s.jwt_audience:
        raise UsageError("--jwt-issuer and --jwt-audience go with --auth jwt")
    object.__setattr__(s, "url_auth", s.url_auth or ("NONE" if s.auth == "none" else "AWS_IAM"))
    if s.url_auth not in ("NONE", "AWS_IAM"):
        raise UsageError(f"url auth must be NONE or AWS_IAM, not {s.url_auth!r}")
    if s.auth == "api-key":
        object.__setattr__(s, "quota", s.quota or DEFAULT_QUOTA)
    elif s.quota is not None:
        raise UsageError("--quota is an API key's usage plan: use it with --auth api-key")
    if s.reserved_concurrency is not None and s.reserved_concurrency < 1:
        raise UsageError(f"reserved concurrency must be 1 or more, not {s.reserved_concurrency}")
    for origin in s.cors_origins:
        if origin != "*" and not _ORIGIN.match(origin):
            raise UsageError(f"--cors-origin takes * or an origin like https://example.com (no path), not {origin!r}")
    if api == "rest" and len(s.cors_origins) > 1:
        # A REST API answers the preflight with one Access-Control-Allow-Origin (SAM's Cors).
        raise UsageError("a REST API's CORS takes one --cors-origin (an HTTP API or Function URL takes several)")


def _throttle(settings: Settings) -> dict[str, Any]:
    return {"ThrottlingBurstLimit": settings.throttle.burst, "ThrottlingRateLimit": settings.throttle.rate}


def _http_api(settings: Settings) -> dict[str, Any]:
    """The HTTP API: stage throttling on every route, the authorizer, CORS."""
    props: dict[str, Any] = {"DefaultRouteSettings": _throttle(settings)}
    if settings.auth == "iam":
        props["Auth"] = {"EnableIamAuthorizer": True, "DefaultAuthorizer": "AWS_IAM"}
    elif settings.auth == "jwt":
        props["Auth"] = {
            "Authorizers": {
                "Jwt": {
                    "IdentitySource": "$request.header.Authorization",
                    "JwtConfiguration": {"issuer": settings.jwt_issuer, "audience": list(settings.jwt_audience)},
                }
            },
            "DefaultAuthorizer": "Jwt",
        }
    if settings.cors_origins:
        props["CorsConfiguration"] = {
            "AllowOrigins": list(settings.cors_origins),
            "AllowMethods": ["GET", "POST", "OPTIONS"],
            "AllowHeaders": list(CORS_HEADERS),
            "MaxAge": CORS_MAX_AGE,
        }
    return props


def _rest_api(settings: Settings) -> dict[str, Any]:
    """The REST API's auth (key + usage plan, or IAM) and stage throttling on every method."""
    props: dict[str, Any] = {"MethodSettings": [{"ResourcePath": "/*", "HttpMethod": "*", **_throttle(settings)}]}
    if settings.auth == "api-key":
        assert settings.quota is not None
        props["Auth"] = {
            "ApiKeyRequired": True,
            "AddApiKeyRequiredToCorsPreflight": False,
            "UsagePlan": {
                "CreateUsagePlan": "PER_API",
                "Description": "lambdalite: the API key's throttle and quota",
                "Throttle": {"RateLimit": settings.throttle.rate, "BurstLimit": settings.throttle.burst},
                "Quota": {"Limit": settings.quota.limit, "Period": settings.quota.period},
            },
        }
    elif settings.auth == "iam":
        props["Auth"] = {"DefaultAuthorizer": "AWS_IAM", "AddDefaultAuthorizerToCorsPreflight": False}
    if settings.cors_origins:
        # API Gateway answers the preflight (OPTIONS, no key or signature needed); the function
        # adds Access-Control-Allow-Origin to its own proxy answers (LAMBDALITE_CORS_ORIGINS).
        [origin] = settings.cors_origins
        props["Cors"] = {
            "AllowOrigin": f"'{origin}'",
            "AllowMethods": "'GET,POST,OPTIONS'",
            "AllowHeaders": "'" + ",".join(CORS_HEADERS) + "'",
            "MaxAge": f"'{CORS_MAX_AGE}'",
        }
    return props


def _function_url(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {"AuthType": settings.url_auth}
    if settings.cors_origins:
        config["Cors"] = {
            "AllowOrigins": list(settings.cors_origins),
            "AllowMethods": ["GET", "POST"],
            "AllowHeaders": list(CORS_HEADERS),
            "MaxAge": CORS_MAX_AGE,
        }
    return config


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


def check_snapstart(*, ephemeral_storage: int = 512, image: bool = False, runtime: str | None = None) -> None:
    """Refuse what Lambda refuses to combine with SnapStart (`build`, `deploy` and `serve` ask)."""
    if image:
        raise UsageError(
            "SnapStart does not support container images: build a zip (--format zip) to use --snapstart, "
            "or drop --snapstart"
        )
    if ephemeral_storage > 512:
        raise UsageError(
            f"SnapStart does not support ephemeral storage over 512 MB (--ephemeral-storage {ephemeral_storage}): "
            "use --ephemeral-storage 512, or drop --snapstart"
        )
    if runtime is not None and runtime in ("python3.9", "python3.10", "python3.11"):
        raise UsageError(f"SnapStart needs python3.12 or later, not {runtime}: use --python 3.12, or drop --snapstart")


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
    if spec.settings.metrics_namespace:
        environment["LAMBDALITE_METRICS_NAMESPACE"] = spec.settings.metrics_namespace
    if spec.settings.cors_origins and spec.settings.api == "rest":
        environment["LAMBDALITE_CORS_ORIGINS"] = ",".join(spec.settings.cors_origins)
    logging: dict[str, Any] = {"LogFormat": spec.settings.log_format}
    if spec.settings.log_format == "JSON":
        logging.update(ApplicationLogLevel=spec.settings.log_level, SystemLogLevel="INFO")
    props: dict[str, Any] = {
        "FunctionName": {"Ref": "AWS::StackName"},
        "Description": spec.description,
        "Architectures": [spec.arch],
        "MemorySize": spec.settings.memory,
        "Timeout": spec.settings.timeout,
        "EphemeralStorage": {"Size": spec.settings.ephemeral_storage},
        "Role": {"Fn::GetAtt": ["FunctionRole", "Arn"]},
        "Environment": {"Variables": environment},
        "LoggingConfig": logging,
    }
    function: dict[str, Any] = {"Type": "AWS::Serverless::Function", "DependsOn": "LogGroup"}
    if spec.settings.snapstart:
        check_snapstart(ephemeral_storage=spec.settings.ephemeral_storage, image=spec.image, runtime=spec.runtime)
        props["SnapStart"] = {"ApplyOn": "PublishedVersions"}
        props["AutoPublishAlias"] = SNAPSTART_ALIAS  # events and the Function URL call the alias
        props["AutoPublishAliasAllProperties"] = True  # a new version for any change, not only new code
        # Each cached snapshot is billed while its version exists: a deploy's new version replaces
        # the old one, and `destroy` leaves none behind (SAM's default would retain them all).
        props["VersionDeletionPolicy"] = "Delete"
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
        props["FunctionUrlConfig"] = _function_url(spec.settings)
    if spec.settings.reserved_concurrency is not None:
        props["ReservedConcurrentExecutions"] = spec.settings.reserved_concurrency
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
        resources["HttpApi"] = {"Type": "AWS::Serverless::HttpApi", "Properties": _http_api(spec.settings)}
    elif spec.settings.api == "rest":
        resources["RestApi"] = {
            "Type": "AWS::Serverless::Api",
            "Properties": {
                "Name": {"Ref": "AWS::StackName"},
                "StageName": REST_STAGE,
                "BinaryMediaTypes": list(BINARY_MEDIA_TYPES),
                **_rest_api(spec.settings),
            },
        }

    outputs: dict[str, Any] = {
        "FunctionName": {"Description": "The Lambda function", "Value": {"Ref": "Function"}},
        "FunctionArn": {"Description": "The Lambda function's ARN", "Value": {"Fn::GetAtt": ["Function", "Arn"]}},
        "LogGroupName": {"Description": "Where the function logs", "Value": {"Ref": "LogGroup"}},
    }
    if spec.settings.snapstart:
        outputs["FunctionAlias"] = {
            "Description": f"The alias ({SNAPSTART_ALIAS}) of the version Lambda snapshotted: invoke this ARN",
            "Value": {"Ref": "Function.Alias"},
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
        events: dict[str, Any] = {
            "Root": {"Type": "Api", "Properties": {"RestApiId": api, "Path": "/", "Method": "ANY"}},
            "Proxy": {"Type": "Api", "Properties": {"RestApiId": api, "Path": "/{proxy+}", "Method": "ANY"}},
        }
        if spec.settings.auth == "api-key":
            # The page opens without a key (a browser cannot send one with a URL), then asks for it.
            for n, (method, path) in enumerate(PUBLIC_WITH_API_KEY):
                events[f"Public{n}"] = {
                    "Type": "Api",
                    "Properties": {
                        "RestApiId": api,
                        "Path": path,
                        "Method": method,
                        "Auth": {"ApiKeyRequired": False},
                    },
                }
        return events
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
