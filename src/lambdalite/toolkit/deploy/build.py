"""Build the deployable artifact for a model: a Lambda zip (and layer) or an image recipe, plus a template.

    build = build_artifact("efficientnet-lite0", Path("dist"), BuildOptions(target=Target("3.12")), progress)
    print("\\n".join(size_report(build)))
    check_limits(build)          # BuildError, naming what to cut, when over Lambda's 250 MB

A zip build writes, under the output directory:

    function.zip        lambdalite's function modules, the model in model/, and (without --layer)
                        numpy, Pillow and the engine for the Lambda platform, slimmed
    layer.zip           (--layer) the dependencies under python/, for /opt/python
    template.yaml       the AWS SAM template (see template.py)
    lambdalite-build.json   what was built, for `lambdalite deploy DIR` and for humans

An image build writes `image/` (Dockerfile and context) and the template instead. Zips are
reproducible: entries sorted, times fixed, modes normalised, bytecode hash-based.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lambdalite import __version__
from lambdalite.core.bundle import open_bundle
from lambdalite.core.progress import Progress
from lambdalite.errors import BuildError
from lambdalite.toolkit.deploy.artifact import MAX_UNZIPPED, MAX_ZIPPED_UPLOAD, Artifact, PackageSize, zip_artifact
from lambdalite.toolkit.deploy.image import write_dockerfile
from lambdalite.toolkit.deploy.package import copy_bundle, copy_lambdalite
from lambdalite.toolkit.deploy.slim import slim
from lambdalite.toolkit.deploy.target import Target
from lambdalite.toolkit.deploy.template import FunctionSpec, ModelLocation, Settings, sam_template, write_yaml
from lambdalite.toolkit.deploy.wheels import Wheel, fetch_wheels, requirements_for, unpack_wheel
from lambdalite.toolkit.zoo import resolve_model as resolve

__all__ = ["BUILD_RECORD", "Build", "BuildOptions", "build_artifact", "check_limits", "read_build", "size_report"]

BUILD_RECORD = "lambdalite-build.json"
TASK_ROOT = "/var/task"  # $LAMBDA_TASK_ROOT
LAYER_ROOT = "/opt/python"  # where a layer's python/ lands, on sys.path
MODEL_DIR = "model"


@dataclass(frozen=True, slots=True)
class BuildOptions:
    target: Target = Target()
    format: Literal["zip", "image"] = "zip"
    layer: bool = False
    compile: bool | None = None  # precompile bytecode; None: when a matching Python is at hand
    settings: Settings = Settings()


@dataclass(frozen=True, slots=True)
class Build:
    """What `build_artifact` wrote, and everything deploy needs to know about it."""

    out: Path
    options: BuildOptions
    model_reference: str
    model_name: str
    model_version: str
    model_env: str
    model_s3: ModelLocation | None
    template: Path
    artifacts: tuple[Artifact, ...] = ()
    image_context: Path | None = None
    compiled_with: str | None = None
    slimmed: dict[str, int] = field(default_factory=dict)

    @property
    def description(self) -> str:
        target = self.options.target
        return f"lambdalite: {self.model_name} {self.model_version} on {target.runtime} {target.arch}"

    def artifact(self, kind: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.kind == kind), None)

    def spec(self, settings: Settings | None = None) -> FunctionSpec:
        return FunctionSpec(
            description=self.description,
            runtime=self.options.target.runtime,
            arch=self.options.target.arch,
            model_env=self.model_env,
            settings=settings or self.options.settings,
            image=self.options.format == "image",
            model_s3=self.model_s3,
        )


def build_artifact(model: str, out: Path, options: BuildOptions, progress: Progress) -> Build:
    """Build everything for `model` (any model reference) into the directory `out`."""
    target = options.target
    model_s3 = ModelLocation.parse(model) if model.startswith("s3://") else None
    bundle = open_bundle(resolve(model, progress))
    manifest = bundle.manifest
    wheels = fetch_wheels(requirements_for(manifest.engine), target, progress)
    model_env = model if model_s3 else f"{TASK_ROOT}/{MODEL_DIR}"
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("function.zip", "layer.zip", "image", "template.yaml", BUILD_RECORD):
        _remove(out / stale)
    build = Build(
        out=out,
        options=options,
        model_reference=model,
        model_name=manifest.name,
        model_version=manifest.version,
        model_env=model_env,
        model_s3=model_s3,
        template=out / "template.yaml",
    )
    third_party = _import_names(wheels)
    if options.format == "image":
        context = out / "image"
        context.mkdir()
        copy_lambdalite(context, third_party=third_party, engine=manifest.engine)
        if model_s3 is None:
            copy_bundle(bundle, context / MODEL_DIR)
        tag = f"{manifest.name}:{manifest.version}"
        write_dockerfile(
            context,
            target=target,
            wheels=wheels,
            model_env=model_env,
            description=build.description,
            tag=tag,
            ship_model=model_s3 is None,
        )
        build = _replace(build, image_context=context)
        code: str | dict[str, str] = "image"
        layer = None
    else:
        with tempfile.TemporaryDirectory(prefix=".staging-", dir=out) as tmp:
            build = _build_zips(build, bundle, wheels, third_party, Path(tmp), progress)
        code = "function.zip"
        layer = "layer.zip" if options.layer else None
    header = f"{build.description}\nDeploy: lambdalite deploy {out} --stack NAME  (or: sam deploy --guided)"
    write_yaml(sam_template(build.spec(), code=code, layer=layer), build.template, header=header)
    (out / BUILD_RECORD).write_text(json.dumps(_record(build), indent=2) + "\n")
    return build


def _build_zips(
    build: Build, bundle: Any, wheels: list[Wheel], third_party: set[str], tmp: Path, progress: Progress
) -> Build:
    options = build.options
    function, deps = tmp / "function", tmp / "deps"
    owners: dict[str, tuple[str, str]] = {"lambdalite": ("lambdalite", __version__)}
    with progress.step(f"Staging the function ({', '.join(f'{w.name} {w.version}' for w in wheels)})"):
        copy_lambdalite(function, third_party=third_party, engine=bundle.manifest.engine)
        if build.model_s3 is None:
            copy_bundle(bundle, function / MODEL_DIR)
            owners[MODEL_DIR] = (f"model ({build.model_name})", build.model_version)
        for wheel in wheels:
            for rel in unpack_wheel(wheel, deps):
                owners.setdefault(rel.split("/")[0], (wheel.name, wheel.version))
        from lambdalite.core.images import FORMATS

        slimmed = slim(deps, keep_formats=FORMATS)
    compiled_with = None
    if options.compile is not False:
        python = _interpreter(options.target.python)
        if python is None and options.compile:
            raise BuildError(
                f"--compile needs a Python {options.target.python} interpreter (python{options.target.python} on PATH)"
            )
        if python is not None:
            with progress.step(f"Precompiling bytecode with Python {options.target.python}"):
                _compile(python, function, TASK_ROOT)
                _compile(python, deps, LAYER_ROOT if options.layer else TASK_ROOT)
            compiled_with = python
    code = [(function, "")] if options.layer else [(function, ""), (deps, "")]
    artifacts = [zip_artifact("function", build.out / "function.zip", code, owners, progress)]
    if options.layer:
        artifacts.append(zip_artifact("layer", build.out / "layer.zip", [(deps, "python/")], owners, progress))
    return _replace(build, artifacts=tuple(artifacts), compiled_with=compiled_with, slimmed=slimmed.bytes_by_reason)


def _replace(build: Build, **changes: Any) -> Build:
    return dataclasses.replace(build, **changes)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _import_names(wheels: Iterable[Wheel]) -> set[str]:
    """Top-level import names the wheels provide (`pillow` installs `PIL`)."""
    names: set[str] = set()
    for wheel in wheels:
        with zipfile.ZipFile(wheel.path) as zf:
            for name in zf.namelist():
                top = name.split("/")[0]
                if not top.endswith((".dist-info", ".data", ".libs")):
                    names.add(top.removesuffix(".py"))
    return names


def _interpreter(python: str) -> str | None:
    """A local interpreter for `python` ("3.12"), to precompile bytecode the runtime will accept."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == python:
        return sys.executable
    found = shutil.which(f"python{python}")
    if found is None:
        return None
    try:
        proc = subprocess.run(
            [found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found if proc.returncode == 0 and proc.stdout.strip() == python else None


def _compile(python: str, root: Path, prefix: str) -> None:
    # Hash-based pycs: a zip's fixed timestamps would make timestamp pycs look stale, and
    # /var/task is read-only, so a stale pyc means compiling at every cold start.
    command = [python, "-I", "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    command += ["-s", str(root), "-p", prefix, str(root)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        detail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise BuildError(f"precompiling bytecode failed: {detail[0]} (build with --no-compile to skip)")


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def size_report(build: Build) -> list[str]:
    """The size report, by package, against Lambda's limits (lines for a terminal)."""
    target = build.options.target
    lines = [f"{build.model_name} {build.model_version} for {target.describe()}"]
    if build.image_context is not None:
        lines.append(f"  image context: {build.image_context} (Dockerfile on {target.base_image})")
        return lines + _front_door(build)
    width = max([len("package")] + [len(p.name) for a in build.artifacts for p in a.packages])
    for artifact in build.artifacts:
        lines.append(f"  {artifact.path.name}")
        lines.append(f"    {'package':<{width}} {'version':<10} {'files':>6} {'unzipped':>10} {'zipped':>10}")
        for p in artifact.packages:
            sizes = f"{_mb(p.size):>10} {_mb(p.compressed):>10}"
            lines.append(f"    {p.name:<{width}} {p.version:<10} {p.files:>6} {sizes}")
        files = sum(p.files for p in artifact.packages)
        total = f"{_mb(artifact.size):>10} {_mb(artifact.compressed):>10}"
        lines.append(f"    {'total':<{width}} {'':<10} {files:>6} {total}")
    unzipped = sum(a.size for a in build.artifacts)
    lines.append(f"  unzipped: {_mb(unzipped)} of Lambda's 250 MB for the function and its layers")
    for artifact in build.artifacts:
        verdict = "fits" if artifact.compressed <= MAX_ZIPPED_UPLOAD else "over; deploy uploads it through S3 instead"
        lines.append(f"  {artifact.path.name}: {_mb(artifact.compressed)} zipped, 50 MB direct upload limit {verdict}")
    if build.slimmed:
        lines.append(f"  slimmed away {_mb(sum(build.slimmed.values()))}:")
        for reason, n in sorted(build.slimmed.items(), key=lambda kv: -kv[1]):
            lines.append(f"    {_mb(n):>10}  {reason}")
    if build.compiled_with:
        lines.append(f"  bytecode precompiled with {build.compiled_with} (no compiling at cold start)")
    elif build.options.compile is False:
        lines.append("  bytecode not precompiled (--no-compile): cold starts compile the imports")
    else:
        lines.append(
            f"  bytecode not precompiled (no working python{target.python} on PATH): cold starts compile "
            f"the imports, about 0.25 s more (see BENCHMARKS.md)"
        )
    return lines + _front_door(build)


def _front_door(build: Build) -> list[str]:
    from lambdalite.toolkit.deploy.security import front_door

    return ["  " + line for line in front_door(build.options.settings, build.options.target.arch)]


def check_limits(build: Build) -> None:
    """Raise BuildError, naming the biggest packages and what to cut, when over 250 MB unzipped."""
    unzipped = sum(a.size for a in build.artifacts)
    if unzipped <= MAX_UNZIPPED:
        return
    rows = sorted((p for a in build.artifacts for p in a.packages), key=lambda p: -p.size)[:3]
    biggest = ", ".join(f"{p.name} {_mb(p.size)}" for p in rows)
    raise BuildError(
        f"the function unzips to {_mb(unzipped)}, over Lambda's 250 MB for a function and its layers "
        f"(biggest: {biggest}); cut it: quantize the model (int8), keep the model in S3 and pass "
        f"s3://bucket/key as MODEL (loaded into /tmp at cold start), or build --format image (10 GB limit)"
    )


def _record(build: Build) -> dict[str, Any]:
    return {
        "lambdalite": __version__,
        "format": build.options.format,
        "target": {"python": build.options.target.python, "arch": build.options.target.arch},
        "layer": build.options.layer,
        "model": {
            "reference": build.model_reference,
            "name": build.model_name,
            "version": build.model_version,
            "env": build.model_env,
        },
        "settings": build.options.settings.to_dict(),
        "artifacts": [
            {
                "kind": a.kind,
                "file": a.path.name,
                "sha256": a.sha256,
                "size": a.size,
                "compressed": a.compressed,
                "packages": [
                    {"name": p.name, "version": p.version, "files": p.files, "size": p.size, "compressed": p.compressed}
                    for p in a.packages
                ],
            }
            for a in build.artifacts
        ],
        "image_context": build.image_context.name if build.image_context else None,
        "template": build.template.name,
        "compiled_with": build.compiled_with,
        "slimmed": build.slimmed,
    }


def read_build(out: Path) -> Build:
    """The build recorded in `out` by an earlier `build_artifact`, checked against the files."""
    try:
        data = json.loads((out / BUILD_RECORD).read_text())
        target = Target(data["target"]["python"], data["target"]["arch"])
        options = BuildOptions(
            target=target,
            format=data["format"],
            layer=data["layer"],
            settings=Settings.from_dict(data["settings"]),
        )
        model = data["model"]
        artifacts = []
        for a in data["artifacts"]:
            path = out / a["file"]
            if not path.is_file() or path.stat().st_size != a["compressed"]:
                raise BuildError(f"{path} is missing or changed since it was built; build again")
            packages = tuple(PackageSize(**p) for p in a["packages"])
            artifacts.append(Artifact(a["kind"], path, a["sha256"], a["size"], a["compressed"], packages))
        reference = model["reference"]
        return Build(
            out=out,
            options=options,
            model_reference=reference,
            model_name=model["name"],
            model_version=model["version"],
            model_env=model["env"],
            model_s3=ModelLocation.parse(reference) if reference.startswith("s3://") else None,
            template=out / data["template"],
            artifacts=tuple(artifacts),
            image_context=out / data["image_context"] if data["image_context"] else None,
            compiled_with=data["compiled_with"],
            slimmed=data["slimmed"],
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BuildError(f"{out} does not hold a readable lambdalite build ({BUILD_RECORD}): {exc}") from exc
