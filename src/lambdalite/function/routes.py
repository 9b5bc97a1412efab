"""The function's one routing table: which path and method is answered by what, else 404 / 405.

    router = Router([Route(r"/", {"GET": page}), ..., Route(r".*", {"POST": predict})])
    response, error = router.dispatch(request, unexpected=...)

Routes are tried in order; the first whose pattern matches the whole path owns the request. A
route without the request's method answers 405 with `Allow` (HEAD is answered as GET; the
front door drops the body); a route with no methods reserves its paths (404). Each route
renders errors in its own protocol's shape (the function's `{"error": {"type", "message"}}`,
the Open Inference Protocol's `{"error": "..."}`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from lambdalite.errors import InternalError, LambdaliteError, MethodNotAllowedError, RouteNotFoundError
from lambdalite.function.web import HttpRequest, HttpResponse, json_response

__all__ = ["Handler", "Route", "Router", "error_response"]

# (request, the path's match, the request's log record to add to) -> the answer
Handler = Callable[[HttpRequest, "re.Match[str]", dict[str, Any]], HttpResponse]


def error_response(exc: LambdaliteError) -> HttpResponse:
    """The function's error answer: `{"error": {"type", "message"}}` with the error's status."""
    headers = {"Allow": ", ".join(exc.allow)} if isinstance(exc, MethodNotAllowedError) and exc.allow else None
    return json_response({"error": {"type": exc.type_name, "message": str(exc)}}, exc.status, headers)


class Route(NamedTuple):
    pattern: str  # a regular expression the whole path must match
    methods: Mapping[str, Handler]  # empty: the paths exist for no method (404)
    render: Callable[[LambdaliteError], HttpResponse] = error_response


class Router:
    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = [(re.compile(route.pattern), route) for route in routes]

    def find(self, path: str) -> tuple[Route, re.Match[str]] | None:
        """The first route whose pattern matches the whole `path`, and the match."""
        for pattern, route in self.routes:
            found = pattern.fullmatch(path)
            if found is not None:
                return route, found
        return None

    @staticmethod
    def handler(route: Route, request: HttpRequest) -> Handler:
        """The route's handler for the request's method; RouteError when it has none."""
        if not route.methods:
            raise RouteNotFoundError(f"no such path: {request.path}")
        method = "GET" if request.method == "HEAD" and "HEAD" not in route.methods else request.method
        handler = route.methods.get(method)
        if handler is None:
            allow = tuple(route.methods) + (("HEAD",) if "GET" in route.methods and "HEAD" not in route.methods else ())
            raise MethodNotAllowedError(
                f"{request.method} is not supported on {request.path} (use {', '.join(allow)})", allow=allow
            )
        return handler

    def dispatch(
        self, request: HttpRequest, log: dict[str, Any], *, unexpected: Callable[[Exception], InternalError]
    ) -> tuple[HttpResponse, LambdaliteError | None]:
        """Answer `request`; the error it ended with, if any. Handlers add what the request's log
        record should say to `log`; `unexpected` turns any other exception into the
        InternalError the client sees (after logging it)."""
        found = self.find(request.path)
        render = found[0].render if found else error_response
        try:
            if found is None:
                raise RouteNotFoundError(f"no such path: {request.path}")
            route, match = found
            return self.handler(route, request)(request, match, log), None
        except LambdaliteError as exc:
            return render(exc), exc
        except Exception as exc:
            internal = unexpected(exc)
            return render(internal), internal
