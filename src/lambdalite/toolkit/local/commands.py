"""`lambdalite serve` (the local Lambda) and `lambdalite invoke` (a client for it, or for any Invoke API).

    lambdalite serve efficientnet-lite0 --memory 1024 --timeout 30
    curl -XPOST localhost:8080/2015-03-31/functions/function/invocations -d '{"url": "https://..."}'
    lambdalite invoke --image cat.jpg --log-tail

Both are thin: the work is in `server.py` (the emulator) and `client.py` (plain HTTP).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

import click

from lambdalite.errors import EmulatorError, UsageError

__all__ = [
    "DEFAULT_HANDLER",
    "invoke",
    "serve",
]

DEFAULT_HANDLER = "lambdalite.handler.handler"
_STATUS_EVERY_S = 10.0  # without a terminal, one summary line at most this often


@click.command()
@click.argument("model", required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--function-name", help="The function's name (default: the model's name, or `function`).")
@click.option("--handler", help=f"module.function to run (default: {DEFAULT_HANDLER}).")
@click.option(
    "--code-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The function's code, read-only to it (LAMBDA_TASK_ROOT; default: the model bundle, or .).",
)
@click.option("--memory", default=1024, show_default=True, type=click.IntRange(128, 10240), help="Memory size, MB.")
@click.option("--timeout", default=30, show_default=True, type=click.IntRange(1, 900), help="Function timeout, s.")
@click.option("--max-concurrency", type=click.IntRange(min=1), help="Most instances at once [default: CPU count].")
@click.option(
    "--idle-timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Stop instances idle this long, s.",
)
@click.option(
    "--ephemeral-storage", default=512, show_default=True, type=click.IntRange(512, 10240), help="/tmp size, MB."
)
@click.option("--env", "env_pairs", multiple=True, metavar="KEY=VALUE", help="An environment variable (repeatable).")
@click.option(
    "--env-vars",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help='SAM-style env.json: {"FunctionLogicalId": {...}} or {"Parameters": {...}}.',
)
@click.option(
    "--env-vars-section",
    metavar="ID",
    help="Which function section of the --env-vars file applies (default: the one named like the function).",
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A directory with a layer's content (python/...), read-only at /opt (repeatable, in order).",
)
@click.option("--queue", is_flag=True, help="Queue invocations when every instance is busy (default: 429).")
@click.option(
    "--api",
    type=click.Choice(["http", "rest"]),
    default=None,
    help="The API Gateway in front: an HTTP API (payload 2.0) or a REST API (payload 1.0). "
    "[rest with --auth api-key, else http]",
)
@click.option(
    "--binary-media-types",
    default="",
    metavar="TYPES",
    help="REST API only: comma-separated binary media types, e.g. 'image/*,multipart/form-data' "
    "(without them binary uploads arrive as mangled text, as on AWS).",
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Close a connection with 408 when a request's line and headers take longer, s.",
)
@click.option(
    "--idle-connection-timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Close a connection that sends nothing this long between requests (or mid-body), s.",
)
@click.option(
    "--max-connections", default=512, show_default=True, type=click.IntRange(min=1), help="Open connections at most."
)
@click.option(
    "--auth",
    type=click.Choice(["none", "api-key", "iam", "jwt"]),
    default="none",
    show_default=True,
    help="Who may call the API, enforced as API Gateway does (see `lambdalite build --auth`).",
)
@click.option("--api-key", "api_key", metavar="VALUE", help="api-key: the key (default: a new one, printed).")
@click.option("--throttle", metavar="RATE,BURST", help="Requests/s and burst before 429. [api-key: 10,20; else off]")
@click.option("--quota", metavar="N/PERIOD", help="api-key: requests per day, week or month. [10000/day]")
@click.option("--jwt-issuer", metavar="URL", help="jwt: the issuer tokens must name (iss).")
@click.option("--jwt-audience", multiple=True, metavar="AUD", help="jwt: an accepted audience (repeatable).")
@click.option("--jwks", metavar="FILE|URL", help="jwt: the issuer's public keys (a JWKS file or URL).")
@click.option(
    "--invoke-auth",
    type=click.Choice(["none", "iam"]),
    default="none",
    show_default=True,
    help="iam: the Invoke API requires SigV4 with your AWS credentials, as Lambda does.",
)
@click.option(
    "--snapstart",
    is_flag=True,
    help="SnapStart: run the init once into a snapshot (version 1, alias live); every instance is restored "
    "from it (a fork here) and runs the after-restore hooks before its first request.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"], case_sensitive=False),
    default="text",
    show_default=True,
    help="Lambda's log format (LoggingConfig): text (START/END/REPORT) or json (platform.* records; "
    "the function gets AWS_LAMBDA_LOG_FORMAT=JSON).",
)
@click.option(
    "--log-level",
    type=click.Choice(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="JSON format: the application log level (AWS_LAMBDA_LOG_LEVEL).",
)
@click.option(
    "--system-log-level",
    type=click.Choice(["DEBUG", "INFO", "WARN"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="JSON format: the platform's log level (DEBUG adds runtimeDone, initRuntimeDone, initReport).",
)
@click.option(
    "--cpu",
    type=click.Choice(["lambda", "host"]),
    default="lambda",
    show_default=True,
    help="lambda: each instance gets the CPU time Lambda gives --memory (1 vCPU per 1,769 MB); "
    "host: as much as the machine gives.",
)
@click.option("--init-budget", default=10.0, hidden=True, type=click.FloatRange(min=0.1))
@click.option("--restore-budget", default=10.0, hidden=True, type=click.FloatRange(min=0.1))
def serve(
    model: str | None,
    host: str,
    port: int,
    function_name: str | None,
    handler: str | None,
    code_dir: Path | None,
    memory: int,
    timeout: int,
    max_concurrency: int | None,
    idle_timeout: float,
    ephemeral_storage: int,
    env_pairs: tuple[str, ...],
    env_vars: Path | None,
    env_vars_section: str | None,
    layers: tuple[Path, ...],
    queue: bool,
    api: str | None,
    binary_media_types: str,
    header_timeout: float,
    idle_connection_timeout: float,
    max_connections: int,
    auth: str,
    api_key: str | None,
    throttle: str | None,
    quota: str | None,
    jwt_issuer: str | None,
    jwt_audience: tuple[str, ...],
    jwks: str | None,
    invoke_auth: str,
    snapstart: bool,
    log_format: str,
    log_level: str,
    system_log_level: str,
    cpu: str,
    init_budget: float,
    restore_budget: float,
) -> None:
    """Run MODEL as a local Lambda function: the Invoke API on --port, instances on demand.

    Each instance is a separate process running the official runtime client (awslambdaric)
    against its own Runtime API, with Lambda's limits: the timeout, the memory size, a private
    /tmp of --ephemeral-storage MB and a read-only filesystem. boto3, the AWS CLI and curl work
    unchanged (endpoint http://HOST:PORT; the function is its name, its ARN or `function`).
    """
    from lambdalite.core.progress import Stderr
    from lambdalite.toolkit.local.environment import check_user_environment, load_env_file, parse_env_pairs
    from lambdalite.toolkit.local.messages import FunctionConfig

    if not hasattr(os, "pidfd_open") or not sys.platform.startswith("linux"):
        raise EmulatorError(
            "lambdalite serve needs Linux 5.3 or later (pidfds, mount namespaces, Landlock: Lambda's own "
            "building blocks); use `lambdalite invoke-local` here, or run serve in a Linux container"
        )
    if model is None and handler is None:
        raise UsageError("give a MODEL to serve, or --handler module.function (with --code-dir) for your own code")
    handler = handler or DEFAULT_HANDLER
    if snapstart:
        from lambdalite.toolkit.deploy.template import check_snapstart

        check_snapstart(ephemeral_storage=ephemeral_storage)
    if "." not in handler.strip("."):
        raise UsageError(f"--handler expects module.function, got {handler!r}")
    model_dir: Path | None = None
    name = function_name
    if model is not None:
        from lambdalite.core.bundle import open_bundle
        from lambdalite.toolkit.zoo import resolve_model as resolve

        model_dir = resolve(model, progress=Stderr())
        name = name or _function_name(open_bundle(model_dir).manifest.name)
    name = name or "function"
    if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
        raise UsageError(f"function name {name!r} must be 1-64 letters, digits, '-' or '_'")
    code = code_dir or (model_dir if handler == DEFAULT_HANDLER and model_dir is not None else Path.cwd())
    user_env = parse_env_pairs(env_pairs)
    if env_vars is not None:
        user_env = {**load_env_file(env_vars, name, env_vars_section), **user_env}
    elif env_vars_section is not None:
        raise UsageError("--env-vars-section picks a section of an --env-vars file: give --env-vars too")
    check_user_environment(user_env)
    rules, region = _rules(auth, api, api_key, throttle, quota, jwt_issuer, jwt_audience, jwks, invoke_auth)
    api = rules.api
    config = FunctionConfig(
        name=name,
        handler=handler,
        code_dir=str(code.resolve()),
        memory_mb=memory,
        timeout_s=float(timeout),
        ephemeral_mb=ephemeral_storage,
        environment=user_env,
        model_dir=str(model_dir) if model_dir is not None else None,
        layers=tuple(str(layer.resolve()) for layer in layers),
        max_concurrency=max_concurrency or os.cpu_count() or 1,
        idle_timeout_s=idle_timeout,
        queue=queue,
        init_budget_s=init_budget,
        snapstart=snapstart,
        restore_budget_s=restore_budget,
        version="1" if snapstart else "$LATEST",  # SnapStart applies to published versions only
        alias="live" if snapstart else None,
        log_format="JSON" if log_format.lower() == "json" else "Text",
        application_log_level=log_level.upper(),
        system_log_level=system_log_level.upper(),
        cpu_share=cpu == "lambda",
        architecture=_architecture(),
    )
    if region:  # the region SigV4 scopes are checked against: ARNs name it too
        config.region = region
    if binary_media_types and api != "rest":
        raise UsageError("--binary-media-types applies to --api rest (HTTP APIs base64 every binary body)")
    from lambdalite.toolkit.local.gateway import GatewayConfig

    if api == "rest" and not binary_media_types and auth == "api-key":
        # A REST API that `lambdalite build` writes: the same binary media types as deployed.
        from lambdalite.toolkit.deploy.template import BINARY_MEDIA_TYPES

        binary_media_types = ",".join(t.replace("~1", "/") for t in BINARY_MEDIA_TYPES)
    gateway = GatewayConfig(api, binary_media_types.split(","))  # type: ignore[arg-type]
    show_key = auth == "api-key" and api_key is None  # a key made here is printed once; a given one never
    from lambdalite.toolkit.local.http import PUBLIC_LIMITS

    limits = PUBLIC_LIMITS._replace(
        header_timeout_s=header_timeout, idle_timeout_s=idle_connection_timeout, max_connections=max_connections
    )
    asyncio.run(_serve(config, host, port, gateway, limits, rules, invoke_auth, show_key))


def _rules(
    auth: str,
    api: str | None,
    api_key: str | None,
    throttle: str | None,
    quota: str | None,
    jwt_issuer: str | None,
    jwt_audience: tuple[str, ...],
    jwks: str | None,
    invoke_auth: str,
) -> tuple[Any, str | None]:
    """The front door's rules from serve's flags, checked as `lambdalite build` checks them."""
    import secrets

    from lambdalite.toolkit.access import DEFAULT_QUOTA, DEFAULT_THROTTLE, Quota, Throttle
    from lambdalite.toolkit.local.guard import Rules, load_credentials

    api = api or ("rest" if auth == "api-key" else "http")
    if auth == "api-key" and api != "rest":
        raise UsageError("--auth api-key is a REST API feature (API keys, usage plans): drop --api http")
    if auth == "jwt" and api != "http":
        raise UsageError("--auth jwt is an HTTP API JWT authorizer: use --api http")
    if auth != "api-key" and (api_key or quota):
        raise UsageError("--api-key and --quota go with --auth api-key")
    if auth != "jwt" and (jwt_issuer or jwt_audience or jwks):
        raise UsageError("--jwt-issuer, --jwt-audience and --jwks go with --auth jwt")
    credentials: dict[str, Any] = {}
    region = None
    if auth == "iam" or invoke_auth == "iam":
        credentials, region = load_credentials()
    authorizer = None
    if auth == "jwt":
        if not (jwt_issuer and jwt_audience and jwks):
            raise UsageError("--auth jwt needs --jwt-issuer, --jwt-audience and --jwks (a JWKS file or URL)")
        from lambdalite.toolkit.local.tokens import JwksSource, JwtAuthorizer

        authorizer = JwtAuthorizer(jwt_issuer, jwt_audience, JwksSource(jwks))
    limit = Throttle.parse(throttle) if throttle else (DEFAULT_THROTTLE if auth == "api-key" else None)
    rules = Rules(
        auth=auth,  # type: ignore[arg-type]
        api=api,  # type: ignore[arg-type]
        api_key=(api_key or secrets.token_urlsafe(30)) if auth == "api-key" else None,
        throttle=limit,
        quota=(Quota.parse(quota) if quota else DEFAULT_QUOTA) if auth == "api-key" else None,
        credentials=credentials,
        region=region or "us-east-1",
        jwt=authorizer,
    )
    return rules, region


def _gateway_refusal(exc: BaseException) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """What API Gateway answers when Lambda refuses the invocation (throttled, too large)."""
    from lambdalite.errors import InvokeRefusedError

    if not isinstance(exc, InvokeRefusedError):
        return None
    message = {429: "Too Many Requests", 413: "Request Too Long"}.get(exc.status, "Internal Server Error")
    status = exc.status if exc.status in (413, 429) else 500
    return status, [("Content-Type", "application/json")], json.dumps({"message": message}).encode()


def _architecture() -> str:
    import platform

    return "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"


def _function_name(bundle_name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]+", "-", bundle_name).strip("-")[:64] or "function"


async def _serve(
    config: Any,
    host: str,
    port: int,
    gateway: Any,
    limits: Any,
    rules: Any,
    invoke_auth: str,
    show_key: bool = False,
) -> None:
    from lambdalite.toolkit.local import dashboard
    from lambdalite.toolkit.local.control import Control
    from lambdalite.toolkit.local.gateway import FrontDoor
    from lambdalite.toolkit.local.guard import Guard, InvokeAuth
    from lambdalite.toolkit.local.metrics import Telemetry
    from lambdalite.toolkit.local.server import LambdaServer

    console = _Console(sys.stdout, sys.stderr)
    server = LambdaServer(config, log=console.line, http_limits=limits)
    if config.snapstart:
        console.err.write("lambdalite serve: SnapStart: running the init once, into the snapshot...\n")
        console.err.flush()
    server.fallback = FrontDoor(gateway, server.invoke, refused=_gateway_refusal)
    if rules.auth != "none" or rules.throttle is not None:
        server.fallback = Guard(rules, server.fallback)
    if invoke_auth == "iam":
        server.invoke_auth = InvokeAuth(rules.credentials, rules.region)
    Telemetry.attach(server)
    dashboard.attach(server)
    Control.attach(server)
    try:
        bound = await server.start(host, port)
    except OSError as exc:
        await server.close()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise EmulatorError(f"cannot listen on {host}:{port}: {reason}") from exc
    except EmulatorError:
        await server.close()
        raise
    console.banner(server, host, bound, gateway)
    console.front_door(rules, invoke_auth, show_key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ticker = loop.create_task(_tick(console, server))
    try:
        await stop.wait()
    finally:
        ticker.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        console.clear()
        await server.close()
        console.goodbye(server)


async def _tick(console: _Console, server: Any) -> None:
    while True:
        await asyncio.sleep(0.5 if console.tty else _STATUS_EVERY_S)
        console.status(server.summary())


class _Console:
    """Log lines on stdout; a live summary on stderr (redrawn in place on a terminal)."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.tty = err.isatty()
        self.shown = ""
        self.last: Any = None
        self.flush_pending = False
        self.drawn = False  # the status line is on screen

    def line(self, text: str) -> None:
        self.clear()
        # awslambdaric joins the lines of one error record with \r (CloudWatch keeps it whole).
        self.out.write(text.replace("\r", "\n") + "\n")
        if not self.flush_pending:  # one flush per loop iteration, after the answer went out
            self.flush_pending = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.flush_pending = False
        self.out.flush()
        if self.tty and self.shown and not self.drawn:
            self.err.write(self.shown)
            self.err.flush()
            self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            self.err.write("\r\033[K")
            self.err.flush()
            self.drawn = False

    def status(self, summary: Any) -> None:
        if summary == self.last:
            return
        self.last = summary
        text = _status_text(summary)
        if self.tty:
            self.out.flush()  # log lines first, then the status line under them
            self.shown = text
            self.err.write("\r\033[K" + text)
            self.drawn = True
        else:
            self.err.write(text + "\n")
        self.err.flush()

    def banner(self, server: Any, host: str, port: int, gateway: Any) -> None:
        c = server.config
        caps = server.caps
        model = f" (model {c.model_dir})" if c.model_dir else ""
        lines = [
            f"lambdalite serve: function {c.name}{model}",
            f"  handler     {c.handler}  (code {c.code_dir}, read-only)",
            f"  limits      {c.memory_mb} MB, {c.timeout_s:g} s timeout, /tmp {c.ephemeral_mb} MB, "
            f"up to {c.max_concurrency} instance{'s' if c.max_concurrency != 1 else ''}"
            f"{', queued' if c.queue else ''}",
            f"  Invoke API  http://{host}:{port}/2015-03-31/functions/{c.name}/invocations  (or .../function/...)",
        ]
        kind = (
            "HTTP API, payload 2.0"
            if gateway.api == "http"
            else ("REST API, payload 1.0, binary media types: " + (", ".join(gateway.binary_media_types) or "none"))
        )
        lines.append(f"  API Gateway http://{host}:{port}/  ({kind}; the page at /, POST /predict)")
        if c.snapstart and server.snapshot is not None:
            lines.append(
                f"  snapstart   init ran once ({server.snapshot.init_ms:.0f} ms) into the snapshot of version "
                f"{c.version} (alias {c.alias}); every instance is restored from it"
            )
        lines.append(f"  dashboard   http://{host}:{port}/_lambdalite/   (Prometheus: GET /metrics)")
        cpu = (
            f"{c.memory_mb / 1769:.2f} vCPU per instance (1 per 1,769 MB, enforced)"
            if c.cpu_share
            else "the host's (--cpu host)"
        )
        lines.append(f"  CPU         {cpu}; logs {c.log_format}")
        if caps.mount:
            lines.append(
                f"  sandbox     private tmpfs /tmp, read-only filesystem, Landlock ABI {caps.landlock or 'missing'}"
            )
        elif caps.landlock:
            lines.append(
                f"  sandbox     warning: no mount namespace ({caps.note or 'needs root'}): TMPDIR is a private "
                "directory with a per-file quota; Landlock keeps everything else read-only"
            )
        else:
            lines.append("  sandbox     warning: neither mount namespaces nor Landlock: the code directory is writable")
        self.err.write("\n".join(lines) + "\n")
        self.err.flush()

    def front_door(self, rules: Any, invoke_auth: str, show_key: bool) -> None:
        parts = [f"auth {rules.auth}"]
        if rules.auth == "api-key":
            parts.append(f"x-api-key: {rules.api_key if show_key else '(the --api-key given)'}")
        elif rules.auth == "iam":
            parts.append(f"SigV4 for execute-api in {rules.region}, with your AWS credentials")
        elif rules.auth == "jwt":
            parts.append(f"Bearer tokens from {rules.jwt.issuer} for {', '.join(rules.jwt.audiences)}")
        if rules.throttle is not None:
            parts.append(f"throttle {rules.throttle}")
        if rules.quota is not None:
            parts.append(f"quota {rules.quota}")
        lines = [f"  front door  {'; '.join(parts)}"]
        if invoke_auth == "iam":
            lines.append(f"  Invoke API  requires SigV4 for lambda in {rules.region} (your AWS credentials)")
        self.err.write("\n".join(lines) + "\n")
        self.err.flush()

    def goodbye(self, server: Any) -> None:
        s = server.summary()
        lines = [f"lambdalite: stopped. {_status_text(s)}"]
        if s.invocations:
            cost = server.cost()
            lines.append(
                f"  cost estimate: ${cost.total_usd:.2f} per million requests at {cost.memory_mb} MB and "
                f"{cost.mean_billed_ms:.1f} ms billed on average (${cost.requests_usd:.2f} requests + "
                f"${cost.compute_usd:.2f} compute; x86_64, us-east-1, before the free tier)"
            )
            cold = server.cold_start_cost()
            if server.config.snapstart:
                lines.extend(_snapstart_cost_lines(server))
            elif cold is not None:
                lines.append(
                    f"  each cold start adds {cold[0]:.0f} ms of billed init "
                    f"(${cold[1] * 1e6:.2f} per million cold starts)"
                )
        self.err.write("\n".join(lines) + "\n")
        self.err.flush()


def _snapstart_cost_lines(server: Any) -> list[str]:
    from lambdalite.toolkit.local.protocol import snapstart_cost

    price = snapstart_cost(server.config.memory_mb)
    lines = [
        f"  SnapStart adds ${price.cache_usd_per_hour:.4f} per hour to keep the snapshot cached (each published "
        f"version; at least 3 hours: ${price.minimum_cache_usd:.4f}) and ${price.restore_usd * 1e6:.2f} per million "
        f"restores at {server.config.memory_mb} MB"
    ]
    if server.restores:
        mean = sum(server.restores) / len(server.restores)
        lines.append(
            f"  {len(server.restores)} restore(s) here, {mean:.0f} ms billed on average "
            "(Billed Restore Duration, part of Billed Duration); no init is billed per instance"
        )
    return lines


def _status_text(s: Any) -> str:
    p50 = f"{s.p50_ms:.1f}" if s.p50_ms is not None else "-"
    p99 = f"{s.p99_ms:.1f}" if s.p99_ms is not None else "-"
    return (
        f"instances {s.instances} ({s.warm} warm, {s.busy} busy) | invocations {s.invocations} | "
        f"cold starts {s.cold_starts} | errors {s.errors} | throttled {s.throttles} | p50 {p50} ms | p99 {p99} ms"
    )


@click.command()
@click.option("--endpoint", default="http://127.0.0.1:8080", show_default=True, help="The Invoke API's base URL.")
@click.option("--function", "function_name", default="function", show_default=True, help="Name or ARN.")
@click.option("--payload", help="JSON, or @FILE to read it from a file.")
@click.option("--image", type=click.Path(dir_okay=False, exists=True, path_type=Path), help='Send {"image": base64}.')
@click.option(
    "--invocation-type",
    type=click.Choice(["RequestResponse", "Event", "DryRun"]),
    default="RequestResponse",
    show_default=True,
)
@click.option("--log-tail", is_flag=True, help="Print the invocation's log (the last 4 KB) on stderr.")
@click.option("--timeout", default=900.0, show_default=True, type=click.FloatRange(min=0.1), help="Seconds to wait.")
def invoke(
    endpoint: str,
    function_name: str,
    payload: str | None,
    image: Path | None,
    invocation_type: str,
    log_tail: bool,
    timeout: float,
) -> None:
    """Invoke a function and print its response, like `aws lambda invoke`.

    The response payload goes to stdout; the metadata (StatusCode, FunctionError, ExecutedVersion)
    and, with --log-tail, the log go to stderr. A function error still exits 0, as with the AWS CLI.
    """
    from lambdalite.toolkit.local.client import invoke_http

    if payload is not None and image is not None:
        raise UsageError("give --payload or --image, not both")
    body = _payload(payload, image)
    answer = invoke_http(endpoint, function_name, body, invocation_type, log_tail, timeout)
    meta: dict[str, Any] = {"StatusCode": answer.status}
    if answer.function_error:
        meta["FunctionError"] = answer.function_error
    if answer.log_result:
        meta["LogResult"] = answer.log_result
    if answer.executed_version:
        meta["ExecutedVersion"] = answer.executed_version
    if answer.payload:
        click.echo(_pretty(answer.payload))
    click.echo(json.dumps({k: v for k, v in meta.items() if k != "LogResult"}, indent=4), err=True)
    if log_tail and answer.log_result:
        click.echo(base64.b64decode(answer.log_result).decode("utf-8", "replace").replace("\r", "\n"), err=True)


def _payload(payload: str | None, image: Path | None) -> bytes:
    if image is not None:
        try:
            data = image.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {image}: {exc.strerror}") from exc
        return json.dumps({"image": base64.b64encode(data).decode()}).encode()
    if payload is None:
        return b"{}"
    if payload.startswith("@"):
        path = Path(payload[1:])
        try:
            return path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    return payload.encode()


def _pretty(payload: bytes) -> str:
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return payload.decode("utf-8", "replace")
