"""Per-caller API rate limits, called from the auth hook once the caller is known.

Authenticated requests are metered per principal (API key id, or JWT subject) so one noisy
client cannot starve the others behind the same NAT; `POST /api/v1/auth/token` and the other
open routes are metered per client IP, since there is no principal yet and password guessing
is what a login limit exists to slow down. `/health` is outside `/api/v1` and never metered.

Failed authentications (a bad API key, a forged or expired token, a bad refresh token or webhook
signature) spend a separate per-IP budget, checked *before* any credential is looked at: once it
is spent every request with credentials from that address gets 429, so guessing stops and a
right guess cannot be told apart from a wrong one.

Over the limit: 429 `rate_limited` with `Retry-After` (whole seconds). Redis down: 503 naming
`redis` (fail closed; see `agent33.security.ratelimit`). Client IP is `request.remote_addr`:
behind a reverse proxy, wrap the app in werkzeug's ProxyFix so that is the real client.
"""

from __future__ import annotations

import functools

import flask

from agent33.config import RateSpec, parse_rate
from agent33.security import audit
from agent33.security.ratelimit import RateLimited, RateLimitUnavailable, limiter_for
from web.errors import ResponseTuple, envelope
from web.extensions import get_settings

LOGIN_ROUTE = ("POST", "/api/v1/auth/token")


def client_ip() -> str | None:
    return flask.request.remote_addr


def _limit(
    bucket: str,
    rate: RateSpec | None,
    burst: int | None,
    principal: str | None,
    *,
    peek: bool = False,
) -> None:
    """Spend (or, with `peek`, check) one token; `burst` None allows a whole period at once."""
    if rate is None:
        return
    burst = burst or rate.count
    decision = limiter_for(get_settings()).hit(bucket, rate, burst, peek=peek)
    if decision.allowed:
        return
    request = flask.request
    if decision.first_denial:  # one audit row per refusal window, not one per flooded request
        audit.record_now(
            action="auth.rate_limited",
            outcome="denied",
            principal=principal,
            ip=client_ip(),
            target=f"{request.method} {request.path}",
            details={"bucket": bucket.split(":", 1)[0], "limit": str(rate), "burst": burst},
        )
    raise RateLimited(
        f"rate limit exceeded ({rate}, burst {burst}); retry in {decision.retry_after_seconds}s",
        retry_after=decision.retry_after_seconds,
    )


def limit_principal(
    bucket: str, subject: str, own_rate: str | None = None, own_burst: int | None = None
) -> None:
    """Meter an authenticated request; `bucket` names the principal (`key:<id>`, `sub:<name>`).

    A key created with its own `rate_limit`/`rate_burst` is metered by those instead.
    """
    settings = get_settings()
    if own_rate is None:
        _limit(bucket, settings.rate_limit, own_burst or settings.rate_burst, subject)
    else:
        _limit(bucket, _key_rate(own_rate), own_burst, subject)


@functools.lru_cache(maxsize=1024)
def _key_rate(text: str) -> RateSpec | None:
    """A key's stored limit, parsed once per process (it was validated when the key was made)."""
    return parse_rate("rate_limit", text)


def limit_anonymous() -> None:
    """Meter an open-route request by client IP: logins against the stricter login limit."""
    settings = get_settings()
    request = flask.request
    ip = client_ip() or "unknown"
    if (request.method, request.path) == LOGIN_ROUTE:
        _limit(f"login:{ip}", settings.login_rate_limit, None, None)
    else:
        _limit(f"ip:{ip}", settings.rate_limit, settings.rate_burst, None)


def _failure_bucket() -> str:
    return f"authfail:{client_ip() or 'unknown'}"


def refuse_if_failing() -> None:
    """Before checking a credential: 429 when this address has spent its failure budget."""
    _limit(_failure_bucket(), get_settings().auth_failure_rate_limit, None, None, peek=True)


def count_auth_failure() -> None:
    """After a credential failed: spend one token of this address's failure budget."""
    _limit(_failure_bucket(), get_settings().auth_failure_rate_limit, None, None)


def handle_rate_limited(error: RateLimited) -> ResponseTuple:
    return envelope(
        429, error.code, error.message, error.fields, {"Retry-After": str(error.retry_after)}
    )


def handle_unavailable(error: RateLimitUnavailable) -> ResponseTuple:
    return envelope(503, error.code, error.message, error.fields, {"Retry-After": "5"})


def init_app(app: flask.Flask) -> None:
    """Register the 429/503 handlers (more specific than the generic Agent33Error one)."""
    app.register_error_handler(RateLimited, handle_rate_limited)
    app.register_error_handler(RateLimitUnavailable, handle_unavailable)
