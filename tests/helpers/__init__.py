"""What the tests share: paths, known answers, and helper modules (images, servers, cli...).

Tests import helpers from here, never from each other; fixtures live in tests/conftest.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
EVENTS = TESTS / "events"
HANDLERS = TESTS / "handlers"
# The test run's own model cache, inside the checkout (ignored by git; see tests/conftest.py).
TEST_HOME = REPO / ".lambdalite"

# What ImageNet calls scikit-image's `data.chelsea()`: any of these is a right answer.
CAT_CLASSES = {"tabby, tabby cat", "tiger cat", "Egyptian cat"}


def lambda_interpreter(version: str) -> str | None:
    """A local Python `version` ("3.12"): on PATH, or a pyenv install. None if there is none."""
    import glob
    import shutil

    candidates = [shutil.which(f"python{version}") or ""]
    # pyenv's interpreters, wherever pyenv lives (PYENV_ROOT, the pyenv on PATH, or ~/.pyenv):
    # not only under HOME, so a run with an empty HOME finds them too.
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        roots.append(str(Path(pyenv).resolve().parent.parent))
    for root in dict.fromkeys(r for r in roots if r):
        candidates += sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"))
    for exe in candidates:
        if not exe:
            continue
        proc = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
        )
        if proc.returncode == 0 and proc.stdout.strip() == version:
            return exe
    return None
