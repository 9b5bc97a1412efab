"""The Lambda entry point: handler string `lambdalite.handler.handler`.

Importing this module is the function's init phase: the model is resolved (LAMBDALITE_MODEL,
MODEL_BUCKET/MODEL_KEY, or a bundle shipped in $LAMBDA_TASK_ROOT/model), loaded, warmed up and
the phases logged, once. `handler` then answers each event with the loaded model; nothing is
loaded per request.
"""

from __future__ import annotations

from typing import Any

from .function import Function
from .types import LambdaContext

__all__ = ["function", "handler"]

function = Function.from_env()


def handler(event: Any, context: LambdaContext) -> Any:
    return function(event, context)
