"""A handler that answers API Gateway in its proxy shape: the event it got, as JSON."""

from __future__ import annotations

import json
from typing import Any


def echo(event: Any, context: Any) -> Any:
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps({"event": event})}
