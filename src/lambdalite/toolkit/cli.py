"""The `lambdalite` command line.

Commands parse their arguments, call library functions and print. Every deliberate failure is
a `LambdaliteError`, turned into one line on stderr and its exit code in exactly one place
(`main`); anything else is reported as an internal error without a traceback unless
`LAMBDALITE_DEBUG=1`. Heavy modules are imported inside the commands that need them, so
`lambdalite --help` and the cold start of `lambdalite predict` stay light.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from lambdalite import __version__
from lambdalite.errors import LambdaliteError, UsageError

__all__ = ["cli", "main"]


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


# Commands that live in other modules: name -> "module:attribute", imported only when used, so
# `lambdalite predict` never pays for the emulator's or the deployer's imports.
LAZY_COMMANDS: dict[str, str] = {
    "invoke": "lambdalite.toolkit.local.commands:invoke",
    "invoke-local": "lambdalite.toolkit.local.invoke:invoke_local",
    "build": "lambdalite.toolkit.deploy.commands:build",
    "deploy": "lambdalite.toolkit.deploy.commands:deploy",
    "destroy": "lambdalite.toolkit.deploy.commands:destroy",
    "logs": "lambdalite.toolkit.deploy.commands:logs",
    "api-key": "lambdalite.toolkit.deploy.commands:api_key",
    "serve": "lambdalite.toolkit.local.commands:serve",
    "tune": "lambdalite.toolkit.tune.commands:tune",
    "import": "lambdalite.toolkit.convert.commands:import_command",
    "export": "lambdalite.toolkit.convert.commands:export_command",
    "batch": "lambdalite.toolkit.batch.commands:batch",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            import importlib

            module_name, attr = LAZY_COMMANDS[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(module_name), attr)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lambdalite")
def cli() -> None:
    """Serverless deep-learning inference: bundle, serve, emulate Lambda, ship."""


# Request options per task, and the flag that sets each.
_TASK_OPTIONS = {
    "image-classification": ("top_k",),
    "image-to-text": ("beam_size", "max_length"),
}


@cli.command()
@click.argument("model")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--top-k", "-k", type=click.IntRange(min=1), help="Classes to show (classifiers; default: the bundle's, often 5)."
)
@click.option("--beam-size", "-b", type=click.IntRange(min=1), help="Beam width (captioners; 1 is greedy search).")
@click.option(
    "--max-length", type=click.IntRange(min=1), help="Longest caption, in tokens (words and punctuation; captioners)."
)
@click.option(
    "--option",
    "-o",
    "extra",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other request option (VALUE is read as JSON, else as text); repeatable.",
)
@click.option(
    "--trust-code",
    is_flag=True,
    help="Allow the bundle's own code (pipeline.py) to run; read it first, it can do anything.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON: the result for one image, a list of results for several."
)
def predict(
    model: str,
    images: Sequence[Path],
    top_k: int | None,
    beam_size: int | None,
    max_length: int | None,
    extra: Sequence[str],
    trust_code: bool,
    as_json: bool,
) -> None:
    """Run MODEL on IMAGES and print the top classes or the caption.

    MODEL is a zoo name (see `lambdalite models`), a bundle directory or a .tar.gz bundle.
    """
    from lambdalite.core.progress import Stderr
    from lambdalite.model import load_model

    payloads = []
    for path in images:
        try:
            payloads.append(path.read_bytes())
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    from lambdalite.toolkit.zoo import build

    loaded = load_model(model, progress=Stderr(), trust_code=True if trust_code else None, build_zoo=build)
    given = {"top_k": top_k, "beam_size": beam_size, "max_length": max_length}
    options: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if "pipeline" not in loaded.bundle.manifest.files:  # a bundle's own code may take any option
        accepted = _TASK_OPTIONS.get(loaded.task.kind, ())
        for key in options:
            if key not in accepted:
                flag = "--" + key.replace("_", "-")
                raise UsageError(f"{flag} does not apply to {loaded.name}, an {loaded.task.kind} model")
    options.update(_parse_options(extra))
    results = []
    for path, data in zip(images, payloads, strict=True):
        try:
            [result] = loaded.predict([data], **options)
        except LambdaliteError as exc:
            raise type(exc)(f"{path}: {exc}") from exc
        results.append(result)
    if as_json:
        _echo_json(results[0] if len(results) == 1 else results)
        return
    for path, result in zip(images, results, strict=True):
        click.echo(f"{path}  ({loaded.name})")
        click.echo(_format_result(result))


def _parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    from lambdalite.toolkit.local.environment import parse_env_pairs

    options: dict[str, Any] = {}
    for key, text in parse_env_pairs(pairs, "--option").items():
        try:
            options[key] = json.loads(text)
        except ValueError:
            options[key] = text
    return options


def _format_result(result: Any) -> str:
    if isinstance(result, dict):  # image-to-text
        lines = [f"  {result.get('caption', '')!r}  (score {result.get('score', 0):.3f})"]
        for alt in result.get("alternatives", [])[1:]:
            lines.append(f"    or {alt['caption']!r}  (score {alt['score']:.3f})")
        return "\n".join(lines)
    width = max(len(r["className"]) for r in result)
    lines = []
    for rank, r in enumerate(result, 1):
        bar = "#" * round(r["probability"] * 30)
        lines.append(f"  {rank:>2}. {r['className']:<{width}}  {r['probability'] * 100:6.2f}%  {bar}")
    return "\n".join(lines)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(as_json: bool) -> None:
    """List the model zoo and what is built in the cache."""
    from lambdalite.core.bundle import MANIFEST_NAME
    from lambdalite.settings import Settings
    from lambdalite.sources.zoo import ZOO, built_path

    cache = Settings.from_env().cache

    rows = []
    for name, entry in sorted(ZOO.items()):
        path = built_path(name, cache)
        built = (path / MANIFEST_NAME).is_file()
        rows.append(
            {
                "name": name,
                "task": entry.task,
                "description": entry.description,
                "cached": built,
                "path": str(path) if built else None,
            }
        )
    if as_json:
        _echo_json({"cache": str(cache.home), "models": rows})
        return
    click.echo(f"Model zoo (cache: {cache.home})")
    for row in rows:
        state = "cached" if row["cached"] else "built on first use"
        click.echo(f"  {row['name']:<24} {row['task']:<22} {state:<20} {row['description']}")


@cli.group()
def bundle() -> None:
    """Inspect and pack model bundles."""


@bundle.command("inspect")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def bundle_inspect(path: str, as_json: bool) -> None:
    """Show a bundle's manifest and check every file's sha256. PATH may be any model reference."""
    from lambdalite.core.bundle import open_bundle
    from lambdalite.toolkit.zoo import resolve_model as resolve

    opened = open_bundle(resolve(path))
    opened.verify()
    m = opened.manifest
    if as_json:
        _echo_json(m.to_dict())
        return
    click.echo(f"{m.name} {m.version}  ({m.task}, engine {m.engine}, schema {m.schema_version})")
    click.echo(f"  location: {opened.root}")
    i = m.input
    click.echo(
        f"  input:    {i.size[0]}x{i.size[1]} {i.layout} {i.dtype} {i.channel_order}, "
        f"resize {i.resize or 'to size'}, crop {i.crop}, scale {i.scale:.6g}, "
        f"mean {list(i.mean)}, std {list(i.std)}"
    )
    click.echo(f"  output:   {m.output.kind}, top {m.output.top_k}")
    click.echo("  files (sha256 verified):")
    for role, ref in sorted(m.files.items()):
        size = (opened.root / ref.path).stat().st_size
        click.echo(f"    {role:<9} {ref.path:<24} {size / 2**20:8.2f} MB  {ref.sha256[:16]}…")
    if "pipeline" in m.files:
        click.echo(f"  carries code: {m.files['pipeline'].path} runs only when trusted (--trust-code)")
    for key, value in sorted(m.metadata.items()):
        click.echo(f"  {key}: {value}")


@bundle.command("pack")
@click.argument("path")
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .tar.gz to write."
)
def bundle_pack(path: str, output: Path) -> None:
    """Pack a bundle (any model reference) into a reproducible .tar.gz."""
    from lambdalite.core.bundle import open_bundle, pack_bundle
    from lambdalite.toolkit.zoo import resolve_model as resolve

    out = pack_bundle(open_bundle(resolve(path)), output)
    click.echo(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MB)")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI and turn every failure into one line and an exit code."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="lambdalite", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LambdaliteError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("LAMBDALITE_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (set LAMBDALITE_DEBUG=1 for a traceback)", err=True)
        sys.exit(70)
