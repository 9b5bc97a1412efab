"""What of lambdalite ships in the function, and the import check that keeps it loadable."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambdalite.errors import BuildError, ChecksumError
from lambdalite.toolkit.deploy.package import check_imports, copy_bundle, copy_lambdalite, lambdalite_root


def package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "lambdalite"
    for rel, text in {"__init__.py": "", **files}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    return pkg


def test_copy_leaves_the_toolkit_behind(tmp_path):
    copied = copy_lambdalite(tmp_path, third_party={"numpy", "PIL", "onnxruntime"})
    assert "lambdalite/handler.py" in copied and "lambdalite/engines/onnx.py" in copied
    assert "lambdalite/sources/zoo.py" in copied and "lambdalite/sources/plain.py" in copied
    assert "lambdalite/engines/litert.py" not in copied and "lambdalite/engines/torchscript.py" not in copied
    assert not any(name.startswith("lambdalite/toolkit/") or "__pycache__" in name for name in copied)
    # Everything else ships: the rule is the layout, not a list.
    root = lambdalite_root()
    everything = {
        f"lambdalite/{p.relative_to(root).as_posix()}"
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.relative_to(root).as_posix().startswith("toolkit/")
    }
    assert set(copied) == everything - {"lambdalite/engines/litert.py", "lambdalite/engines/torchscript.py"}
    assert (tmp_path / "lambdalite" / "handler.py").read_bytes() == (lambdalite_root() / "handler.py").read_bytes()


def test_lazy_and_guarded_imports_pass(tmp_path):
    pkg = package(
        tmp_path,
        {
            "ok.py": (
                "from __future__ import annotations\nimport json\nfrom typing import TYPE_CHECKING\n"
                "import numpy as np\nfrom . import sibling\nfrom .sibling import thing\n"
                "if TYPE_CHECKING:\n    import click\n"
                "try:\n    import torch\nexcept ImportError:\n    torch = None\n"
                "def later():\n    import boto3, click\n    from .sibling import thing\n"
            ),
            "sibling.py": "thing = 1\n",
        },
    )
    check_imports(pkg, left_behind={"lambdalite.toolkit.cli"}, third_party={"numpy"})


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("import click\n", "imports click at module level"),
        ("from torch import nn\n", "imports torch at module level"),
        ("from .toolkit.cli import main\n", "imports lambdalite.toolkit.cli at module level"),
        ("from .toolkit import cli\n", "imports lambdalite.toolkit.cli at module level"),
        ("from lambdalite.toolkit.deploy.plan import x\n", "imports lambdalite.toolkit.deploy.plan at module level"),
        ("def f():\n    from lambdalite.toolkit.cli import main\n", "imports lambdalite.toolkit.cli inside a function"),
        ("def f():\n    from .toolkit import cli\n", "imports lambdalite.toolkit.cli inside a function"),
    ],
)
def test_imports_of_what_is_not_shipped_fail_the_build(tmp_path, source, message):
    pkg = package(tmp_path, {"bad.py": source})
    with pytest.raises(BuildError, match=message):
        check_imports(pkg, left_behind={"lambdalite.toolkit.cli", "lambdalite.toolkit.deploy"}, third_party={"numpy"})


def test_copy_bundle_verifies_checksums(tmp_path, tiny_bundle):
    names = copy_bundle(tiny_bundle, tmp_path / "model")
    assert names == ["labels.txt", "lambdalite.json", "model.onnx"]
    (tiny_bundle.root / "labels.txt").write_text("tampered\n")
    with pytest.raises(ChecksumError):
        copy_bundle(tiny_bundle, tmp_path / "again")
