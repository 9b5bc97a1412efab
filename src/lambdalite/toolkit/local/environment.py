"""The environment an instance runs with: Lambda's variables, then the user's, checked as Lambda checks them.

    user = parse_env_pairs(["STAGE=dev"]) | load_env_file("env.json", "MyFunction")
    check_user_environment(user)                 # reserved keys, key syntax, the 4 KB quota
    env = lambda_environment(config, pythonpath=[...])

`env.json` is SAM CLI's `--env-vars` file: `{"Parameters": {...}}` applies to every function,
`{"<FunctionLogicalId>": {...}}` to one; values may be strings, numbers or booleans.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lambdalite.errors import UsageError
from lambdalite.toolkit.local.messages import FunctionConfig

__all__ = [
    "ENVIRONMENT_LIMIT",
    "RESERVED_KEYS",
    "check_user_environment",
    "lambda_environment",
    "load_env_file",
    "log_stream_name",
    "parse_env_pairs",
]

ENVIRONMENT_LIMIT = 4096  # bytes of keys and values together
# Lambda refuses these in a function's configuration ("Reserved keys used in this request").
RESERVED_KEYS = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_REGION",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
    }
)
_KEY = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]+$")
# Host variables an instance still needs: finding programs and libraries, TLS roots, proxies.
_PASS_THROUGH = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LD_LIBRARY_PATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "LAMBDALITE_HOME",
    "LAMBDALITE_DEBUG",
)


def parse_env_pairs(pairs: Sequence[str], flag: str = "--env") -> dict[str, str]:
    """`["A=1", "B=x=y"]` -> `{"A": "1", "B": "x=y"}`; anything without a key and `=` is a UsageError."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} expects KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def load_env_file(path: Path, function_name: str, section: str | None = None) -> dict[str, str]:
    """Variables for `function_name` from a SAM env.json (Parameters first, then the function's own).

    The function's own section is `section` when given (`serve --env-vars-section`), else the one
    named like the function, else the file's only one."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UsageError(f'{path}: expected {{"FunctionLogicalId": {{"KEY": "value"}}}} or {{"Parameters": {{...}}}}')
    functions = {k: v for k, v in data.items() if k != "Parameters"}
    if section is not None:
        if section not in functions:
            known = ", ".join(sorted(functions)) or "none"
            raise UsageError(f"{path} has no section {section!r} (its function sections: {known})")
        own = functions[section]
    elif function_name in functions:
        own = functions[function_name]
    elif len(functions) == 1:
        own = next(iter(functions.values()))  # one function in the file: it is this one, whatever its logical id
    elif functions:
        raise UsageError(
            f"{path} has variables for {', '.join(sorted(functions))}; "
            f"pick one with --env-vars-section (serving {function_name!r})"
        )
    else:
        own = {}
    env: dict[str, str] = {}
    for variables in (data.get("Parameters", {}), own):
        for key, value in variables.items():
            env[key] = _env_string(path, key, value)
    return env


def _env_string(path: Path, key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise UsageError(f"{path}: {key} must be a string, number or boolean, not {type(value).__name__}")


def check_user_environment(env: dict[str, str]) -> None:
    reserved = sorted(RESERVED_KEYS & env.keys())
    if reserved:
        raise UsageError(f"reserved environment variable{'s' if len(reserved) > 1 else ''}: {', '.join(reserved)}")
    for key in env:
        if not _KEY.match(key):
            raise UsageError(f"environment variable name {key!r} must match [a-zA-Z][a-zA-Z0-9_]+")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in env.items())
    if size > ENVIRONMENT_LIMIT:
        raise UsageError(f"environment variables take {size} bytes; Lambda allows {ENVIRONMENT_LIMIT} (4 KB) in all")


def log_stream_name(version: str) -> str:
    return f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{version}]{secrets.token_hex(16)}"


def lambda_environment(
    config: FunctionConfig, *, pythonpath: Sequence[str], runtime_dir: str, task_root: str | None = None
) -> dict[str, str]:
    """Lambda's variables for `config`, the user's on top; AWS_LAMBDA_RUNTIME_API is per instance.

    `task_root` is where the instance sees the code (/var/task in a mount namespace; default:
    the code directory itself)."""
    env = {key: os.environ[key] for key in _PASS_THROUGH if key in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": config.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": config.version,
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name(config.version),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": config.region,
            "AWS_DEFAULT_REGION": config.region,
            # Dummy execution-role credentials: enough for boto3 to sign requests to a local endpoint.
            "AWS_ACCESS_KEY_ID": "ASIALAMBDALITELOCAL0",
            "AWS_SECRET_ACCESS_KEY": "lambdalite-local-secret-access-key",
            "AWS_SESSION_TOKEN": "lambdalite-local-session-token",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "LAMBDA_TASK_ROOT": task_root or config.code_dir,
            "LAMBDA_RUNTIME_DIR": runtime_dir,
            "_HANDLER": config.handler,
            "TZ": ":UTC",
            "PYTHONPATH": os.pathsep.join(dict.fromkeys(pythonpath)),
        }
    )
    if config.snapstart:
        # SnapStart: the init runs once, for every environment restored later; Lambda says so in
        # AWS_LAMBDA_INITIALIZATION_TYPE and sets no log group or stream (the snapshot is shared).
        env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
        del env["AWS_LAMBDA_LOG_GROUP_NAME"], env["AWS_LAMBDA_LOG_STREAM_NAME"]
    if config.model_dir:
        env["LAMBDALITE_MODEL"] = config.model_dir
    if config.log_format.upper() == "JSON":  # LoggingConfig, as the runtime sees it
        env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        env["AWS_LAMBDA_LOG_LEVEL"] = config.application_log_level
    env.update(config.environment)
    return env
