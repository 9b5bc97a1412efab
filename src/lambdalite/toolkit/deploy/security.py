"""What the plan and the size report say about the front door: who may call, how often, at what cost.

Pure (no AWS): `front_door(settings, arch)` is a few lines for a terminal; `warnings(...)` are
the settings that leave the function open to anyone who finds its URL, with what that could cost.
"""

from __future__ import annotations

from lambdalite.toolkit.access import API_PRICE_PER_MILLION, describe_auth, monthly_worst_case
from lambdalite.toolkit.deploy.template import Settings

__all__ = ["front_door", "notes", "warnings"]

_API_NAMES = {"http": "HTTP API", "rest": "REST API", "none": "no API"}


def _spend_line(settings: Settings, arch: str, *, quota: bool, throttled: bool = True) -> str:
    assert settings.api is not None
    spend = monthly_worst_case(
        api=settings.api,
        memory_mb=settings.memory,
        arch=arch,
        throttle=settings.throttle if throttled and settings.api != "none" else None,
        quota=settings.quota if quota else None,
        reserved_concurrency=settings.reserved_concurrency,
    )
    if spend is None:
        return "nothing caps it but the account's concurrency limit (add --reserved-concurrency N)"
    return (
        f"at most {spend.requests:,} requests a month, about ${spend.usd:,.0f} "
        f"(capped by {spend.bound}; 1 s of {settings.memory} MB each)"
    )


def front_door(settings: Settings, arch: str = "x86_64") -> list[str]:
    """The front door in a few lines (printed in the size report and the deploy plan)."""
    assert settings.api is not None
    lines = [
        f"front door: {_API_NAMES[settings.api]}, auth {settings.auth} ({describe_auth(settings.auth, settings.api)})"
    ]
    if settings.api != "none":
        lines.append(f"  throttle:    {settings.throttle} on every route (stage)")
    if settings.quota is not None:
        lines.append(f"  usage plan:  {settings.throttle} and {settings.quota} per key")
    if settings.function_url:
        lines.append(f"  function URL: AuthType {settings.url_auth} (no throttle of its own)")
    if settings.reserved_concurrency is not None:
        lines.append(f"  concurrency: at most {settings.reserved_concurrency} instances (reserved)")
    else:
        lines.append("  concurrency: up to the account's limit (--reserved-concurrency N caps it)")
    origins = ", ".join(settings.cors_origins) if settings.cors_origins else "none (the page is same-origin)"
    lines.append(f"  CORS:        {origins}")
    open_url = settings.function_url and settings.url_auth == "NONE"
    lines.append(f"  worst case:  {_spend_line(settings, arch, quota=not open_url, throttled=not open_url)}")
    return lines


def _public(settings: Settings) -> list[str]:
    assert settings.api is not None
    doors = []
    if settings.auth == "none" and settings.api != "none":
        doors.append(f"the {_API_NAMES[settings.api]}")
    if settings.function_url and settings.url_auth == "NONE":
        doors.append("the Function URL")
    return doors


def warnings(settings: Settings, arch: str = "x86_64") -> list[str]:
    """Settings that let anyone who finds a URL spend the owner's money, and how much."""
    out = []
    doors = _public(settings)
    if doors:
        assert settings.api is not None
        price = API_PRICE_PER_MILLION.get(settings.api, 0.0)
        per_million = f"${price + 0.20:.2f} per million requests plus compute"
        spend = _spend_line(settings, arch, quota=False, throttled="the Function URL" not in doors)
        out.append(
            f"{' and '.join(doors)} {'are' if len(doors) > 1 else 'is'} public: anyone who finds the URL runs "
            f"the model on your account ({per_million}); {spend}. "
            f"Use --auth api-key (the default), iam or jwt"
        )
    return out


def notes(settings: Settings) -> list[str]:
    """Things about the front door that work but may surprise."""
    out = []
    if settings.function_url and settings.url_auth == "NONE" and settings.auth != "none":
        out.append(f"the Function URL is public (AuthType NONE): it bypasses the API's {settings.auth} auth")
    if "*" in settings.cors_origins and settings.auth != "none":
        out.append("--cors-origin '*' lets any web page call the API with a caller's key or token")
    if settings.reserved_concurrency is not None:
        out.append(
            "Lambda keeps 10 of an account's concurrency unreserved: on an account whose limit is still 10, "
            "a reservation fails (ask Service Quotas for more)"
        )
    if settings.auth == "api-key":
        out.append("deploy prints the API key once; `lambdalite api-key --stack NAME` reads it again")
    return out
