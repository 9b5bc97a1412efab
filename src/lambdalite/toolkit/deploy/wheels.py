"""The function's third-party dependencies, as wheels for the Lambda platform.

What runs inside the function is numpy, Pillow and the bundle's engine, at the versions
lambdalite itself pins (read from its installed metadata, so an artifact always carries what
this lambdalite was tested with). Wheels come from the package index through pip
(`pip download --platform ... --only-binary=:all:`), are kept in the cache per target, and are
unpacked straight into the artifact: nothing is compiled, nothing is installed on this machine.

    wheels = fetch_wheels(requirements_for("onnxruntime"), Target("3.12"), progress)
    for wheel in wheels:
        unpack_wheel(wheel, staging)
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lambdalite.core.bundle import file_sha256
from lambdalite.core.cache import entry_lock
from lambdalite.core.progress import Progress
from lambdalite.errors import BuildError
from lambdalite.settings import Settings
from lambdalite.toolkit.deploy.target import Target

__all__ = ["ENGINE_PACKAGES", "Requirement", "Wheel", "fetch_wheels", "requirements_for", "unpack_wheel"]

# Distributions the function imports, per engine, on top of numpy and Pillow. They are installed
# without their own requirements: onnxruntime asks for flatbuffers, packaging and protobuf, and
# ai-edge-litert for protobuf, tqdm and more, which only their tools (quantization, converters)
# import, never an InferenceSession or an Interpreter.
BASE_PACKAGES = ("numpy", "pillow")
ENGINE_PACKAGES: dict[str, tuple[str, ...]] = {"onnxruntime": ("onnxruntime",), "litert": ("ai-edge-litert",)}
_NO_ZIP_ENGINES = {
    "torchscript": "torch alone unzips to about 670 MB, over Lambda's 250 MB: export the model to ONNX",
}
_WHEEL_NAME = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)


@dataclass(frozen=True, slots=True)
class Requirement:
    """A pinned distribution: `numpy==2.4.6`."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True, slots=True)
class Wheel:
    """A downloaded wheel file and the distribution it installs."""

    path: Path
    name: str
    version: str
    sha256: str


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    try:
        requires = importlib.metadata.requires("lambdalite") or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise BuildError("lambdalite is not installed as a distribution, so its pinned versions are unknown") from exc
    pins: dict[str, str] = {}
    for line in requires:
        spec = line.split(";")[0].strip()
        if "==" in spec:
            name, version = spec.split("==", 1)
            pins[_canonical(name.split("[")[0])] = version.strip()
    return pins


def requirements_for(engine: str) -> tuple[Requirement, ...]:
    """The pinned distributions a function serving a bundle for `engine` needs."""
    if engine not in ENGINE_PACKAGES:
        reason = _NO_ZIP_ENGINES.get(engine, f"unknown engine {engine!r}")
        raise BuildError(f"cannot build a Lambda artifact for a {engine} bundle: {reason}")
    pins = _pins()
    out = []
    for name in (*BASE_PACKAGES, *ENGINE_PACKAGES[engine]):
        version = pins.get(_canonical(name))
        if version is None:
            raise BuildError(f"lambdalite's metadata pins no version of {name}; reinstall lambdalite")
        out.append(Requirement(name, version))
    return tuple(out)


def _parse_wheel(path: Path) -> tuple[str, str, set[str]] | None:
    m = _WHEEL_NAME.match(path.name)
    if m is None:
        return None
    platforms = set(m["plat"].split("."))
    return _canonical(m["name"]), m["version"], platforms


def _cached(requirements: Sequence[Requirement], folder: Path, target: Target) -> list[Path] | None:
    """The wheels in `folder` that satisfy every requirement for `target`, or None if one is missing."""
    if not folder.is_dir():
        return None
    allowed = {*target.platforms(), "any"}
    found: list[Path] = []
    for req in requirements:
        for path in sorted(folder.glob("*.whl")):
            parsed = _parse_wheel(path)
            if parsed and parsed[0] == _canonical(req.name) and parsed[1] == req.version and parsed[2] & allowed:
                found.append(path)
                break
        else:
            return None
    return found


def fetch_wheels(requirements: Sequence[Requirement], target: Target, progress: Progress) -> list[Wheel]:
    """Wheels for `requirements` on `target`, downloaded once into the cache."""
    folder = Settings.from_env().cache_home / "wheels" / target.key
    paths = _cached(requirements, folder, target)
    if paths is None:
        with entry_lock(folder):
            paths = _cached(requirements, folder, target)
            if paths is None:
                names = ", ".join(str(r) for r in requirements)
                with progress.step(f"Fetching wheels for {target.describe()}: {names}"):
                    _pip_download(requirements, target, folder)
                paths = _cached(requirements, folder, target)
        if paths is None:  # pragma: no cover - pip succeeded, so every wheel is there
            raise BuildError(f"pip reported success but the wheels are not in {folder}")
    wheels = []
    for req, path in zip(requirements, paths, strict=True):
        wheels.append(Wheel(path, req.name, req.version, file_sha256(path)))
    return wheels


def _pip_download(requirements: Sequence[Requirement], target: Target, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(dest)]
    command += ["--python-version", target.python, "--implementation", "cp"]
    for abi in (target.abi, "abi3", "none"):
        command += ["--abi", abi]
    for platform in target.platforms():
        command += ["--platform", platform]
    command += [str(r) for r in requirements]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    except subprocess.TimeoutExpired as exc:
        raise BuildError("pip took more than 30 minutes to download the wheels; check the network") from exc
    if proc.returncode == 0:
        return
    output = proc.stderr + proc.stdout
    if "No module named pip" in output:
        raise BuildError(f"building needs pip in {sys.executable}: run `{sys.executable} -m ensurepip`")
    missing = re.search(r"No matching distribution found for (\S+)", output)
    if missing:
        raise BuildError(
            f"{missing[1]} publishes no wheel for {target.describe()}: its wheels need a newer glibc or "
            f"another Python; {_hint(target)}"
        )
    last = [line for line in output.splitlines() if line.strip()][-1:] or ["(no output)"]
    raise BuildError(f"pip could not download the wheels for {target.describe()}: {last[0].strip()}")


def _hint(target: Target) -> str:
    if target.glibc < (2, 28):
        return f"{target.runtime} runs on {target.os}; build for --python 3.12 or newer (Amazon Linux 2023)"
    return "pick another --python or --arch, or pin a version that publishes manylinux wheels"


def unpack_wheel(wheel: Wheel, dest: Path) -> list[str]:
    """Unpack `wheel` into `dest` as pip would install it there, and return the paths written.

    `.data/purelib` and `.data/platlib` go to the top; scripts, headers and data files (console
    scripts, C headers) are left out: nothing in a function runs them.
    """
    written: list[str] = []
    try:
        with zipfile.ZipFile(wheel.path) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                rel = _install_path(info.filename)
                if rel is None:
                    continue
                target = dest.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                executable = (info.external_attr >> 16) & stat.S_IXUSR
                target.chmod(0o755 if executable else 0o644)
                written.append(rel.as_posix())
    except (zipfile.BadZipFile, OSError) as exc:
        raise BuildError(f"cannot unpack {wheel.path.name}: {exc} (delete it from {wheel.path.parent})") from exc
    return written


def _install_path(name: str) -> PurePosixPath | None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise BuildError(f"wheel member {name!r} escapes the install directory")
    first = path.parts[0]
    if first.endswith(".data"):
        if len(path.parts) > 2 and path.parts[1] in ("purelib", "platlib"):
            return PurePosixPath(*path.parts[2:])
        return None
    return path
