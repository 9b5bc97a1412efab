"""Every setting the function reads from its environment, read once, checked once.

    settings = Settings.from_env(os.environ)     # at init; a bad value raises ConfigError
    Function.from_settings(settings)             # passed down; nothing else reads os.environ

Each variable is one row of `VARIABLES`: its name, what it means, its default and a parser that
says what is allowed. A bad value fails the init with one `ConfigError` that names the variable,
the value and what would be accepted, so a misconfigured function never starts (on Lambda:
`Runtime.InitError` with that message) instead of failing each request in its own way.

The toolkit (the CLI, `invoke-local`, `serve`) builds the same record: from the process
environment with overrides, never by writing to `os.environ`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from lambdalite.core.cache import Cache
from lambdalite.errors import ConfigError

if TYPE_CHECKING:
    import ipaddress

    IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "MAX_BATCH",
    "LOG_LEVELS",
    "MAX_BODY_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_JPEG_SCANS",
    "MAX_PIXELS",
    "SHAPES",
    "VARIABLES",
    "LogFormat",
    "ResponseShape",
    "S3Prefix",
    "Settings",
    "Variable",
    "loop_error",
    "parse_size",
    "xray_trace_header",
]

ResponseShape = Literal["djl", "scores", "top1"]
LogFormat = Literal["text", "json"]
# Lambda's application log levels (AWS_LAMBDA_LOG_LEVEL), least to most severe, as Python levels.
LOG_LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40, "FATAL": 50}
SHAPES: tuple[ResponseShape, ...] = ("djl", "scores", "top1")
DEFAULT_CACHE_BYTES = 400 * 2**20
MAX_BODY_BYTES = 6 * 2**20  # Lambda's synchronous payload limit
MAX_IMAGE_BYTES = 10 * 2**20
MAX_PIXELS = 64_000_000
MAX_JPEG_SCANS = 32  # libjpeg writes 10 scans for a progressive colour JPEG
MAX_BATCH = 16  # images in one request (one engine batch)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class _Invalid(ValueError):
    """A parser's refusal: `allowed` says what would be accepted."""

    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed


def parse_size(raw: str) -> int:
    """`419430400`, `400M`, `1.5G`, `512KiB` -> bytes (positive)."""
    text = raw.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1] if text and text[-1] in _UNITS else ""
    number = text[: -1 or None] if unit else text
    try:
        value = int(float(number) * _UNITS[unit])
    except ValueError:
        raise _Invalid("a size in bytes, or with a K/M/G suffix such as 400M") from None
    if value <= 0:
        raise _Invalid("a positive size, such as 400M")
    return value


