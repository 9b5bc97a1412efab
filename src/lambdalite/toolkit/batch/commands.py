"""`lambdalite batch INPUT -o OUTPUT`: parse, list, run, print the summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from lambdalite.errors import UsageError

__all__ = ["batch"]


@click.command()
@click.argument("source", metavar="INPUT")
@click.option(
    "-o",
    "--output",
    required=True,
    help="A .jsonl file (one line per image) or s3://bucket/prefix (one JSON object per image).",
)
@click.option("--endpoint", help="The Invoke API of `lambdalite serve`, e.g. http://127.0.0.1:8080.")
@click.option("--function", "function_name", help="The function's name or ARN [with --endpoint: function].")
@click.option(
    "--concurrency", "-c", default=4, show_default=True, type=click.IntRange(1, 1000), help="Requests in flight."
)
@click.option(
    "--per-request",
    default=8,
    show_default=True,
    type=click.IntRange(1, 16),
    help="Images per request (one engine batch; the function takes at most 16).",
)
@click.option("--top-k", type=click.IntRange(min=1), help="Classes per image (default: the model's).")
@click.option("--retries", default=8, show_default=True, type=click.IntRange(0, 100), help="Retries per request.")
@click.option("--timeout", default=120.0, show_default=True, type=click.FloatRange(min=1), help="Seconds to wait.")
@click.option("--retry-failed", is_flag=True, help="Run again the images OUTPUT records as failed.")
@click.option("--memory", default=1024, show_default=True, help="MB, for the cost when the function reports none.")
@click.option("--arch", type=click.Choice(["x86_64", "arm64"]), default="x86_64", show_default=True)
@click.option("--region", help="AWS region (default: AWS_REGION or your profile's).")
@click.option("--profile", help="AWS profile (default: AWS_PROFILE or the default profile).")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path), help="Also write the summary here.")
def batch(
    source: str,
    output: str,
    endpoint: str | None,
    function_name: str | None,
    concurrency: int,
    per_request: int,
    top_k: int | None,
    retries: int,
    timeout: float,
    retry_failed: bool,
    memory: int,
    arch: str,
    region: str | None,
    profile: str | None,
    summary_json: Path | None,
) -> None:
    """Run every image of INPUT through the function and write one result per image to OUTPUT.

    INPUT is a folder (its images, recursively), a file list (a path, s3:// or https:// URL per
    line) or s3://bucket/prefix (read by the function with its role). A rerun skips what OUTPUT
    already holds, so an interrupted run resumes and no image gets two results. Exits 1 when
    some images failed or are left for a rerun.
    """
    from lambdalite.toolkit.batch.invoker import Invoker
    from lambdalite.toolkit.batch.report import Summary
    from lambdalite.toolkit.batch.run import Options, run_batch
    from lambdalite.toolkit.batch.sinks import open_sink
    from lambdalite.toolkit.batch.sources import list_tasks, s3_client

    if endpoint is None and function_name is None:
        raise UsageError("say which function: --endpoint URL (lambdalite serve) or --function NAME (deployed)")
    s3 = s3_client(profile=profile, region=region) if "s3://" in (source + output) else None
    tasks = list_tasks(source, s3=s3)
    if not tasks:
        raise UsageError(f"{source} holds no images (.jpg, .jpeg, .png, .webp, .gif, .bmp)")
    sink = open_sink(output, retry_failed=retry_failed, s3=s3)
    invoker = Invoker.connect(
        function=function_name or "function",
        endpoint=endpoint,
        region=region,
        profile=profile,
        timeout=timeout,
        connections=concurrency,
    )
    reply, model = invoker.model()
    if reply.fatal:
        raise UsageError(reply.message)
    if reply.error_type in ("ConnectionError", "Timeout"):
        hint = " (is `lambdalite serve` running there?)" if endpoint else ""
        raise UsageError(f"cannot reach {invoker.description}: {reply.message}{hint}")
    options = Options(
        concurrency=concurrency,
        per_request=per_request,
        request_options={"top_k": top_k} if top_k else {},
        retries=retries,
    )
    summary = Summary(assumed_memory_mb=memory, arch=arch)
    described = f"{model['name']} {model['version']}" if model else invoker.function
    click.echo(f"{len(tasks)} images from {source} through {described} ({invoker.description}) -> {output}", err=True)
    try:
        run_batch(tasks, sink, invoker, options, model=model, summary=summary)
    finally:
        sink.close()
        click.echo(summary.render())
        if summary_json is not None:
            summary_json.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    if summary.interrupted:
        sys.exit(130)
    if summary.failed or summary.unfinished:
        sys.exit(1)
