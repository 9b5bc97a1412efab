"""A container image recipe: a Dockerfile on AWS's Lambda Python base image, and its build context.

The context holds the handler package, the model bundle and a `requirements.txt` pinned to the
exact wheels (with sha256 hashes) that the zip build would ship for the same target, so the
image carries the same code and the model is inside it: nothing is downloaded at cold start.
Images may be 10 GB, so this is the way out when a model is too big for a zip.

    write_dockerfile(context, target=Target("3.12", "arm64"), wheels=wheels, model_env="/var/task/model")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lambdalite.toolkit.deploy.package import HANDLER
from lambdalite.toolkit.deploy.target import Target
from lambdalite.toolkit.deploy.wheels import Wheel

__all__ = ["build_command", "write_dockerfile"]

_DOCKERFILE = """\
# lambdalite function image: {description}
# Build for Lambda (one platform, and no provenance attestations: Lambda rejects image indexes):
#   {build}
FROM {base_image}

# Dependencies first, so a new model or new code reuses this layer. The hashes pin the exact
# {platform} wheels; bytecode is compiled now because /var/task is read-only on Lambda.
COPY requirements.txt ${{LAMBDA_TASK_ROOT}}/
RUN pip install --no-cache-dir --no-deps --only-binary=:all: --require-hashes \\
        --target "${{LAMBDA_TASK_ROOT}}" -r "${{LAMBDA_TASK_ROOT}}/requirements.txt" \\
    && rm "${{LAMBDA_TASK_ROOT}}/requirements.txt" \\
    && python -m compileall -q --invalidation-mode unchecked-hash "${{LAMBDA_TASK_ROOT}}"
{model}
COPY lambdalite/ ${{LAMBDA_TASK_ROOT}}/lambdalite/
RUN python -m compileall -q --invalidation-mode unchecked-hash "${{LAMBDA_TASK_ROOT}}/lambdalite"

ENV LAMBDALITE_MODEL={model_env}
CMD ["{handler}"]
"""
_MODEL = """
# The model, inside the image: nothing is downloaded at cold start.
COPY model/ ${LAMBDA_TASK_ROOT}/model/
"""


def build_command(target: Target, tag: str) -> str:
    return f"docker build --platform linux/{target.arch} --provenance=false -t {tag} ."


def write_dockerfile(
    context: Path,
    *,
    target: Target,
    wheels: Sequence[Wheel],
    model_env: str,
    description: str,
    tag: str,
    ship_model: bool,
) -> Path:
    """Write `Dockerfile` and `requirements.txt` into `context` (which already holds the code)."""
    lines = [f"{w.name}=={w.version} --hash=sha256:{w.sha256}" for w in wheels]
    (context / "requirements.txt").write_text("\n".join(lines) + "\n")
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(
        _DOCKERFILE.format(
            description=description,
            build=build_command(target, tag),
            base_image=target.base_image,
            platform=f"{target.runtime} {target.arch}",
            model=_MODEL if ship_model else "",
            model_env=model_env,
            handler=HANDLER,
        )
    )
    return dockerfile
