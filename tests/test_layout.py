"""The layout keeps its promises: no import cycles, shipped code never reaches into the toolkit,
and every shipped module (and everything it imports lazily) loads with the toolkit gone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path, PurePosixPath

from lambdalite.toolkit.deploy.package import TOOLKIT, imports_of, lambdalite_root, shipped

ROOT = lambdalite_root()


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
    return ("lambdalite." + rel).removesuffix(".__init__")


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts}


def import_graph() -> dict[str, set[str]]:
    """module -> the lambdalite modules it imports, at module level or inside functions."""
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for imported in imports_of(path, name):
            edges |= {t for t in imported.targets() if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_not_even_through_lazy_imports():
    assert find_cycle(import_graph()) is None


def is_shipped(name: str) -> bool:
    rel = PurePosixPath(all_modules()[name].relative_to(ROOT).as_posix())
    return any(shipped(rel, engine) for engine in ("onnxruntime", "litert", "torchscript"))


def test_shipped_code_never_imports_the_toolkit():
    toolkit = f"lambdalite.{TOOLKIT}"
    graph = import_graph()
    leaks = {
        (name, target)
        for name, targets in graph.items()
        if is_shipped(name)
        for target in targets
        if target == toolkit or target.startswith(toolkit + ".")
    }
    assert leaks == set()


def test_the_top_level_holds_a_handful_of_modules():
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert top == ["__init__.py", "errors.py", "handler.py", "model.py", "settings.py"]
    packages = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())
    assert packages == ["core", "engines", "function", "sources", "tasks", "toolkit"]


# Import every shipped module, and every module those import lazily, with lambdalite.toolkit and
# the toolkit's own dependencies made unimportable: what a function zip can import. (torch stays:
# a TorchScript bundle's zip ships it with the torchscript engine.)
WITHOUT_TOOLKIT = """
import importlib, importlib.abc, json, sys

class Gone(importlib.abc.MetaPathFinder):
    BLOCKED = ("lambdalite.toolkit", "click", "onnx", "skimage", "samtranslator", "cfnlint")

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in self.BLOCKED):
            raise ModuleNotFoundError(f"{name} is not shipped", name=name)
        return None

sys.meta_path.insert(0, Gone())
failed = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failed))
"""


def test_every_shipped_module_and_its_lazy_imports_load_without_the_toolkit():
    modules = all_modules()
    graph = import_graph()
    targets = set()
    for name in modules:
        if is_shipped(name) and name != "lambdalite.handler":  # importing it starts a function
            targets |= {name, *graph[name]}
    wanted = sorted(t for t in targets if t != "lambdalite.handler")
    assert "lambdalite.sources.plain" in wanted  # imported lazily by sources.remote: the bug this guards
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TOOLKIT, json.dumps(wanted)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {}
