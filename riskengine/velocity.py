"""Velocity counters: Redis sorted sets, with the database as the fallback when Redis is down.

Four event streams are counted per identifier (email, IP, device, card fingerprint):
orders placed, failed payments, distinct cards seen, and distinct emails seen (one card or device
under many emails is a stolen card or a ring). Redis answers in one pipeline round trip;
if it cannot be reached the same counts come from PostgreSQL, so the engine keeps deciding.
"""

import hashlib
import logging
import time
from datetime import timedelta

import redis
from django.conf import settings
from django.db.models import CharField, Count, ExpressionWrapper, Q
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from riskengine.config import LINK_FIELDS
from riskengine.signals import email_key

logger = logging.getLogger(__name__)

METRICS = ("orders", "failed_payments", "distinct_cards", "distinct_emails")
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
    """Record one event (an order id, a failure id, a card fingerprint for distinct_cards, an email for
    distinct_emails)."""
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


def _declined_card() -> ExpressionWrapper:
    """A failed attempt's card fingerprint, data->>'card', compared as plain text on every database.

    A bare KeyTextTransform keeps the JSON lookups of KeyTransform: on SQLite (the demo) `card=""` or
    `card__in=[...]` compares with JSON_EXTRACT('<value>', '$'), which raises "malformed JSON" for any value
    that is not JSON text, so one declined card broke every pay page for the whole velocity window.
    Wrapped, the lookups are those of a text column; PostgreSQL still sees data->>'card', the expression of
    the orderevent_failed_card partial index.
    """
    return ExpressionWrapper(KeyTextTransform("card", "data"), output_field=CharField())


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
    return _database_counts_many(requests), "database"


def velocity_counts(*, metric: str, ids: dict[str, str], window_seconds: int) -> tuple[dict[str, int], str]:
    """Count events per identifier in the window. Returns (counts, source) with source redis or database."""
    requests = [(metric, kind, value, window_seconds) for kind, value in ids.items()]
    counts, source = velocity_counts_many(requests)
    return {kind: counts[(metric, kind, value, window_seconds)] for kind, value in ids.items()}, source


def _database_counts_many(requests: list[Request]) -> dict[Request, int]:
    """The same counts from PostgreSQL: one query per metric asked for, whatever the identifiers and windows.

    Orders and failed payments are counted with one filtered COUNT per request over the rows matching
    any of the identifiers; distinct cards are collected from paid orders and declined attempts and
    counted per request in memory (a shopper's own rows are few).
    """
    from orders.models import Order

    now = timezone.now()
    counts: dict[Request, int] = {}
    for metric in METRICS:
        wanted = [r for r in requests if r[0] == metric]
        if not wanted:
            continue
        since = {r: now - timedelta(seconds=r[3]) for r in wanted}
        earliest = min(since.values())
        by_identifier = Q()
        for _, kind, value, _ in wanted:
            by_identifier |= Q(**{LINK_FIELDS[kind]: value})
        if metric == "orders":
            aggregates = {
                f"n{i}": Count("pk", filter=Q(**{LINK_FIELDS[r[1]]: r[2]}, created_at__gte=since[r]))
                for i, r in enumerate(wanted)
            }
            row = Order.objects.filter(by_identifier, created_at__gte=earliest).aggregate(**aggregates)
            counts.update({r: row[f"n{i}"] for i, r in enumerate(wanted)})
        elif metric == "failed_payments":
            counts.update(_failed_payment_counts(wanted, since, earliest))
        else:
            counts.update(_distinct_counts(wanted, since, earliest, by_identifier, of=metric.split("_", 1)[1]))
    return counts


def _failed_payment_counts(wanted: list[Request], since: dict, earliest) -> dict[Request, int]:
    """Failed attempts per identifier: by the order's email, IP or device, or by the declined card itself."""
    from orders.models import Order, OrderEvent

    failed = OrderEvent.objects.filter(type="payment_failed", created_at__gte=earliest)
    counts: dict[Request, int] = {}
    cards = [r for r in wanted if r[1] == "card"]
    if cards:  # the (data->>'card', created_at) partial index
        rows = (
            failed.annotate(card=_declined_card())
            .filter(card__in=[r[2] for r in cards])
            .aggregate(
                **{f"n{i}": Count("pk", filter=Q(card=r[2], created_at__gte=since[r])) for i, r in enumerate(cards)}
            )
        )
        counts.update({r: rows[f"n{i}"] for i, r in enumerate(cards)})
    others = [r for r in wanted if r[1] != "card"]
    if others:
        by_identifier = Q()
        for _, kind, value, _ in others:
            by_identifier |= Q(**{LINK_FIELDS[kind]: value})
        rows = failed.filter(order__in=Order.objects.filter(by_identifier)).aggregate(
            **{
                f"n{i}": Count("pk", filter=Q(**{f"order__{LINK_FIELDS[r[1]]}": r[2]}, created_at__gte=since[r]))
                for i, r in enumerate(others)
            }
        )
        counts.update({r: rows[f"n{i}"] for i, r in enumerate(others)})
    return counts


def _distinct_counts(wanted: list[Request], since: dict, earliest, by_identifier: Q, *, of: str) -> dict[Request, int]:
    """Distinct cards (`of="cards"`) or emails (`of="emails"`) seen per identifier: on orders (the card paid
    with) and on declined attempts (the declined card, which also counts as the attempt's card identifier)."""
    from orders.models import Order, OrderEvent

    fields = list(LINK_FIELDS.values())
    card_field = LINK_FIELDS["card"]
    seen: list[tuple[dict, str, str, object]] = []  # (identifier values, card, email, when)
    orders = Order.objects.filter(by_identifier, created_at__gte=earliest)
    if of == "cards":
        orders = orders.exclude(card_fingerprint="")
    for row in orders.values(*fields, "created_at"):
        seen.append((row, row[card_field], row["email"], row["created_at"]))
    declined_by = by_identifier
    cards = [value for _, kind, value, _ in wanted if kind == "card"]
    declined = (
        OrderEvent.objects.filter(type="payment_failed", created_at__gte=earliest)
        .annotate(card=_declined_card())
        .exclude(card="")
        .exclude(card__isnull=True)
    )
    declined = declined.filter(Q(order__in=Order.objects.filter(declined_by)) | Q(card__in=cards))
    for row in declined.values("card", "created_at", *(f"order__{f}" for f in fields)):
        ids = {f: row[f"order__{f}"] for f in fields} | {card_field: row["card"]}
        seen.append((ids, row["card"], ids["email"], row["created_at"]))
    counts: dict[Request, int] = {}
    for request in wanted:
        _, kind, value, _ = request
        field = LINK_FIELDS[kind]
        found = {
            (card if of == "cards" else email_key(email or ""))
            for ids, card, email, when in seen
            if str(ids[field]) == value and when >= since[request]
        }
        counts[request] = len(found - {None, ""})
    return counts
