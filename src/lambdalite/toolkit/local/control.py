"""The few control-plane calls of Lambda's API that tuning needs, on the serve port, for boto3.

    GET /2015-03-31/functions/{FunctionName}/configuration      GetFunctionConfiguration
    PUT /2015-03-31/functions/{FunctionName}/configuration      UpdateFunctionConfiguration
    GET /2015-03-31/functions/{FunctionName}                    GetFunction (its Configuration; boto3's
                                                                function_updated_v2 waiter polls it)

An update may change `MemorySize`, `Timeout`, `Environment.Variables`, `EphemeralStorage.Size`,
`Description` and `LoggingConfig` (LogFormat, ApplicationLogLevel, SystemLogLevel); anything else
is refused with InvalidParameterValueException, as are values Lambda refuses. It takes effect at
once (`LastUpdateStatus: Successful`, so boto3's `function_updated_v2` waiter returns on its first
poll) and, as on Lambda, later invocations run in new instances: every instance is retired.

    control = Control.attach(server)
    boto3.client("lambda", endpoint_url=...).update_function_configuration(FunctionName="f", MemorySize=1769)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import time
import uuid
from typing import Any

from lambdalite.errors import FunctionNotFoundError, InvalidParameterValueError, InvokeRefusedError, UsageError
from lambdalite.toolkit.local import protocol
from lambdalite.toolkit.local.environment import check_user_environment
from lambdalite.toolkit.local.messages import FunctionConfig, Reply, Request
from lambdalite.toolkit.local.platform import APPLICATION_LEVELS, LOG_FORMATS, SYSTEM_LEVELS
from lambdalite.toolkit.local.server import LambdaServer

__all__ = ["Control", "function_configuration"]

_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)(/configuration)?/?$")
_UPDATABLE = {"MemorySize", "Timeout", "Environment", "EphemeralStorage", "Description", "LoggingConfig"}


def function_configuration(config: FunctionConfig, arn: str, revision: str, modified: float) -> dict[str, Any]:
    """The FunctionConfiguration shape Lambda answers (the fields a local function has)."""
    v = sys.version_info
    logging: dict[str, Any] = {"LogFormat": config.log_format, "LogGroup": f"/aws/lambda/{config.name}"}
    if config.log_format == "JSON":
        logging.update(ApplicationLogLevel=config.application_log_level, SystemLogLevel=config.system_log_level)
    return {
        "FunctionName": config.name,
        "FunctionArn": arn,
        "Runtime": f"python{v.major}.{v.minor}",
        "Role": f"arn:aws:iam::{config.account}:role/lambdalite-local",
        "Handler": config.handler,
        "CodeSize": 0,
        "Description": config.description,
        "Timeout": int(config.timeout_s),
        "MemorySize": config.memory_mb,
        "LastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(modified)),
        "CodeSha256": hashlib.sha256(config.code_dir.encode()).hexdigest(),
        "Version": config.version,
        "Environment": {"Variables": dict(config.environment)},
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": revision,
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": [config.architecture],
        "EphemeralStorage": {"Size": config.ephemeral_mb},
        "LoggingConfig": logging,
    }


class Control:
    def __init__(self, server: LambdaServer) -> None:
        self.server = server
        self.revision = str(uuid.uuid4())
        self.modified = time.time()

    @classmethod
    def attach(cls, server: LambdaServer) -> Control:
        control = cls(server)
        server.routes.append(control.route)
        return control

    async def route(self, request: Request) -> Reply | None:
        match = _PATH.match(request.path)
        if match is None or request.method not in ("GET", "PUT") or (request.method == "PUT" and not match.group(2)):
            return None
        request_id = str(uuid.uuid4())
        try:
            self._check_function(match.group(1), request.query)
            if request.method == "PUT":
                await self.update(_json_object(request.body))
        except InvokeRefusedError as exc:
            return protocol.service_error_reply(exc, request_id)
        body: dict[str, Any] = function_configuration(self.server.config, self.server.arn, self.revision, self.modified)
        if not match.group(2):  # GetFunction: the configuration inside
            body = {"Configuration": body, "Code": {"RepositoryType": "S3", "Location": ""}, "Tags": {}}
        headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)]
        return Reply(200, headers, json.dumps(body).encode())

    def _check_function(self, raw: str, query: str) -> None:
        ref = protocol.parse_function_name(raw, query)
        config = self.server.config
        if ref.name not in (config.name, "function") or ref.qualifier not in (None, protocol.LATEST):
            arn = protocol.function_arn(ref.name, ref.qualifier, region=config.region, account=config.account)
            raise FunctionNotFoundError(f"Function not found: {arn}")

    async def update(self, body: dict[str, Any]) -> FunctionConfig:
        """Apply an UpdateFunctionConfiguration request body; the new configuration."""
        config = self.server.config
        unknown = sorted(set(body) - _UPDATABLE - {"FunctionName", "RevisionId"})
        if unknown:
            raise InvalidParameterValueError(
                f"lambdalite serve cannot change {', '.join(unknown)}; it changes {', '.join(sorted(_UPDATABLE))}"
            )
        if "RevisionId" in body and body["RevisionId"] != self.revision:
            raise InvalidParameterValueError(
                "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API "
                "to retrieve the latest Revision Id"
            )
        changes: dict[str, Any] = {}
        if "MemorySize" in body:
            changes["memory_mb"] = _whole(body["MemorySize"], "memorySize", 128, 10240)
        if "Timeout" in body:
            changes["timeout_s"] = float(_whole(body["Timeout"], "timeout", 1, 900))
        if "EphemeralStorage" in body:
            size = body["EphemeralStorage"].get("Size") if isinstance(body["EphemeralStorage"], dict) else None
            changes["ephemeral_mb"] = _whole(size, "ephemeralStorage.size", 512, 10240)
        if "Description" in body:
            if not isinstance(body["Description"], str) or len(body["Description"]) > 256:
                raise InvalidParameterValueError("Description must be a string of at most 256 characters")
            changes["description"] = body["Description"]
        if "Environment" in body:
            changes["environment"] = _environment(body["Environment"])
        if "LoggingConfig" in body:
            changes.update(_logging(body["LoggingConfig"], config))
        new = dataclasses.replace(config, **changes)
        await self.server.reconfigure(new)
        self.revision = str(uuid.uuid4())
        self.modified = time.time()
        return new


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError as exc:
        raise InvalidParameterValueError(f"the request body is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidParameterValueError("the request body must be a JSON object")
    return value


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidParameterValueError(
            f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy constraint: "
            f"Member must have value between {low} and {high}"
        )
    return value


def _environment(value: Any) -> dict[str, str]:
    variables = value.get("Variables", {}) if isinstance(value, dict) else None
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise InvalidParameterValueError("Environment.Variables must map names to strings")
    try:
        check_user_environment(variables)
    except UsageError as exc:
        raise InvalidParameterValueError(str(exc)) from exc
    return dict(variables)


def _logging(value: Any, config: FunctionConfig) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidParameterValueError("LoggingConfig must be an object")
    changes = {}
    checks = (
        ("LogFormat", "log_format", LOG_FORMATS),
        ("ApplicationLogLevel", "application_log_level", tuple(APPLICATION_LEVELS)),
        ("SystemLogLevel", "system_log_level", tuple(SYSTEM_LEVELS)),
    )
    for key, field, allowed in checks:
        if key in value:
            if value[key] not in allowed:
                raise InvalidParameterValueError(f"LoggingConfig.{key} must be one of {', '.join(allowed)}")
            changes[field] = value[key]
    if changes.get("log_format", config.log_format) != "JSON" and (
        "ApplicationLogLevel" in value or "SystemLogLevel" in value
    ):
        raise InvalidParameterValueError("Log levels apply to the JSON log format only (LogFormat: JSON)")
    return changes
