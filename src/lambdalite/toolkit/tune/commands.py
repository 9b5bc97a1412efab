"""`lambdalite tune`: which memory size should the function have?

    lambdalite serve efficientnet-lite0 &                       # or a deployed function
    lambdalite tune efficientnet-lite0 --endpoint-url http://127.0.0.1:8080 \\
        --memory 512,1024,1769,3008 --image examples/chelsea.jpg --cold 2 --warm 5 -o tune/
    lambdalite tune my-stack --memory 1024,2048 --variant fp32: \\
        --variant int8:LAMBDALITE_MODEL=/var/task/model-int8      # AWS: the usual credentials and region

Several FUNCTIONs compare their architectures (a function per architecture, as Lambda needs);
`--variant NAME:KEY=VALUE,...` compares environments of one function (a model variant).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import click

from lambdalite.errors import UsageError

__all__ = ["tune"]


def _memory(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise UsageError(
            f"--memory takes sizes in MB separated by commas, such as 512,1024,1769; not {text!r}"
        ) from None
    bad = [m for m in sizes if not 128 <= m <= 10240]
    if not sizes or bad:
        raise UsageError(f"memory sizes must be 128 to 10240 MB (Lambda's range); {bad or 'none given'}")
    return sizes


def _variant(text: str) -> tuple[str, dict[str, str]]:
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise UsageError(
            f"--variant expects NAME:KEY=VALUE[,KEY=VALUE] (or NAME: for the function as it is), not {text!r}"
        )
    environment: dict[str, str] = {}
    for pair in filter(None, rest.split(",")):
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise UsageError(f"--variant {name}: {pair!r} is not KEY=VALUE")
        environment[key] = value
    return name, environment


def _payloads(payloads: tuple[str, ...], images: tuple[Path, ...]) -> list[bytes]:
    out: list[bytes] = []
    for text in payloads:
        if text.startswith("@"):
            try:
                out.append(Path(text[1:]).read_bytes())
            except OSError as exc:
                raise UsageError(f"cannot read {text[1:]}: {exc.strerror}") from exc
        else:
            out.append(text.encode())
    for image in images:
        try:
            out.append(json.dumps({"image": base64.b64encode(image.read_bytes()).decode()}).encode())
        except OSError as exc:
            raise UsageError(f"cannot read {image}: {exc.strerror}") from exc
    for body in out:
        try:
            json.loads(body)
        except ValueError as exc:
            raise UsageError(f"a payload is not JSON ({exc}): {body[:60]!r}") from exc
    return out or [b"{}"]


@click.command()
@click.argument("functions", nargs=-1, required=True)
@click.option("--endpoint-url", help="The Lambda API to talk to, e.g. http://127.0.0.1:8080 for `lambdalite serve`.")
@click.option("--region", help="AWS region (default: the usual AWS configuration).")
@click.option("--memory", "memory_text", default="512,1024,1769,3008", show_default=True, help="Memory sizes, MB.")
@click.option("--payload", "payloads", multiple=True, help="An event (JSON, or @FILE); repeat for a payload set.")
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help='An image sent as {"image": base64}; repeatable.',
)
@click.option("--cold", default=2, show_default=True, type=click.IntRange(0, 100), help="Cold invocations per size.")
@click.option("--warm", default=5, show_default=True, type=click.IntRange(0, 1000), help="Warm invocations per size.")
@click.option(
    "--cold-share",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="The share of requests that are cold starts, for the cost and the mean latency.",
)
@click.option(
    "--weight",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Best trade-off: how much cost counts against speed (1: only cost).",
)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    metavar="NAME:KEY=VALUE,...",
    help="Environment variables laid over the function's (a model variant); repeatable.",
)
@click.option(
    "-o",
    "--out",
    "out_dir",
    default=Path("tune"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where tune.md, .json, .png and .svg go.",
)
@click.option("--title", help="The chart's title.")
@click.option("--no-chart", is_flag=True, help="Only the table and the JSON (no matplotlib needed).")
def tune(
    functions: tuple[str, ...],
    endpoint_url: str | None,
    region: str | None,
    memory_text: str,
    payloads: tuple[str, ...],
    images: tuple[Path, ...],
    cold: int,
    warm: int,
    cold_share: float,
    weight: float,
    variants: tuple[str, ...],
    out_dir: Path,
    title: str | None,
    no_chart: bool,
) -> None:
    """Sweep memory sizes of FUNCTION(s) and say which is cheapest, fastest and the best trade-off.

    Each size gets --cold cold invocations (a changed environment forces a new execution
    environment) and --warm warm ones; Duration, Billed Duration, Init Duration and Max Memory
    Used come from each invocation's REPORT. The function's configuration is restored at the end.
    Works against `lambdalite serve` (--endpoint-url) and AWS alike.
    """
    from lambdalite.toolkit.tune.analysis import analyse
    from lambdalite.toolkit.tune.chart import markdown_table, write_outputs
    from lambdalite.toolkit.tune.sweep import Variant, sweep

    if cold + warm == 0:
        raise UsageError("nothing to measure: give --cold or --warm at least 1")
    sizes = _memory(memory_text)
    bodies = _payloads(payloads, images)
    chosen = [Variant(*_variant(v)) for v in variants] or [Variant("default")]
    client = _client(endpoint_url, region)
    samples = []
    for function in functions:
        samples += sweep(
            client,
            function,
            memory=sizes,
            payloads=bodies,
            cold=cold,
            warm=warm,
            variants=chosen,
            progress=lambda message: click.echo(f"  {message}", err=True),
        )
    rows = analyse(samples, cold_share=cold_share, weight=weight)
    heading = title or f"lambdalite tune: {', '.join(functions)}"
    paths = write_outputs(rows, samples, out_dir, title=heading, cold_share=cold_share, with_chart=not no_chart)
    click.echo(markdown_table(rows, cold_share), nl=False)
    click.echo("wrote " + ", ".join(str(p) for p in paths), err=True)


def _client(endpoint_url: str | None, region: str | None) -> object:
    import boto3
    from botocore.config import Config

    config = Config(read_timeout=900, connect_timeout=10, retries={"mode": "standard", "max_attempts": 3})
    kwargs: dict[str, object] = {"config": config}
    if region:
        kwargs["region_name"] = region
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
        kwargs.setdefault("region_name", "us-east-1")
        session = boto3.session.Session()
        if session.get_credentials() is None:  # a local endpoint signs with anything
            kwargs.update(aws_access_key_id="lambdalite", aws_secret_access_key="lambdalite")
    try:
        return boto3.client("lambda", **kwargs)
    except Exception as exc:  # botocore's NoRegionError and friends
        raise UsageError(f"cannot make a Lambda client: {exc} (give --region, or --endpoint-url for serve)") from exc
