"""The pieces of an artifact that are not third-party wheels: lambdalite's own modules and the model.

What ships follows the layout: every module of `lambdalite` except the `lambdalite.toolkit`
package (the CLI, the local Lambda, the deployer, the converters, the zoo's builders), and of the
engines only the bundle's own (the others import frameworks the zip does not carry). Before a
byte is shipped, every import in every shipped module, the lazy ones inside functions included,
is checked: one of a lambdalite module that does not ship fails the build, and so does a
module-level import of a third-party package that neither the zip nor the Lambda runtime has.

    modules = copy_lambdalite(staging, third_party={"numpy", "PIL", "onnxruntime"})
    copy_bundle(bundle, staging / "model")
"""

from __future__ import annotations

import ast
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from lambdalite.core.bundle import MANIFEST_NAME, Bundle
from lambdalite.errors import BuildError

__all__ = [
    "HANDLER",
    "RUNTIME_PROVIDED",
    "TOOLKIT",
    "Import",
    "check_imports",
    "copy_bundle",
    "copy_lambdalite",
    "imports_of",
    "lambdalite_root",
    "shipped",
]

HANDLER = "lambdalite.handler.handler"
TOOLKIT = "toolkit"  # lambdalite.toolkit never runs inside a function
# What every Lambda Python runtime (and its base image) already has on sys.path.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "awslambdaric", "snapshot_restore_py"}
)


def lambdalite_root() -> Path:
    import lambdalite

    return Path(lambdalite.__file__).resolve().parent


def shipped(rel: PurePosixPath, engine: str) -> bool:
    """Whether the file at `rel` (relative to the lambdalite package) ships for `engine`."""
    if "__pycache__" in rel.parts or rel.parts[0] == TOOLKIT:
        return False
    return rel.as_posix() not in _other_engines(engine)


def _other_engines(engine: str) -> set[str]:
    """The engine modules a bundle for `engine` never loads (each imports its own framework)."""
    from lambdalite.engines import ENGINE_MODULES

    return {
        module.removeprefix("lambdalite.").replace(".", "/") + ".py"
        for name, (module, _, _) in ENGINE_MODULES.items()
        if name != engine
    }


def copy_lambdalite(dest: Path, *, third_party: Iterable[str], engine: str = "onnxruntime") -> list[str]:
    """Copy the function's lambdalite modules and data files to `dest/lambdalite`; return them."""
    src = lambdalite_root()
    if not (src / "handler.py").is_file():
        raise BuildError(f"this lambdalite ({src}) has no handler module ({HANDLER}): update lambdalite")
    copied: list[str] = []
    for path in sorted(src.rglob("*")):
        rel = PurePosixPath(path.relative_to(src).as_posix())
        if not path.is_file() or not shipped(rel, engine):
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


class Import:
    """One import statement's target: the module (absolute), the names taken from it, where, and
    whether it runs when the module is imported (`eager`) or later, inside a function."""

    __slots__ = ("eager", "line", "module", "names")

    def __init__(self, module: str, names: tuple[str, ...], line: int, eager: bool) -> None:
        self.module = module
        self.names = names
        self.line = line
        self.eager = eager

    def targets(self) -> Iterator[str]:
        """The modules this import may load: the module, and each name as a submodule of it."""
        yield self.module
        for name in self.names:
            if name != "*":
                yield f"{self.module}.{name}"


def imports_of(path: Path, module: str) -> list[Import]:
    """Every import in the module at `path` (named `module`), relative ones made absolute.

    `eager` is False for imports inside functions and classes' methods, under `if TYPE_CHECKING:`
    and in `try:` blocks (guarded: the module works without them)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[Import] = []

    def visit(node: ast.AST, eager: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, (), node.lineno, eager) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(Import(target, names, node.lineno, eager))
        for child in ast.iter_child_nodes(node):
            lazy = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Try | ast.Lambda) or (
                isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            )
            visit(child, eager and not lazy)

    visit(tree, True)
    return found


def check_imports(package: Path, left_behind: set[str], third_party: set[str]) -> None:
    """Raise BuildError if a module in `package` would fail to import something inside the function.

    Any import (eager or lazy) of a lambdalite module in `left_behind` fails: the function would
    crash the first time that path runs. An eager import of a third-party package that is not in
    `third_party`, the Lambda runtime or the standard library fails too; a lazy one is an
    optional feature and passes."""
    allowed = third_party | RUNTIME_PROVIDED | set(sys.stdlib_module_names) | {"lambdalite"}
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        module = _module_name(path, package).removesuffix(".__init__")
        for imported in imports_of(path, module):
            for target in imported.targets():
                gone = next((g for g in left_behind if target == g or target.startswith(g + ".")), None)
                if gone is not None:
                    where = "at module level" if imported.eager else "inside a function"
                    raise BuildError(
                        f"{module} imports {target} {where} (line {imported.line}), which is not shipped in "
                        f"the function (it is toolkit-only); move what it needs into a shipped package"
                    )
            top = imported.module.split(".")[0]
            if imported.eager and top not in allowed:
                raise BuildError(
                    f"{module} imports {top} at module level (line {imported.line}), which the function does "
                    f"not ship and Lambda does not provide; import it inside the function that needs it"
                )


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
