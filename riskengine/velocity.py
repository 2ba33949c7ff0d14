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
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

logger = logging.getLogger(__name__)

METRICS = ("orders", "failed_payments", "distinct_cards")
MAX_WINDOW_SECONDS = 30 * 24 * 3600
BREAKER_SECONDS = 10.0
_client: redis.Redis | None = None
_down_until: dict[int, float] = {}  # per client: skip Redis until then after an error (a hung Redis costs 50 ms)


def _redis() -> redis.Redis | None:
    global _client
    if not settings.REDIS_URL:
        return None
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=0.05, socket_timeout=0.05, health_check_interval=30
        )
    if _down_until.get(id(_client), 0.0) > time.monotonic():
        return None
    return _client


def _trip(client: redis.Redis, exc: Exception, doing: str) -> None:
    _down_until[id(client)] = time.monotonic() + BREAKER_SECONDS
    logger.warning(
        "velocity: redis unavailable while %s (%s); database fallback for %.0fs",
        doing,
        type(exc).__name__,
        BREAKER_SECONDS,
    )


def _key(metric: str, kind: str, value: str) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]  # no raw email or IP in Redis keys
    return f"{settings.RISK_VELOCITY_PREFIX}:{metric}:{kind}:{digest}"


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
        _trip(client, exc, "recording")


Request = tuple[str, str, str, int]  # metric, identifier kind, identifier value, window seconds


def velocity_counts_many(requests: list[Request]) -> tuple[dict[Request, int], str]:
    """Every count the velocity rules need, in one Redis round trip (or from the database)."""
    requests = list(dict.fromkeys(requests))
    client = _redis()
    if client is not None and requests:
        now = time.time()
        try:
            pipe = client.pipeline(transaction=False)
            for metric, kind, value, window in requests:
                pipe.zcount(_key(metric, kind, value), now - window, "+inf")
            return dict(zip(requests, (int(n) for n in pipe.execute()), strict=True)), "redis"
        except redis.RedisError as exc:
            _trip(client, exc, "counting")
    counts = {}
    for metric, kind, value, window in requests:
        counts[(metric, kind, value, window)] = _database_counts(
            metric=metric, ids={kind: value}, window_seconds=window
        )[kind]
    return counts, "database"


def velocity_counts(*, metric: str, ids: dict[str, str], window_seconds: int) -> tuple[dict[str, int], str]:
    """Count events per identifier in the window. Returns (counts, source) with source redis or database."""
    requests = [(metric, kind, value, window_seconds) for kind, value in ids.items()]
    counts, source = velocity_counts_many(requests)
    return {kind: counts[(metric, kind, value, window_seconds)] for kind, value in ids.items()}, source


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
            failed = OrderEvent.objects.filter(type="payment_failed", created_at__gte=since)
            if kind == "card":  # matches the (data->>'card', created_at) partial index
                failed = failed.annotate(card=KeyTextTransform("card", "data")).filter(card=value)
            else:
                failed = failed.filter(order__in=Order.objects.filter(**{field: value}))
            counts[kind] = failed.count()
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
