"""Fixed-window rate limits in the cache (Redis in production)."""

import time

from django.core.cache import cache


def rate_limit_hit(*, scope: str, key: str, limit: int, window_seconds: int) -> bool:
    """Count one attempt; True when the caller is over `limit` in the current window."""
    window = int(time.time() // window_seconds)
    cache_key = f"rl:{scope}:{key}:{window}"
    if cache.add(cache_key, 1, timeout=window_seconds + 5):
        return limit < 1
    try:
        return cache.incr(cache_key) > limit
    except ValueError:
        cache.set(cache_key, 1, timeout=window_seconds + 5)
        return limit < 1


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None
