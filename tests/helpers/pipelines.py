"""Bundles that carry code (pipeline.py), for the tests of trusting and running it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from lambdalite.core.bundle import Bundle

from helpers.models import TINY_LABELS, tiny_classifier_onnx, write_tiny_bundle, write_tiny_captioner

# Every pipeline below first leaves a mark, so a test can tell whether any of its code ran.
MARK = """
import pathlib
pathlib.Path({mark!r}).write_text("ran")
"""

TOP1 = """
def postprocess(result, context):
    return {"label": result[0]["className"], "confidence": result[0]["probability"],
            "bundle": context.bundle.manifest.name, "options": dict(context.options)}
"""


def with_code(root: Path, source: str, *, captioner: bool = False) -> Bundle:
    mark = root.parent / f"{root.name}.ran"
    code = (MARK.format(mark=str(mark)) + textwrap.dedent(source)).encode()
    if captioner:
        base = write_tiny_captioner(root)
        files = {role: root / ref.path for role, ref in base.manifest.files.items()}
        return write_tiny_captioner(
            root,
            files={**files, "pipeline": code},
            filenames={
                "encoder": "encoder.onnx",
                "decoder": "decoder.onnx",
                "vocab": "vocab.txt",
                "pipeline": "pipeline.py",
            },
        )
    return write_tiny_bundle(
        root,
        files={"model": tiny_classifier_onnx(), "labels": ("\n".join(TINY_LABELS) + "\n").encode(), "pipeline": code},
        filenames={"model": "model.onnx", "labels": "labels.txt", "pipeline": "pipeline.py"},
    )


def ran(bundle: Bundle) -> bool:
    return (bundle.root.parent / f"{bundle.root.name}.ran").exists()
