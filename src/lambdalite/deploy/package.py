"""The pieces of an artifact that are not third-party wheels: lambdalite's own modules and the model.

Only the modules the function runs are shipped: the CLI, the local emulator, the deployer, the
exporters and the zoo's builders stay behind (they import click, torch or boto3). Before a byte
is shipped, every shipped module's top-level imports are checked against what the artifact and
the Lambda runtime provide, so a module that would fail at cold start fails the build instead.

    modules = copy_lambdalite(staging, third_party={"numpy", "PIL", "onnxruntime"})
    copy_bundle(bundle, staging / "model")
"""

from __future__ import annotations

import ast
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from ..bundle import MANIFEST_NAME, Bundle
from ..errors import BuildError

__all__ = [
    "HANDLER",
    "RUNTIME_PROVIDED",
    "TOOLKIT_ONLY",
    "check_imports",
    "copy_bundle",
    "copy_lambdalite",
    "lambdalite_root",
]

HANDLER = "lambdalite.handler.handler"
# Parts of lambdalite that never run inside a function (paths relative to the package).
TOOLKIT_ONLY = (
    "cli.py",
    "__main__.py",
    "deploy",
    "runtime",
    "gateway.py",
    "invoke_local.py",
    "convert_cli.py",
    "convert_hf.py",
    "convert_keras.py",
    "importer.py",
    "quantize.py",
    "export.py",
    "zoo/*.py",
)
_KEEP = ("zoo/__init__.py",)  # the zoo's name table; its builders (torch) stay behind
# What every Lambda Python runtime (and its base image) already has on sys.path.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "awslambdaric"})


def lambdalite_root() -> Path:
    import lambdalite

    return Path(lambdalite.__file__).resolve().parent


def _shipped(rel: PurePosixPath, other_engines: set[str]) -> bool:
    if "__pycache__" in rel.parts or rel.as_posix() in other_engines:
        return False
    if any(rel.match(keep) for keep in _KEEP):
        return True
    return not any(rel.match(pattern) or rel.parts[0] == pattern for pattern in TOOLKIT_ONLY)


def _other_engines(engine: str) -> set[str]:
    """The engine modules a bundle for `engine` never loads (each imports its own framework)."""
    from ..engines import ENGINE_MODULES

    return {
        module.removeprefix("lambdalite.").replace(".", "/") + ".py"
        for name, (module, _, _) in ENGINE_MODULES.items()
        if name != engine
    }


def copy_lambdalite(dest: Path, *, third_party: Iterable[str], engine: str = "onnxruntime") -> list[str]:
    """Copy the function's lambdalite modules and data files to `dest/lambdalite`; return them.

    Of the engines, only `engine`'s module ships (the others import frameworks it does not have).
    """
    src = lambdalite_root()
    other_engines = _other_engines(engine)
    if not (src / "handler.py").is_file():
        raise BuildError(f"this lambdalite ({src}) has no handler module ({HANDLER}): update lambdalite")
    copied: list[str] = []
    for path in sorted(src.rglob("*")):
        rel = PurePosixPath(path.relative_to(src).as_posix())
        if not path.is_file() or not _shipped(rel, other_engines):
            continue
        target = dest / "lambdalite" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        target.chmod(0o644)
        copied.append(f"lambdalite/{rel}")
    check_imports(dest / "lambdalite", _modules(src) - _modules(dest / "lambdalite"), set(third_party))
    return copied


def _modules(package: Path) -> set[str]:
    names = {_module_name(p, package) for p in package.rglob("*.py") if "__pycache__" not in p.parts}
    return names | {name.removesuffix(".__init__") for name in names}


def _module_name(path: Path, package: Path) -> str:
    return "lambdalite." + path.relative_to(package).with_suffix("").as_posix().replace("/", ".")


def check_imports(package: Path, left_behind: set[str], third_party: set[str]) -> None:
    """Raise BuildError if a module in `package` imports, at module level, something the function lacks."""
    allowed = third_party | RUNTIME_PROVIDED | set(sys.stdlib_module_names) | {"lambdalite"}
    for path in sorted(package.rglob("*.py")):
        module = _module_name(path, package).removesuffix(".__init__")
        for name in _top_level_imports(path, module):
            if any(name == gone or name.startswith(gone + ".") for gone in left_behind):
                raise BuildError(
                    f"{module} imports {name} at module level, which is not shipped in the function "
                    f"(it is toolkit-only); import it inside the function that needs it"
                )
            if name.split(".")[0] not in allowed:
                raise BuildError(
                    f"{module} imports {name.split('.')[0]} at module level, which the function does not ship "
                    f"and Lambda does not provide; import it inside the function that needs it"
                )


def _top_level_imports(path: Path, module: str) -> list[str]:
    """Modules imported unconditionally when `module` is imported (not in functions, TYPE_CHECKING or try)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base)
                if node.module:
                    names.append(f"{prefix}.{node.module}")
                else:
                    names += [f"{prefix}.{alias.name}" for alias in node.names]
            elif node.module:
                names.append(node.module)
    return names


def copy_bundle(bundle: Bundle, dest: Path) -> list[str]:
    """Copy the bundle's manifest and files (checksums verified) to `dest`; return the names."""
    bundle.verify()
    names = sorted({MANIFEST_NAME, *(ref.path for ref in bundle.manifest.files.values())})
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle.root / name, target)
        target.chmod(0o644)
    return names
