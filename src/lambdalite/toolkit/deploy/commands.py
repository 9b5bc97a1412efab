"""`lambdalite build`, `deploy`, `destroy` and `logs`: parse, call the deploy package, print.

The plan, the size report and the endpoint go to stdout; progress and CloudFormation events go
to stderr. boto3, the SAM translator and pip are imported only inside the commands.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from lambdalite.errors import UsageError

__all__ = ["api_key", "build", "deploy", "destroy", "format_event", "logs", "parse_since"]

F = TypeVar("F", bound=Callable[..., Any])
_STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _target_options(func: F) -> F:
    from lambdalite.toolkit.deploy.target import ARCHES, DEFAULT_PYTHON, RUNTIMES

    options = [
        click.option(
            "--arch", type=click.Choice(ARCHES), default="x86_64", show_default=True, help="CPU architecture."
        ),
        click.option(
            "--python",
            "python",
            type=click.Choice(list(RUNTIMES)),
            default=DEFAULT_PYTHON,
            show_default=True,
            help="Lambda Python runtime (3.11 runs on Amazon Linux 2, 3.12+ on Amazon Linux 2023).",
        ),
        click.option("--layer", is_flag=True, help="Put numpy, Pillow and the engine in a separate layer zip."),
        click.option(
            "--compile/--no-compile",
            "compile_",
            default=None,
            help="Precompile bytecode (faster cold starts); default: when pythonX.Y for the runtime is on PATH.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings_options(defaults: bool) -> Callable[[F], F]:
    """Function settings; for deploy they default to None (= what the build recorded)."""

    def default(value: Any) -> Any:
        return value if defaults else None

    def decorate(func: F) -> F:
        options = [
            click.option("--memory", type=int, default=default(2048), help="Memory in MB (CPU grows with it). [2048]"),
            click.option("--timeout", type=int, default=default(30), help="Function timeout in seconds. [30]"),
            click.option("--ephemeral-storage", type=int, default=default(512), help="/tmp size in MB. [512]"),
            click.option(
                "--api",
                type=click.Choice(["http", "rest", "none"]),
                default=None,
                help="Front door: HTTP API, REST API (binary media types set), or none. "
                "[rest with --auth api-key, else http]",
            ),
            click.option("--function-url/--no-function-url", default=default(False), help="Add a Function URL."),
            click.option(
                "--url-auth",
                type=click.Choice(["NONE", "AWS_IAM"]),
                default=None,
                help="Function URL auth: public (NONE) or SigV4 (AWS_IAM). [AWS_IAM unless --auth none]",
            ),
            click.option(
                "--auth",
                type=click.Choice(["api-key", "iam", "jwt", "none"]),
                default=default("api-key"),
                help="Who may call: an API key with a usage plan (REST API), SigV4 (iam), a JWT authorizer "
                "(HTTP API), or anyone (none). [api-key]",
            ),
            click.option(
                "--throttle",
                metavar="RATE,BURST",
                help="Requests per second and burst, on every route of the API (and the key's usage plan). [10,20]",
            ),
            click.option("--quota", metavar="N/PERIOD", help="api-key: requests per day, week or month. [10000/day]"),
            click.option("--jwt-issuer", metavar="URL", help="jwt: the token issuer (https://...)."),
            click.option(
                "--jwt-audience", multiple=True, metavar="AUD", help="jwt: an accepted audience (repeatable)."
            ),
            click.option(
                "--reserved-concurrency",
                type=click.IntRange(min=1),
                help="At most N instances at once (caps spend; unset: the account's limit).",
            ),
            click.option(
                "--cors-origin",
                "cors_origins",
                multiple=True,
                metavar="ORIGIN",
                help="An origin whose pages may call the API (repeatable; default: none, the page is same-origin).",
            ),
            click.option("--log-retention", type=int, default=default(14), help="Days to keep logs. [14]"),
            click.option(
                "--snapstart/--no-snapstart",
                default=default(False),
                help="SnapStart: publish a version (alias live) that Lambda snapshots after its init; "
                "zip, python3.12+, /tmp up to 512 MB. [off]",
            ),
            click.option(
                "--log-format",
                type=click.Choice(["JSON", "Text"]),
                default=default("JSON"),
                help="LoggingConfig: JSON (Powertools' keys, platform.* records, log levels) or Text. [JSON]",
            ),
            click.option(
                "--log-level",
                type=click.Choice(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]),
                default=default("INFO"),
                help="JSON logs: the application log level. [INFO]",
            ),
            click.option(
                "--metrics-namespace",
                default=default("lambdalite"),
                help="CloudWatch namespace of the function's EMF metrics; '' for none. [lambdalite]",
            ),
            click.option(
                "--trigger",
                metavar="S3://BUCKET/PREFIX",
                help="New objects under this prefix invoke the function (the stack creates the bucket).",
            ),
            click.option(
                "--results",
                metavar="S3://BUCKET/PREFIX",
                help="Where the function writes one JSON result per image (LAMBDALITE_OUTPUT).",
            ),
            click.option(
                "--queue/--no-queue",
                default=default(False),
                help="Send the trigger's notifications through an SQS queue with a dead-letter queue.",
            ),
            click.option("--batch-size", type=int, default=default(10), help="Messages per invoke (--queue). [10]"),
            click.option(
                "--batch-window", type=int, default=default(0), help="Seconds to gather a batch (--queue). [0]"
            ),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _aws_options(func: F) -> F:
    options = [
        click.option("--region", help="AWS region (default: AWS_REGION or your profile's)."),
        click.option("--profile", help="AWS profile (default: AWS_PROFILE or the default profile)."),
        click.option(
            "--endpoint-url",
            envvar="AWS_ENDPOINT_URL",
            help="Talk to this endpoint instead of AWS (LocalStack, moto); also AWS_ENDPOINT_URL.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_SETTINGS = (
    "memory",
    "timeout",
    "ephemeral_storage",
    "api",
    "function_url",
    "url_auth",
    "log_retention",
    "auth",
    "throttle",
    "quota",
    "jwt_issuer",
    "jwt_audience",
    "reserved_concurrency",
    "cors_origins",
    "snapstart",
    "log_format",
    "log_level",
    "metrics_namespace",
    "trigger",
    "results",
    "queue",
    "batch_size",
    "batch_window",
)
# Settings whose defaults follow from --auth: a new --auth on deploy re-derives them.
_DERIVED_FROM_AUTH = ("api", "url_auth", "quota", "jwt_issuer", "jwt_audience")


def _settings(values: dict[str, Any], base: Any = None) -> Any:
    from lambdalite.toolkit.access import Quota, Throttle
    from lambdalite.toolkit.deploy.template import Settings

    given = {name: values[name] for name in _SETTINGS if values.get(name) not in (None, ())}
    if isinstance(given.get("throttle"), str):
        given["throttle"] = Throttle.parse(given["throttle"])
    if isinstance(given.get("quota"), str):
        given["quota"] = Quota.parse(given["quota"])
    merged = base.to_dict() if base is not None else {}
    if "auth" in given and given["auth"] != merged.get("auth"):
        for name in _DERIVED_FROM_AUTH:
            merged.pop(name, None)
    merged.update(given)
    return Settings.from_dict(merged)


def _echo_notes(notes: list[str], settings: Any = None, arch: str = "x86_64") -> None:
    if settings is not None:
        from lambdalite.toolkit.deploy import security

        for warning in security.warnings(settings, arch):
            click.echo(f"warning: {warning}", err=True)
        notes = notes + security.notes(settings)
    for note in notes:
        click.echo(f"note: {note}", err=True)


@click.command()
@click.argument("model")
@_target_options
@click.option("--format", "format_", type=click.Choice(["zip", "image"]), default="zip", show_default=True)
@_settings_options(defaults=True)
@click.option(
    "-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("dist"), show_default=True
)
def build(
    model: str, arch: str, python: str, layer: bool, compile_: bool | None, format_: str, output: Path, **settings: Any
) -> None:
    """Build MODEL into a Lambda artifact and an AWS SAM template.

    MODEL is any model reference (zoo name, bundle directory, .tar.gz, s3://bucket/key: an s3
    model is not shipped, the function reads it at cold start). Writes function.zip (and
    layer.zip with --layer) or, with --format image, a Dockerfile and its context; plus
    template.yaml. Prints the size report against Lambda's limits.
    """
    from lambdalite.core.progress import Stderr
    from lambdalite.toolkit.deploy.build import BuildOptions, build_artifact, check_limits, size_report
    from lambdalite.toolkit.deploy.image import build_command
    from lambdalite.toolkit.deploy.target import Target

    options = BuildOptions(
        target=Target(python, arch),  # type: ignore[arg-type]
        format=format_,  # type: ignore[arg-type]
        layer=layer,
        compile=compile_,
        settings=_settings(settings),
    )
    if layer and format_ == "image":
        raise UsageError("--layer is for zip builds; an image carries its dependencies inside")
    if options.settings.snapstart:
        from lambdalite.toolkit.deploy.template import check_snapstart

        check_snapstart(image=format_ == "image", runtime=options.target.runtime)
    result = build_artifact(model, output, options, Stderr())
    click.echo("\n".join(size_report(result)))
    _echo_notes(options.settings.notes(), options.settings, arch)
    check_limits(result)
    written = [a.path for a in result.artifacts] + ([result.image_context] if result.image_context else [])
    click.echo(f"wrote {', '.join(str(p) for p in [*written, result.template])}")
    if result.image_context is not None:
        click.echo(f"next: cd {result.image_context} && {build_command(options.target, f'{result.model_name}:latest')}")
        click.echo("      then push it to ECR and `sam deploy --guided` (or set ImageUri in the template)")
    else:
        click.echo(f"next: lambdalite deploy {output} --stack NAME")


def _stack_name(stack: str) -> str:
    if not _STACK_NAME.match(stack):
        raise UsageError(
            f"stack name {stack!r} must start with a letter and hold only letters, digits and hyphens, "
            f"at most 64 characters (it also names the function)"
        )
    return stack


@click.command()
@click.argument("model")
@click.option("--stack", required=True, help="CloudFormation stack name (also the function's name).")
@click.option("--bucket", help="S3 bucket for the artifacts (default: lambdalite-ACCOUNT-REGION).")
@click.option("--create-bucket", is_flag=True, help="Create the bucket if it does not exist.")
@click.option("--dry-run", is_flag=True, help="Build and print the plan; change nothing in AWS.")
@click.option(
    "--build-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to build (default: .lambdalite/STACK).",
)
@_target_options
@_settings_options(defaults=False)
@_aws_options
def deploy(
    model: str,
    stack: str,
    bucket: str | None,
    create_bucket: bool,
    dry_run: bool,
    build_dir: Path | None,
    arch: str,
    python: str,
    layer: bool,
    compile_: bool | None,
    region: str | None,
    profile: str | None,
    endpoint_url: str | None,
    **settings: Any,
) -> None:
    """Deploy MODEL as a Lambda function behind an API, with CloudFormation.

    MODEL is a model reference (built first) or a directory written by `lambdalite build`.
    Prints the plan, uploads the artifact to S3, creates or updates the stack through a change
    set, waits, and prints the endpoint.
    """
    import json

    from lambdalite.core.progress import Stderr
    from lambdalite.toolkit.deploy.apply import Aws
    from lambdalite.toolkit.deploy.build import (
        BUILD_RECORD,
        BuildOptions,
        build_artifact,
        check_limits,
        read_build,
        size_report,
    )
    from lambdalite.toolkit.deploy.plan import DeployStack, describe, plan_deploy
    from lambdalite.toolkit.deploy.target import Target

    stack = _stack_name(stack)
    progress = Stderr()
    aws = Aws.connect(region=region, endpoint_url=endpoint_url, profile=profile)
    if (Path(model) / BUILD_RECORD).is_file():
        built = read_build(Path(model))
    else:
        options = BuildOptions(
            target=Target(python, arch),  # type: ignore[arg-type]
            layer=layer,
            compile=compile_,
            settings=_settings(settings),
        )
        built = build_artifact(model, build_dir or Path(".lambdalite") / stack, options, progress)
        click.echo("\n".join(size_report(built)))
    check_limits(built)
    chosen = _settings(settings, built.options.settings)
    observed = aws.observe(stack, bucket)
    steps = plan_deploy(built, observed, settings=chosen, create_bucket=create_bucket)
    from lambdalite.toolkit.deploy.security import front_door

    click.echo(f"Plan for stack {stack} in {observed.region} (account {observed.account}):")
    click.echo("\n".join(describe(steps)))
    click.echo("\n".join(f"  {line}" for line in front_door(chosen, built.options.target.arch)))
    _echo_notes(chosen.notes(), chosen, built.options.target.arch)
    for step in steps:
        if isinstance(step, DeployStack):
            expanded = built.out / "template.cfn.json"
            expanded.write_text(json.dumps(step.template, indent=2, sort_keys=True) + "\n")
            click.echo(f"  (plain CloudFormation for this deploy: {expanded})")
    if dry_run:
        click.echo("dry run: nothing was changed")
        return
    created = any(isinstance(step, DeployStack) and step.action == "CREATE" for step in steps)
    aws.execute(steps, progress)
    info = aws.stack_info(stack)
    click.echo(f"Deployed stack {stack}:")
    for key in ("Endpoint", "FunctionUrl", "FunctionName", "LogGroupName"):
        if key in info:
            click.echo(f"  {key:<13} {info[key]}")
    header = ""
    if chosen.auth == "api-key":
        header = " -H 'x-api-key: KEY'"
        value = aws.api_key(stack)
        if value is None:
            click.echo("  API key       (the stack reports no API key resource)")
        elif created:
            # Shown once, here (stdout, never a log or the template); `lambdalite api-key` reads it again.
            click.echo(f"  API key       {value}")
            click.echo(f"  (shown once; read it again with: lambdalite api-key --stack {stack})")
        else:
            click.echo(f"  API key       unchanged (lambdalite api-key --stack {stack})")
    url = info.get("Endpoint") or info.get("FunctionUrl")
    if url:
        click.echo(f"try: curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg'{header} {url}")
    else:
        click.echo("  (the stack reports no endpoint URL)")


@click.command("api-key")
@click.option("--stack", required=True, help="The stack deploy created (with --auth api-key).")
@_aws_options
def api_key(stack: str, region: str | None, profile: str | None, endpoint_url: str | None) -> None:
    """Print the API key of a stack deployed with --auth api-key (its value only, for scripts).

    curl -H "x-api-key: $(lambdalite api-key --stack cats)" ...
    """
    from lambdalite.errors import DeployError
    from lambdalite.toolkit.deploy.apply import Aws

    aws = Aws.connect(region=region, endpoint_url=endpoint_url, profile=profile)
    key = aws.api_key(_stack_name(stack))
    if key is None:
        raise DeployError(f"stack {stack} has no API key: it was not deployed with --auth api-key")
    click.echo(key)


@click.command()
@click.option("--stack", required=True, help="The stack deploy created.")
@click.option("--bucket", help="Where its artifacts are, if the stack is already gone.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_aws_options
def destroy(
    stack: str, bucket: str | None, yes: bool, region: str | None, profile: str | None, endpoint_url: str | None
) -> None:
    """Remove a deployed stack, its uploaded artifacts, and the bucket if deploy created it."""
    from lambdalite.core.progress import Stderr
    from lambdalite.errors import DeployError
    from lambdalite.toolkit.deploy.apply import Aws
    from lambdalite.toolkit.deploy.plan import describe, plan_destroy

    aws = Aws.connect(region=region, endpoint_url=endpoint_url, profile=profile)
    observed = aws.observe(_stack_name(stack), bucket)
    steps = plan_destroy(observed)
    if not steps:
        raise DeployError(f"nothing to destroy: no stack {stack} in {observed.region} and no artifacts of it")
    click.echo(f"Destroy stack {stack} in {observed.region} (account {observed.account}):")
    click.echo("\n".join(describe(steps)))
    if observed.bucket_exists and observed.other_objects:
        click.echo(f"  (bucket {observed.bucket} is kept: it holds other objects)")
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("pass --yes to destroy without a prompt")
        click.confirm("Destroy all of this?", abort=True)
    aws.execute(steps, Stderr())
    click.echo(f"destroyed {stack}")


def parse_since(text: str, now: float | None = None) -> int:
    """`10m`, `2h`, `1d`, `30s`, `1w` ago, or an ISO 8601 time, as epoch milliseconds."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if m:
        return int((now - int(m[1]) * _UNITS[m[2]]) * 1000)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since takes 10m, 2h, 1d or an ISO time like 2026-01-31T12:00, not {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def format_event(event: dict[str, Any]) -> str:
    """One log event: time (UTC), the instance (end of the log stream name), the message."""
    when = datetime.fromtimestamp(event["timestamp"] / 1000, tz=UTC)
    stream = event.get("logStreamName", "")
    instance = stream.rsplit("]", 1)[-1][:8] if "]" in stream else stream[-8:]
    return f"{when.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z {instance:<8} {event['message'].rstrip()}"


@click.command()
@click.option("--stack", required=True, help="The stack deploy created.")
@click.option("--tail", "-t", is_flag=True, help="Keep printing new events until interrupted.")
@click.option("--since", default="10m", show_default=True, help="How far back: 30s, 10m, 2h, 1d, or an ISO time.")
@click.option("--filter", "pattern", help="A CloudWatch Logs filter pattern, e.g. ERROR or '{ $.status = 500 }'.")
@_aws_options
def logs(
    stack: str,
    tail: bool,
    since: str,
    pattern: str | None,
    region: str | None,
    profile: str | None,
    endpoint_url: str | None,
) -> None:
    """Print the function's logs (CloudWatch Logs), optionally following them."""
    from lambdalite.toolkit.deploy.apply import Aws

    start_ms = parse_since(since)
    aws = Aws.connect(region=region, endpoint_url=endpoint_url, profile=profile)
    group = aws.stack_info(_stack_name(stack))["LogGroupName"]

    def emit(event: dict[str, Any]) -> None:
        click.echo(format_event(event))

    aws.follow(group, start_ms=start_ms, pattern=pattern, emit=emit, tail=tail)
