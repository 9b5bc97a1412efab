"""The local Lambda's live dashboard: `GET /_lambdalite/` on the serve port.

One self-contained HTML page (`dashboard.html`: inline CSS and JavaScript, no CDN, no build
step) that polls `/_lambdalite/api/state` (see `metrics.Telemetry.state`) every second and draws:
instances over time (starting, idle, busy), invocations per second, the latency histogram with
p50 and p99, cold starts with their init phases, errors by type, the latest REPORT lines and the
running cost estimate. Everything under `/_lambdalite/` belongs to serve; the function's own
routes (its page at `/`, `/predict`, `/v2/...`) are untouched.
"""

from __future__ import annotations

from pathlib import Path

from lambdalite.toolkit.local.messages import Reply, Request
from lambdalite.toolkit.local.metrics import PREFIX
from lambdalite.toolkit.local.server import LambdaServer

__all__ = ["DASHBOARD_PATH", "attach"]

DASHBOARD_PATH = PREFIX + "/"
_PAGE = Path(__file__).with_name("dashboard.html")


def attach(server: LambdaServer) -> None:
    """Answer the dashboard page on `server`'s port (with a `Telemetry` attached for its data)."""
    page = _PAGE.read_bytes()

    async def route(request: Request) -> Reply | None:
        if request.method == "GET" and request.path == PREFIX:  # the page's links are relative to the folder
            return Reply(301, [("Location", DASHBOARD_PATH)])
        if request.method == "GET" and request.path in (DASHBOARD_PATH, PREFIX + "/index.html"):
            headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
            return Reply(200, headers, page)
        return None

    server.routes.append(route)
