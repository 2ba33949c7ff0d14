"""Fixed-window rate limits in the cache (Redis in production).

Redis away, the limits fail open to the web process: each process counts in its own memory until the cache
answers again (storefront.outages' breaker, one warning per outage). Shoppers keep buying and looking up
orders, and a login flood is still stopped, per process, rather than let through or answered 500.
"""

import time

from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.utils.translation import gettext_lazy as _

from storefront.outages import CACHE_ERRORS, cache_breaker

# The one message every refused attempt shows (web pages, login, the API's error envelope).
RATE_LIMITED_MESSAGE = _("Too many attempts. Please try again later.")
HOUR = 3600
# Where attempts are counted while the cache is unreachable: this process's memory.
_local_counts = LocMemCache("storefront-ratelimit-fallback", {"OPTIONS": {"MAX_ENTRIES": 100_000}})


def rate_limit_hit(*, scope: str, key: str, limit: int, window_seconds: int) -> bool:
    """Count one attempt; True when the caller is over `limit` in the current window."""
    window = int(time.time() // window_seconds)
    cache_key = f"{settings.RATE_LIMIT_PREFIX}:{scope}:{key}:{window}"
    if cache_breaker.available():
        try:
            return _count(cache, cache_key, limit=limit, timeout=window_seconds + 5)
        except CACHE_ERRORS as exc:
            cache_breaker.trip(exc, doing=f"counting {scope} attempts")
    return _count(_local_counts, cache_key, limit=limit, timeout=window_seconds + 5)


def _count(store, cache_key: str, *, limit: int, timeout: int) -> bool:
    if store.add(cache_key, 1, timeout=timeout):
        return limit < 1
    try:
        return store.incr(cache_key) > limit
    except ValueError:
        store.set(cache_key, 1, timeout=timeout)
        return limit < 1


def client_rate_limited(request, *, scope: str, limit: int, window_seconds: int = HOUR) -> bool:
    """Count one attempt of this client IP at `scope`; True when it is over `limit` in the window."""
    return rate_limit_hit(scope=scope, key=client_ip(request) or "-", limit=limit, window_seconds=window_seconds)


def retry_after_seconds(window_seconds: int = HOUR) -> int:
    """Seconds until the current fixed window ends (for a Retry-After header)."""
    return window_seconds - int(time.time()) % window_seconds


def client_ip(request) -> str | None:
    """The shopper's address: REMOTE_ADDR, or the entry our own proxies added to X-Forwarded-For.

    Only the last TRUSTED_PROXY_COUNT hops are believed; anything further left was written
    by the client and could be forged.
    """
    hops = settings.TRUSTED_PROXY_COUNT
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if hops and len(forwarded) >= hops:
        return forwarded[-hops]
    return request.META.get("REMOTE_ADDR") or None
