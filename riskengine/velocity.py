"""Velocity counters: Redis sorted sets, with the database as the fallback when Redis is down.

Four event streams are counted per identifier (email, IP, device, card fingerprint):
orders placed, failed payments, distinct cards seen, and distinct emails seen (one card or device
under many emails is a stolen card or a ring). Redis answers in one pipeline round trip;
if it cannot be reached the same counts come from PostgreSQL, so the engine keeps deciding.

As of an earlier moment (riskengine.asof, the backtest) the counts always come from PostgreSQL, over the
window ending at that moment and from the rows that had arrived by then: orders by their checkout, a card by
the payment that wrote it on its order (as Redis records 'card_used'), failed attempts written before it.
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

from orders.models import Order, OrderEvent
from riskengine.asof import as_of_cache, as_of_now
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
    moment = as_of_now()
    if moment is not None:
        return _database_counts_as_of(requests, moment), "database"
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


def _database_counts_as_of(requests: list[Request], moment) -> dict[Request, int]:
    """The counts as they stood at `moment`, each counted once per moment in an as-of block."""
    cache = as_of_cache()
    cache = {} if cache is None else cache
    missing = [r for r in requests if ("velocity", r) not in cache]
    if missing:
        timeline = (as_of_cache(shared=True) or {}).get(VelocityTimeline)
        counted = timeline.counts(missing, moment) if timeline is not None else None
        for request, n in (counted or _database_counts_many(missing, until=moment)).items():
            cache[("velocity", request)] = n
    return {r: cache[("velocity", r)] for r in requests}


class VelocityTimeline:
    """A period's orders and failed attempts held in memory, counted as _database_counts_many counts them as of
    a moment. A backtest asks thousands of moments: put one in the as-of block's shared cache, under this class,
    and each moment costs no query (tests/riskengine/test_backtest.py checks both count alike)."""

    def __init__(self, *, start, end):

        self.start, self.end = start - timedelta(seconds=MAX_WINDOW_SECONDS), end
        columns = list(LINK_FIELDS.values())
        self.orders: dict[tuple[str, str], list[tuple]] = {}  # (kind, value) -> [(placed, paid, card, email)]
        in_period = Q(created_at__gte=self.start, created_at__lte=end) | Q(paid_at__gte=self.start, paid_at__lte=end)
        for row in Order.objects.filter(in_period).values_list(*columns, "created_at", "paid_at").iterator(5000):
            ids = dict(zip(LINK_FIELDS, row, strict=False))
            for kind, value in ids.items():
                if value:
                    self.orders.setdefault((kind, str(value)), []).append((row[-2], row[-1], ids["card"], ids["email"]))
        self.failed: dict[tuple[str, str], list[tuple]] = {}  # (kind, value) -> [(when, declined card, email)]
        failed = OrderEvent.objects.filter(type="payment_failed", created_at__gte=self.start, created_at__lte=end)
        rows = failed.annotate(card=_declined_card()).values_list(
            "created_at", "card", *(f"order__{c}" for c in columns if c != LINK_FIELDS["card"])
        )
        for when, card, *values in rows.iterator(5000):
            ids = dict(zip([k for k in LINK_FIELDS if k != "card"], values, strict=True)) | {"card": card}
            for kind, value in ids.items():
                if value:
                    self.failed.setdefault((kind, str(value)), []).append((when, card or "", ids["email"]))

    def counts(self, requests: list[Request], moment) -> dict[Request, int] | None:
        """The counts as of `moment`, or None when a window reaches outside the period held."""
        found = {}
        for request in requests:
            metric, kind, value, window = request
            since = moment - timedelta(seconds=window)
            if since < self.start or moment > self.end:
                return None
            orders, failed = self.orders.get((kind, value), []), self.failed.get((kind, value), [])
            if metric == "orders":  # by their checkout; by card, from the payment that wrote it
                times = (paid if kind == "card" else placed for placed, paid, *_ in orders)
                found[request] = sum(1 for when in times if when is not None and since <= when <= moment)
            elif metric == "failed_payments":
                found[request] = sum(since <= when < moment for when, *_ in failed)
            elif metric in ("distinct_cards", "distinct_emails"):
                cards = metric == "distinct_cards"
                by_payment = cards or kind == "card"
                seen = {
                    card if cards else email_key(email or "")
                    for placed, paid, card, email in orders
                    if (not cards or card)
                    and (when := paid if by_payment else placed) is not None
                    and since <= when <= moment
                }
                seen |= {
                    card if cards else email_key(email or "")
                    for when, card, email in failed
                    if card and since <= when < moment
                }
                found[request] = len(seen - {None, ""})
        return found


def _database_counts_many(requests: list[Request], *, until=None) -> dict[Request, int]:
    """The same counts from PostgreSQL: one query per metric asked for, whatever the identifiers and windows.

    Orders and failed payments are counted with one filtered COUNT per request over the rows matching
    any of the identifiers; distinct cards are collected from paid orders and declined attempts and
    counted per request in memory (a shopper's own rows are few). With `until` (an earlier moment), only
    what had arrived by then counts, in windows ending then (see riskengine.asof).
    """

    now = timezone.now() if until is None else until
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
        if metric == "orders" and until is not None:
            counts.update(_order_counts_as_of(wanted, since, earliest, by_identifier, until))
        elif metric == "orders":
            aggregates = {
                f"n{i}": Count("pk", filter=Q(**{LINK_FIELDS[r[1]]: r[2]}, created_at__gte=since[r]))
                for i, r in enumerate(wanted)
            }
            row = Order.objects.filter(by_identifier, created_at__gte=earliest).aggregate(**aggregates)
            counts.update({r: row[f"n{i}"] for i, r in enumerate(wanted)})
        elif metric == "failed_payments":
            counts.update(_failed_payment_counts(wanted, since, earliest, until))
        else:
            of = metric.split("_", 1)[1]
            counts.update(_distinct_counts(wanted, since, earliest, by_identifier, of=of, until=until))
    return counts


def _order_counts_as_of(wanted: list[Request], since: dict, earliest, by_identifier: Q, until) -> dict[Request, int]:
    """Orders per identifier as Redis counted them then: by their checkout, and by card from their payment."""

    placed = Q(created_at__gte=earliest, created_at__lte=until)
    paid = Q(paid_at__gte=earliest, paid_at__lte=until)
    aggregates = {}
    for i, (_, kind, value, _) in enumerate(wanted):
        start = since[wanted[i]]
        if kind == "card":
            when = Q(paid_at__gte=start, paid_at__lte=until)
        else:
            when = Q(created_at__gte=start, created_at__lte=until)
        aggregates[f"n{i}"] = Count("pk", filter=Q(**{LINK_FIELDS[kind]: value}) & when)
    row = Order.objects.filter(by_identifier, placed | paid).aggregate(**aggregates)
    return {r: row[f"n{i}"] for i, r in enumerate(wanted)}


def _failed_payment_counts(wanted: list[Request], since: dict, earliest, until=None) -> dict[Request, int]:
    """Failed attempts per identifier: by the order's email, IP or device, or by the declined card itself."""

    failed = OrderEvent.objects.filter(type="payment_failed", created_at__gte=earliest)
    if until is not None:
        failed = failed.filter(created_at__lt=until)
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


def _distinct_counts(
    wanted: list[Request], since: dict, earliest, by_identifier: Q, *, of: str, until=None
) -> dict[Request, int]:
    """Distinct cards (`of="cards"`) or emails (`of="emails"`) seen per identifier: on orders (the card paid
    with) and on declined attempts (the declined card, which also counts as the attempt's card identifier).

    With `until`, an order is seen from its checkout, except where its card is what is counted or counted by
    (distinct cards; emails per card): from its payment, when Redis recorded it."""

    fields = list(LINK_FIELDS.values())
    card_field = LINK_FIELDS["card"]
    seen: list[tuple[dict, str, str, object, object]] = []  # (identifier values, card, email, placed, paid)
    if until is None:
        orders = Order.objects.filter(by_identifier, created_at__gte=earliest)
    else:
        placed = Q(created_at__gte=earliest, created_at__lte=until)
        orders = Order.objects.filter(by_identifier, placed | Q(paid_at__gte=earliest, paid_at__lte=until))
    if of == "cards":
        orders = orders.exclude(card_fingerprint="")
    for row in orders.values(*fields, "created_at", *(["paid_at"] if until else [])):
        seen.append((row, row[card_field], row["email"], row["created_at"], row.get("paid_at")))
    declined_by = by_identifier
    cards = [value for _, kind, value, _ in wanted if kind == "card"]
    declined = (
        OrderEvent.objects.filter(type="payment_failed", created_at__gte=earliest)
        .annotate(card=_declined_card())
        .exclude(card="")
        .exclude(card__isnull=True)
    )
    if until is not None:
        declined = declined.filter(created_at__lt=until)
    declined = declined.filter(Q(order__in=Order.objects.filter(declined_by)) | Q(card__in=cards))
    for row in declined.values("card", "created_at", *(f"order__{f}" for f in fields)):
        ids = {f: row[f"order__{f}"] for f in fields} | {card_field: row["card"]}
        seen.append((ids, row["card"], ids["email"], row["created_at"], row["created_at"]))
    counts: dict[Request, int] = {}
    for request in wanted:
        _, kind, value, _ = request
        field = LINK_FIELDS[kind]
        by_payment = until is not None and (of == "cards" or kind == "card")
        found = {
            (card if of == "cards" else email_key(email or ""))
            for ids, card, email, placed, paid in seen
            if str(ids[field]) == value
            and (when := paid if by_payment else placed) is not None
            and since[request] <= when
            and (until is None or when <= until)
        }
        counts[request] = len(found - {None, ""})
    return counts