def _positive_int(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise _Invalid("a whole number, 1 or more") from None
    if value < 1:
        raise _Invalid("a whole number, 1 or more")
    return value


def _seconds(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise _Invalid("a number of seconds above 0, such as 2.5") from None
    if not value > 0 or value == float("inf"):
        raise _Invalid("a number of seconds above 0, such as 2.5")
    return value


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE or not value:
        return False
    raise _Invalid("1 or 0 (also true/false, yes/no)")


def _shape(raw: str) -> ResponseShape:
    for shape in SHAPES:
        if raw.strip() == shape:
            return shape
    raise _Invalid(f"one of {', '.join(SHAPES)}")


def _log_format(raw: str) -> LogFormat:
    value = raw.strip().lower()
    if value == "json":
        return "json"
    if value == "text":
        return "text"
    raise _Invalid("Text or JSON")


def _log_level(raw: str) -> int:
    level = LOG_LEVELS.get(raw.strip().upper())
    if level is None:
        raise _Invalid(f"one of {', '.join(LOG_LEVELS)}")
    return level


def _namespace(raw: str) -> str | None:
    text = raw.strip()
    allowed = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_/#: "
    if len(text) > 255 or text.startswith("AWS/") or any(c not in allowed for c in text):
        raise _Invalid(
            "a CloudWatch namespace: up to 255 letters, digits and . - _ / # : or spaces, not starting "
            "with AWS/ (such as lambdalite)"
        )
    return text or None


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(part.strip() for part in raw.split(",") if part.strip())
    for origin in origins:
        if origin != "*" and not _ORIGIN.match(origin):
            raise _Invalid(f"comma-separated origins such as https://app.example.com ({origin!r} is not one)")
    return origins


def _networks(raw: str) -> tuple[IPNetwork, ...]:
    import ipaddress  # only when networks are configured: not on every cold start

    networks: list[IPNetwork] = []
    for part in raw.split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise _Invalid(
                    f"comma-separated CIDR networks such as 10.0.0.0/8,fd00::/8 ({part.strip()!r} is not one)"
                ) from None
    return tuple(networks)


def _text(raw: str) -> str | None:
    return raw.strip() or None


def _path(raw: str) -> Path | None:
    return Path(raw).expanduser() if raw.strip() else None


class S3Prefix(NamedTuple):
    """`s3://bucket/prefix/`: a bucket and a key prefix ("" for the whole bucket, else ending in "/")."""

    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def holds(self, bucket: str, key: str) -> bool:
        """Whether the object `bucket`/`key` lies under this location."""
        return bucket == self.bucket and key.startswith(self.prefix)

    @classmethod
    def parse(cls, raw: str) -> S3Prefix:
        """`s3://bucket`, `s3://bucket/`, `s3://bucket/a/b` (read as the folder a/b/)."""
        text = raw.strip()
        bucket, _, prefix = text.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        if (
            not text.startswith("s3://")
            or not 3 <= len(bucket) <= 63
            or not all(c.islower() or c.isdigit() or c in ".-" for c in bucket)
            or "//" in prefix
            or any(part in (".", "..") for part in prefix.split("/"))
        ):
            raise _Invalid("an S3 location such as s3://my-bucket/results (a bucket, and optionally a prefix)")
        return cls(bucket, prefix + "/" if prefix else "")


def _s3_prefix(raw: str) -> S3Prefix | None:
    return S3Prefix.parse(raw) if raw.strip() else None


def loop_error(output: S3Prefix, trigger: S3Prefix) -> str | None:
    """Why writing results to `output` would invoke a function triggered by `trigger` again, or None.

    A result for the object `K` (which starts with the trigger's prefix) is written to
    `output.prefix + K + ".json"`; that object triggers the function again exactly when it starts
    with the trigger's prefix too, which holds for every K iff it holds for K = trigger.prefix."""
    if output.bucket != trigger.bucket or not (output.prefix + trigger.prefix).startswith(trigger.prefix):
        return None
    if not trigger.prefix:
        where = "the whole bucket triggers the function"
    elif output.prefix.startswith(trigger.prefix):
        where = f"{output.prefix!r} is inside the triggering prefix {trigger.prefix!r}"
    else:
        where = f"results for {trigger.prefix}... would be written under {output.prefix + trigger.prefix!r}"
    return (
        f"LAMBDALITE_OUTPUT={str(output)!r} would trigger the function again ({where}): every result would "
        f"invoke it once more, a recursive loop that Lambda does not reliably stop; write results to another "
        f"bucket, or to a prefix outside {str(trigger)!r} (and filter the trigger by its prefix)"
    )


class Variable(NamedTuple):
    """One environment variable: the field it sets, its parser and what it means."""

    name: str
    field: str
    parse: Callable[[str], Any]
    help: str


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "LAMBDALITE_MODEL", "model", _text, "the model reference to serve (zoo name, bundle, .tar.gz, https://, s3://)"
    ),
    Variable("MODEL_BUCKET", "model_bucket", _text, "seed 004: the S3 bucket of the model archive"),
    Variable("MODEL_KEY", "model_key", _text, "seed 004: the S3 key of the model archive"),
    Variable("MODEL_SHA256", "model_sha256", _text, "pins MODEL_BUCKET/MODEL_KEY to this sha256"),
    Variable("LAMBDA_TASK_ROOT", "task_root", _path, "where the function's code is (a bundle may ship in ./model)"),
    Variable("LAMBDALITE_RESPONSE", "response", _shape, "the response shape of direct invokes: djl, scores or top1"),
    Variable("LAMBDALITE_MAX_BODY_BYTES", "max_body_bytes", parse_size, "the largest request body"),
    Variable("LAMBDALITE_MAX_IMAGE_BYTES", "max_image_bytes", parse_size, "the largest image fetched from a URL"),
    Variable("LAMBDALITE_MAX_PIXELS", "max_pixels", _positive_int, "the most pixels an image may have"),
    Variable("LAMBDALITE_MAX_JPEG_SCANS", "max_jpeg_scans", _positive_int, "the most scans a JPEG may have"),
    Variable(
        "LAMBDALITE_MAX_DECODE_BYTES",
        "max_decode_bytes",
        parse_size,
        "bytes one image may take to decode (default: half the memory left after loading the model)",
    ),
    Variable("LAMBDALITE_MAX_BATCH", "max_batch", _positive_int, "the most images in one request"),
    Variable("LAMBDALITE_THREADS", "threads", _positive_int, "the engine's intra-op threads (default: from CPUs)"),
    Variable("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "memory_mb", _positive_int, "the function's memory size in MB"),
    Variable("LAMBDALITE_SOURCE_TIMEOUT", "source_timeout", _seconds, "seconds to wait on a model download"),
    Variable("LAMBDALITE_HOME", "home", _path, "the model cache directory"),
    Variable("XDG_CACHE_HOME", "xdg_cache_home", _path, "the user cache directory (the cache goes in ./lambdalite)"),
    Variable("LAMBDALITE_CACHE_BYTES", "cache_bytes", parse_size, "the model cache's byte budget"),
    Variable("LAMBDALITE_ALLOW_PRIVATE_URLS", "allow_private_urls", _flag, "fetch image URLs on private networks"),
    Variable("LAMBDALITE_ALLOW_URL_NETWORKS", "allow_url_networks", _networks, "CIDRs image URLs may reach"),
    Variable("LAMBDALITE_URL_CONNECT_TIMEOUT", "url_connect_timeout", _seconds, "seconds to connect to an image URL"),
    Variable("LAMBDALITE_URL_TIMEOUT", "url_timeout", _seconds, "seconds to fetch an image URL, in all"),
    Variable("LAMBDALITE_TRUST_CODE", "trust_code", _flag, "run code that a bundle carries (pipeline.py)"),
    Variable(
        "LAMBDALITE_CORS_ORIGINS", "cors_origins", _origins, "origins whose pages may call a REST API (CORS headers)"
    ),
    Variable(
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "initialization_type",
        _text,
        "how Lambda initialises this environment: on-demand, provisioned-concurrency or snap-start",
    ),
    Variable("AWS_LAMBDA_FUNCTION_NAME", "function_name", _text, "the function's name"),
    Variable("AWS_LAMBDA_LOG_FORMAT", "log_format", _log_format, "the log format: Text or JSON (LoggingConfig)"),
    Variable("AWS_LAMBDA_LOG_LEVEL", "log_level", _log_level, "JSON logs: the least severe level written"),
    Variable("POWERTOOLS_SERVICE_NAME", "service", _text, "the `service` of JSON log records"),
    Variable("LAMBDALITE_METRICS_NAMESPACE", "metrics_namespace", _namespace, "CloudWatch EMF metrics namespace"),
    Variable("LAMBDALITE_OUTPUT", "output", _s3_prefix, "where batch events' results go (s3://bucket/prefix)"),
    Variable("LAMBDALITE_TRIGGER", "trigger", _s3_prefix, "the S3 location whose new objects invoke the function"),
)


class Settings(NamedTuple):
    """The function's configuration; every field has the default an unset variable means."""

    model: str | None = None
    model_bucket: str | None = None
    model_key: str | None = None
    model_sha256: str | None = None
    task_root: Path | None = None
    response: ResponseShape = "djl"
    max_body_bytes: int = MAX_BODY_BYTES
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = MAX_PIXELS
    max_jpeg_scans: int = MAX_JPEG_SCANS
    max_decode_bytes: int | None = None  # None: derived from memory_mb once the model is loaded
    max_batch: int = MAX_BATCH
    threads: int | None = None
    memory_mb: int | None = None
    source_timeout: float = 20.0
    home: Path | None = None
    xdg_cache_home: Path | None = None
    cache_bytes: int = DEFAULT_CACHE_BYTES
    allow_private_urls: bool = False
    allow_url_networks: tuple[IPNetwork, ...] = ()
    url_connect_timeout: float = 3.0
    url_timeout: float = 10.0
    trust_code: bool = False
    cors_origins: tuple[str, ...] = ()  # the function adds CORS headers for these (behind a REST API)
    initialization_type: str | None = None
    function_name: str | None = None
    log_format: LogFormat = "text"
    log_level: int = LOG_LEVELS["INFO"]
    service: str = "lambdalite"
    metrics_namespace: str | None = None  # set: every log record carries its metrics (EMF)
    output: S3Prefix | None = None
    trigger: S3Prefix | None = None
    in_lambda: bool = False  # running as a Lambda function (or a local instance of one)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every variable of `env` (default: this process's environment) once.

        Raises one ConfigError naming each bad variable, its value and what is allowed."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        problems: list[str] = []
        for variable in VARIABLES:
            raw = env.get(variable.name)
            if raw is None or (raw.strip() == "" and variable.field not in ("trust_code", "allow_private_urls")):
                continue
            try:
                values[variable.field] = variable.parse(raw)
            except _Invalid as exc:
                shown = raw if len(raw) <= 80 else raw[:77] + "..."
                problems.append(f"{variable.name}={shown!r} is not allowed: {variable.name} must be {exc.allowed}")
        output, trigger = values.get("output"), values.get("trigger")
        if output is not None and trigger is not None and (loop := loop_error(output, trigger)):
            problems.append(loop)
        if problems:
            raise ConfigError("; ".join(problems))
        values["in_lambda"] = "AWS_LAMBDA_FUNCTION_NAME" in env and "AWS_LAMBDA_RUNTIME_API" in env
        values.update(overrides)
        return cls(**values)

    @property
    def snap_start(self) -> bool:
        """This init makes a SnapStart snapshot: environments are restored from it, not initialised."""
        return self.initialization_type == "snap-start"

    @property
    def cache_home(self) -> Path:
        """`LAMBDALITE_HOME`; in a function the temporary directory (the only writable place);
        else the user cache directory."""
        if self.home is not None:
            return self.home
        if self.in_lambda:
            import tempfile

            return Path(tempfile.gettempdir()) / "lambdalite"
        base = self.xdg_cache_home or Path.home() / ".cache"
        return base / "lambdalite"

    @property
    def cache(self) -> Cache:
        return Cache(self.cache_home, self.cache_bytes)


def xray_trace_header() -> str | None:
    """The invocation's X-Ray trace header, which the runtime client passes in `_X_AMZN_TRACE_ID`
    and changes before each invocation: the one value read from the environment per request
    (for the `xray_trace_id` of JSON log records), not a setting."""
    return os.environ.get("_X_AMZN_TRACE_ID")
