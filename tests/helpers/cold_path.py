"""What serving a bundle imports, measured in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

# Third-party packages a function may import: the engine, numpy and Pillow. Nothing else.
THIRD_PARTY = {"numpy", "PIL", "onnxruntime"}

SERVING_PATH = """
import json, sys
before = set(sys.modules)
from lambdalite.model import load_model
model = load_model(sys.argv[1])
model.predict([open(sys.argv[2], "rb").read()], **json.loads(sys.argv[3]))
new = set(sys.modules) - before
tops = {m.split(".")[0] for m in new if not m.startswith("lambdalite")}
print(json.dumps(sorted(tops - set(sys.stdlib_module_names))))
"""


def serving_imports(bundle_root: Path, tmp: Path, options: dict[str, Any] | None = None) -> set[str]:
    """The third-party top-level packages that loading `bundle_root` and one prediction import."""
    from PIL import Image

    img = tmp / "serving-path.png"
    Image.new("RGB", (9, 9)).save(img)
    proc = subprocess.run(
        [sys.executable, "-c", SERVING_PATH, str(bundle_root), str(img), json.dumps(options or {})],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))
