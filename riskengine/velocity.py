"""Velocity counters: Redis sorted sets, with the database as the fallback when Redis is down.

Three event streams are counted per identifier (email, IP, device, card fingerprint):
orders placed, failed payments, and distinct cards seen. Redis answers in one pipeline round trip;
if it cannot be reached the same counts come from PostgreSQL, so the engine keeps deciding.
"""

import hashlib
import logging
import time
from datetime import timedelta

import redis
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

logger = logging.getLogger(__name__)

METRICS = ("orders", "failed_payments", "distinct_cards")
MAX_WINDOW_SECONDS = 30 * 24 * 3600
_client: redis.Redis | None = None


def _redis() -> redis.Redis | None:
    global _client
    if not settings.REDIS_URL:
        return None
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=0.05, socket_timeout=0.05, health_check_interval=30
        )
    return _client


def _key(metric: str, kind: str, value: str) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]  # no raw email or IP in Redis keys
    return f"risk:v:{metric}:{kind}:{digest}"


def velocity_record(*, metric: str, ids: dict[str, str], member: str, at: float | None = None) -> None:
    """Record one event (an order id, a failure id, or a card fingerprint for distinct_cards)."""
    client = _redis()
    if client is None:
        return
    now = at or time.time()
    try:
        pipe = client.pipeline(transaction=False)
        for kind, value in ids.items():
            key = _key(metric, kind, value)
            pipe.zadd(key, {member: now})
            pipe.zremrangebyscore(key, 0, now - MAX_WINDOW_SECONDS)
            pipe.expire(key, MAX_WINDOW_SECONDS)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning(
            "velocity: redis unavailable while recording (%s); database fallback applies", type(exc).__name__
        )


def velocity_counts(*, metric: str, ids: dict[str, str], window_seconds: int) -> tuple[dict[str, int], str]:
    """Count events per identifier in the window. Returns (counts, source) with source redis or database."""
    client = _redis()
    if client is not None:
        now = time.time()
        try:
            pipe = client.pipeline(transaction=False)
            for kind, value in ids.items():
                pipe.zcount(_key(metric, kind, value), now - window_seconds, "+inf")
            return dict(zip(ids, (int(n) for n in pipe.execute()), strict=True)), "redis"
        except redis.RedisError as exc:
            logger.warning("velocity: redis unavailable (%s); counting from the database", type(exc).__name__)
    return _database_counts(metric=metric, ids=ids, window_seconds=window_seconds), "database"


_ORDER_FIELDS = {"email": "email", "ip": "purchase_ip", "device": "device_id", "card": "card_fingerprint"}


def _database_counts(*, metric: str, ids: dict[str, str], window_seconds: int) -> dict[str, int]:
    from orders.models import Order, OrderEvent

    since = timezone.now() - timedelta(seconds=window_seconds)
    counts = {}
    for kind, value in ids.items():
        field = _ORDER_FIELDS[kind]
        orders = Order.objects.filter(**{field: value}, created_at__gte=since)
        if metric == "orders":
            counts[kind] = orders.count()
        elif metric == "failed_payments":
            by_card = Q(data__card=value) if kind == "card" else Q(order__in=Order.objects.filter(**{field: value}))
            counts[kind] = OrderEvent.objects.filter(by_card, type="payment_failed", created_at__gte=since).count()
        else:
            paid_cards = set(orders.exclude(card_fingerprint="").values_list("card_fingerprint", flat=True))
            failed_cards = set(
                OrderEvent.objects.filter(
                    order__in=Order.objects.filter(**{field: value}), type="payment_failed", created_at__gte=since
                )
                .exclude(data__card="")
                .values_list("data__card", flat=True)
            )
            counts[kind] = len((paid_cards | failed_cards) - {None, ""})
    return counts
