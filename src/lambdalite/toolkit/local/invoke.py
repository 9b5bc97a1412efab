"""`lambdalite invoke-local MODEL EVENT.json`: one event through the handler, in this process.

Like `sam local invoke -e event.json`, without a container: the function's logs go to stderr,
the response (or Lambda's error envelope) to stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click

from lambdalite.errors import LambdaliteError, UsageError

__all__ = ["LocalContext", "invoke_local"]


class LocalContext:
    """A LambdaContext for in-process invokes, with Lambda's names and a real deadline."""

    def __init__(self, function_name: str = "lambdalite-local", memory_mb: int = 1024, timeout_s: float = 30.0) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.memory_limit_in_mb = str(memory_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _read_event(source: str) -> Any:
    try:
        raw = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from exc
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise UsageError(f"{source} is not JSON: {exc}") from exc


@click.command("invoke-local")
@click.argument("model")
@click.argument("event", default="-")
@click.option("--response", "shape", type=click.Choice(["djl", "scores", "top1"]), help="LAMBDALITE_RESPONSE.")
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE", help="Extra environment for the function.")
def invoke_local(model: str, event: str, shape: str | None, env: tuple[str, ...]) -> None:
    """Run EVENT (a JSON file, or - for stdin) through the handler serving MODEL, in-process."""
    payload = _read_event(event)
    from lambdalite.function.app import Function
    from lambdalite.settings import Settings
    from lambdalite.toolkit.local.environment import parse_env_pairs
    from lambdalite.toolkit.zoo import build

    # The function's settings: this process's environment, then the flags (os.environ is not changed).
    overrides = {"LAMBDALITE_MODEL": model, **({"LAMBDALITE_RESPONSE": shape} if shape else {})}
    settings = Settings.from_env({**os.environ, **overrides, **parse_env_pairs(env)})
    context = LocalContext()
    with contextlib.redirect_stdout(sys.stderr):  # the function's log lines; stdout is the response
        function = Function.from_settings(settings, build_zoo=build)
        try:
            result = function(payload, context)
        except LambdaliteError as exc:
            result, failed = (
                {
                    "errorType": exc.type_name,
                    "errorMessage": str(exc),
                    "requestId": context.aws_request_id,
                    "stackTrace": [],
                },
                True,
            )
        else:
            failed = False
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    if failed:
        sys.exit(1)
