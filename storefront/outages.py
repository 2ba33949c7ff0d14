"""Outages of what the shop stands on (PostgreSQL, Redis), met once, at the edge, so no shopper sees a 500.

- The cache (Redis) is optional for shoppers: rate limits count in the web process's memory and sessions
  live in the database while it is away (storefront.ratelimit, storefront.sessions). A breaker skips it for
  CACHE_RETRY_SECONDS after an error, so a hung Redis costs one timeout, not one per request, and the outage
  is logged once per process, not on every request.
- The database (or the broker, for the few requests that send a task themselves) being unreachable is
  answered by OutageMiddleware: a 503 "try again" page in the shopper's language, the API's JSON error
  envelope under /api/, and JSON to payment webhooks, whose providers deliver again after a 503.
"""

import logging
import threading
import time

import kombu.exceptions
import redis
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

logger = logging.getLogger(__name__)

CACHE_RETRY_SECONDS = 10.0
# What the cache raises when Redis is down, hung or restarting (redis-py wraps socket errors itself).
CACHE_ERRORS = (redis.RedisError, OSError)
RETRY_AFTER_SECONDS = 30
UNAVAILABLE_MESSAGE = gettext_lazy("The shop is briefly unavailable. Please try again in a minute.")
PAYMENT_SAFE_NOTE = gettext_lazy(
    "If you have already paid, your payment is safe: your order is delivered as soon as the shop is back."
)
WEBHOOK_VIEWS = {"stripe-webhook", "channel-webhook"}


class CacheBreaker:
    """Whether to try the cache now; opened by an error for `retry_seconds`, then tried again."""

    def __init__(self, *, retry_seconds: float = CACHE_RETRY_SECONDS):
        self.retry_seconds = retry_seconds
        self._down_until = 0.0
        self._lock = threading.Lock()

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def trip(self, exc: Exception, *, doing: str) -> None:
        """Skip the cache for a while; log once when it goes from working to not (not on every request)."""
        with self._lock:
            was_closed = self.available()
            self._down_until = time.monotonic() + self.retry_seconds
        if was_closed:
            logger.warning(
                "cache unavailable while %s (%s): going on without it, trying again in %.0f s",
                doing,
                type(exc).__name__,
                self.retry_seconds,
            )

    def reset(self) -> None:
        with self._lock:
            self._down_until = 0.0


cache_breaker = CacheBreaker()


def cache_guarded(operation, *, doing: str, default=None):
    """Run `operation()` against the cache unless the breaker is open; `default` if it is, or if it fails."""
    if not cache_breaker.available():
        return default
    try:
        return operation()
    except CACHE_ERRORS as exc:
        cache_breaker.trip(exc, doing=doing)
        return default


# --- database and broker outages ----------------------------------------------------------------------------

OUTAGE_ERRORS = (OperationalError, InterfaceError, kombu.exceptions.OperationalError)


class OutageMiddleware:
    """A view that failed because PostgreSQL (or the broker) could not be reached answers 503, never 500.

    Last in MIDDLEWARE, so it sees the view's exception first. Sessions are not saved on a 5xx answer
    (SessionMiddleware), and the page renders without touching the database or the session.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OUTAGE_ERRORS):
            return None
        logger.warning(
            "%s %s answered 503: %s unreachable (%s)",
            request.method,
            request.path,
            "broker" if isinstance(exception, kombu.exceptions.OperationalError) else "database",
            type(exception).__name__,
        )
        return outage_response(request)


def outage_response(request) -> HttpResponse:
    """503 with Retry-After: JSON for the API and webhooks, a page in the shopper's language otherwise."""
    match = getattr(request, "resolver_match", None)
    if request.path_info.startswith("/api/") or (match is not None and match.url_name in WEBHOOK_VIEWS):
        response = JsonResponse({"error": {"code": "unavailable", "message": str(UNAVAILABLE_MESSAGE)}}, status=503)
    else:
        response = unavailable_page(
            request,
            title=_("Please try again in a minute"),
            message=str(UNAVAILABLE_MESSAGE),
            note=str(PAYMENT_SAFE_NOTE),
        )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def unavailable_page(request, *, title: str, message: str, note: str = "", status: int = 503) -> HttpResponse:
    """A page that says what happened and offers to try again, rendered without the database or the session
    (no context processors: they read the cart from the session)."""
    retry_url = request.get_full_path() if request.method == "GET" else request.path
    html = render_to_string(
        "storefront/unavailable.html",
        {
            "title": title,
            "message": message,
            "note": note,
            "retry_url": retry_url,
            "csp_nonce": getattr(request, "csp_nonce", ""),
        },
    )
    response = HttpResponse(html, status=status)
    response["Cache-Control"] = "no-store"
    return response
