"""The Lambda entry point: handler string `lambdalite.handler.handler`.

Importing this module is the function's init phase: the settings are read from the
environment once (a bad value fails the init with a `ConfigError` naming it), the model is
resolved (LAMBDALITE_MODEL, MODEL_BUCKET/MODEL_KEY, or a bundle shipped in
$LAMBDA_TASK_ROOT/model), loaded, warmed up and the phases logged, once. `handler` then
answers each event with the loaded model; nothing is loaded per request. With SnapStart
(AWS_LAMBDA_INITIALIZATION_TYPE=snap-start) the init also registers the function's runtime
hooks (`lambdalite.function.snapstart`).
"""

from __future__ import annotations

from typing import Any

from lambdalite.function.app import Function
from lambdalite.function.types import LambdaContext
from lambdalite.settings import Settings

__all__ = ["function", "handler"]

_settings = Settings.from_env()
if _settings.snap_start:
    from lambdalite.function import snapstart

    function = snapstart.init(_settings)
else:
    function = Function.from_settings(_settings)


def handler(event: Any, context: LambdaContext) -> Any:
    return function(event, context)
