"""Channel health: every provider call is recorded, and a channel that keeps failing is skipped for a while.

A timeout, an unreachable provider, a 5xx, or a refusal of the account itself (401, 403, 429) counts
against the channel; a decline or a rejected request is the provider working. `breaker_threshold`
failures in a row open the channel's breaker for `breaker_cooldown_seconds`; the router skips it
meanwhile. After the cool-down the next call is a trial: a success closes the breaker, a failure opens
it again at once (the count is only reset by a success).

The router ranks channels by their health on every checkout, so that figure is kept as calls complete
instead of being recounted from ProviderCall rows (a million rows in the window took 1.3 s): each call
adds to its channel's counters for the minute in Redis, and a read sums the last 30 minutes' buckets, a
fixed number of hashes whatever the call volume. The ProviderCall row is still written, as the audit log
the admin reads. Redis is optional here: without it calls still go through and health is unknown.
"""

import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import IntegrityError, connection, transaction
from django.db.models import Avg, Case, Count, F, Q, Value, When
from django.utils import timezone

from orders.models import Order
from payments.models import CallOutcome, PaymentChannel, ProviderCall
from payments.providers.base import NotSupported, PaymentDeclined, PaymentError, ProviderUnavailable
from payments.signals import breaker_opened

logger = logging.getLogger(__name__)

HEALTH_WINDOW = timedelta(minutes=30)
ACCOUNT_TROUBLE = {401, 403, 429}
FAILED = [CallOutcome.ERROR, CallOutcome.TIMEOUT]

WINDOW_MINUTES = int(HEALTH_WINDOW.total_seconds()) // 60
# A bucket outlives the window by a little, so the oldest minute read is never half expired.
COUNTER_TTL_SECONDS = (WINDOW_MINUTES + 2) * 60
# After a Redis error, counters are neither written nor read for this long: a hung Redis costs one short wait,
# not one per checkout and per provider call.
REDIS_RETRY_SECONDS = 10.0
# What a Redis that is down, hung or restarting raises (redis-py wraps most socket errors itself).
REDIS_ERRORS = (redis.RedisError, OSError)

_redis_skip_until = 0.0
_redis_failing = False


def _outcome(exc: BaseException | None) -> str:
    if exc is None or isinstance(exc, PaymentDeclined | NotSupported):
        return CallOutcome.SUCCESS if exc is None else CallOutcome.DECLINE
    if isinstance(exc, ProviderUnavailable):
        return CallOutcome.TIMEOUT if exc.timeout else CallOutcome.ERROR
    if isinstance(exc, PaymentError):
        status = exc.status
        if status is None or status >= 500 or status in ACCOUNT_TROUBLE:
            return CallOutcome.ERROR
        return CallOutcome.DECLINE  # the provider answered and refused this request
    return CallOutcome.ERROR


@contextmanager
def provider_call(*, channel: PaymentChannel, operation: str, order=None) -> Iterator[None]:
    """Time and record one provider call, count it towards the channel's health, and move the channel's
    breaker. Never inside a transaction."""
    started = time.perf_counter()
    failure: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        failure = exc
        raise
    finally:
        outcome = _outcome(failure)
        elapsed = time.perf_counter() - started
        call_log_add(
            channel_id=channel.pk,
            operation=operation,
            outcome=outcome,
            latency_ms=round(elapsed * 1000, 2),
            error="" if failure is None else (getattr(failure, "issue", "") or type(failure).__name__)[:100],
            order_id=getattr(order, "pk", None),
        )
        health_counters_add(channel_id=channel.pk, outcome=outcome, latency_us=round(elapsed * 1_000_000))
        breaker_record(channel=channel, failed=outcome in FAILED)


def breaker_record(*, channel: PaymentChannel, failed: bool) -> None:
    """Count a failure (opening the breaker at the threshold) or clear the count on a success."""
    if not failed:
        if channel.failures_in_row or channel.breaker_open_until:
            PaymentChannel.objects.filter(pk=channel.pk).update(failures_in_row=0, breaker_open_until=None)
            channel.failures_in_row, channel.breaker_open_until = 0, None
        return
    now = timezone.now()
    was_open = channel.breaker_open(now)
    reopen = now + timedelta(seconds=channel.breaker_cooldown_seconds)
    PaymentChannel.objects.filter(pk=channel.pk).update(
        failures_in_row=F("failures_in_row") + 1,
        breaker_open_until=Case(
            When(failures_in_row__gte=max(0, channel.breaker_threshold - 1), then=Value(reopen)),
            default=F("breaker_open_until"),
        ),
    )
    channel.refresh_from_db(fields=["failures_in_row", "breaker_open_until"])
    if channel.breaker_open(now):
        logger.warning(
            "payment channel %s: %d failures in a row, skipped until %s",
            channel.code,
            channel.failures_in_row,
            channel.breaker_open_until.isoformat(timespec="seconds"),
        )
        if not was_open:  # it has just opened: the merchants are told (storefront.flow.events)
            breaker_opened.send(sender=PaymentChannel, channel=channel)


@dataclass(frozen=True)
class ChannelHealth:
    calls: int = 0
    failures: int = 0  # errors and timeouts
    timeouts: int = 0
    average_latency_ms: float | None = None

    @property
    def success_rate(self) -> float | None:
        return None if not self.calls else (self.calls - self.failures) / self.calls

    @property
    def failure_rate(self) -> float:
        return 0.0 if not self.calls else self.failures / self.calls


# --- the counters in Redis (what the router reads on every checkout) -------------------------------------------


# One command each way, run inside Redis: add a call to its minute's hash; sum each channel's minutes.
_ADD_SCRIPT = """
redis.call('HINCRBY', KEYS[1], 'calls', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'failures', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'timeouts', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'latency_us_sum', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
"""
_READ_SCRIPT = """
local per_channel, sums = tonumber(ARGV[1]), {}
for i, key in ipairs(KEYS) do
  local base = math.floor((i - 1) / per_channel) * 4
  local v = redis.call('HMGET', key, 'calls', 'failures', 'timeouts', 'latency_us_sum')
  for j = 1, 4 do sums[base + j] = (sums[base + j] or 0) + (tonumber(v[j]) or 0) end
end
return sums
"""


def _counter_key(channel_id: int, minute: int) -> str:
    """One hash per channel and minute, through the cache's make_key so KEY_PREFIX and VERSION apply."""
    return caches["default"].make_key(f"chhealth:{channel_id}:{minute}")


def _epoch_minute() -> int:
    return int(timezone.now().timestamp()) // 60


def _redis_client(*, write: bool) -> redis.Redis | None:
    """The cache's own Redis client (its pool, timeouts and database), or None when the cache is not Redis
    (the demo's in-memory cache) or Redis failed a moment ago."""
    cache = caches["default"]
    if not isinstance(cache, RedisCache) or time.monotonic() < _redis_skip_until:
        return None
    return cache._cache.get_client(write=write)


def _redis_failed(exc: Exception, *, doing: str) -> None:
    """Skip Redis for REDIS_RETRY_SECONDS; warn when it goes from working to not, not on every checkout."""
    global _redis_skip_until, _redis_failing
    _redis_skip_until = time.monotonic() + REDIS_RETRY_SECONDS
    if not _redis_failing:
        _redis_failing = True
        logger.warning(
            "channel health: redis unavailable while %s (%s); channels are ranked without health until it is back",
            doing,
            type(exc).__name__,
        )


def _redis_answered() -> None:
    global _redis_failing
    if _redis_failing:
        _redis_failing = False
        logger.info("channel health: redis is back")


def health_counters_reset() -> None:
    """Forget a Redis failure: the next call tries Redis at once (tests, and after a deliberate restart)."""
    global _redis_skip_until, _redis_failing
    _redis_skip_until, _redis_failing = 0.0, False


def health_counters_add(*, channel_id: int, outcome: str, latency_us: int, calls: int = 1) -> None:
    """Add a finished call (or `calls` alike, `latency_us` their total) to its channel's counters for this minute.
    Never raises for Redis: a provider call that went through must not fail because its health could not be
    counted."""
    client = _redis_client(write=True)
    if client is None:
        return
    key = _counter_key(channel_id, _epoch_minute())
    failed, timeout = calls * int(outcome in FAILED), calls * int(outcome == CallOutcome.TIMEOUT)
    try:
        client.eval(_ADD_SCRIPT, 1, key, calls, failed, timeout, latency_us, COUNTER_TTL_SECONDS)
    except REDIS_ERRORS as exc:
        _redis_failed(exc, doing="counting a provider call")
        return
    _redis_answered()


def channel_health(*, channel_ids: Iterable[int]) -> dict[int, ChannelHealth]:
    """Calls, failures and average latency of each channel over the last 30 minutes, from the counters:
    one Redis command (a script summing 30 minute hashes per channel), no SQL, whatever the number of calls.

    Empty when Redis cannot answer (every channel's health unknown): the router still offers channels by
    priority and fee, and the breakers, kept in the database, still skip the failing ones.
    """
    channel_ids = list(dict.fromkeys(channel_ids))
    client = _redis_client(write=False)
    if client is None or not channel_ids:
        return {}
    last = _epoch_minute()
    minutes = range(last - WINDOW_MINUTES + 1, last + 1)
    keys = [_counter_key(channel_id, minute) for channel_id in channel_ids for minute in minutes]
    try:
        sums = client.eval(_READ_SCRIPT, len(keys), *keys, WINDOW_MINUTES)
    except REDIS_ERRORS as exc:
        _redis_failed(exc, doing="reading channel health")
        return {}
    _redis_answered()
    health = {}
    for index, channel_id in enumerate(channel_ids):
        calls, failures, timeouts, latency_us = (int(v) for v in sums[index * 4 : index * 4 + 4])
        health[channel_id] = ChannelHealth(
            calls=calls,
            failures=failures,
            timeouts=timeouts,
            average_latency_ms=latency_us / calls / 1000 if calls else None,
        )
    return health


# --- the audit row of every call, queued in Redis and written in bulk (not one INSERT per checkout) ----------

CALL_LOG_BATCH = 2000


def _call_log_key() -> str:
    """Per database: rows queued for one database are never written into another (test runs share a Redis)."""
    return caches["default"].make_key(f"provider-calls:{connection.settings_dict['NAME']}")


def call_log_add(
    *, channel_id: int, operation: str, outcome: str, latency_ms: float, error: str, order_id: int | None
) -> None:
    """Queue a call's ProviderCall row for call_log_flush (one Redis command); without Redis, insert it now."""
    row = {
        "call_id": uuid.uuid4().hex,
        "channel_id": channel_id,
        "operation": operation,
        "outcome": outcome,
        "latency_ms": latency_ms,
        "error": error,
        "order_id": order_id,
        "created_at": timezone.now().isoformat(),
    }
    client = _redis_client(write=True)
    if client is not None:
        try:
            client.rpush(_call_log_key(), json.dumps(row))
            return
        except REDIS_ERRORS as exc:
            _redis_failed(exc, doing="queueing a provider call's row")
    ProviderCall.objects.bulk_create([_call_row(row)], ignore_conflicts=True)


def _call_row(row: dict) -> ProviderCall:
    return ProviderCall(**{**row, "created_at": datetime.fromisoformat(row["created_at"])})


def _call_rows_write(rows: list[ProviderCall]) -> None:
    """Insert the rows; if one points at an order or channel deleted since its call, keep it without the order
    (as on_delete does for rows already written) or drop it with its channel."""
    try:
        with transaction.atomic():
            ProviderCall.objects.bulk_create(rows, ignore_conflicts=True)
        return
    except IntegrityError:
        pass
    channels = set(PaymentChannel.objects.filter(pk__in={r.channel_id for r in rows}).values_list("pk", flat=True))
    orders = set(Order.objects.filter(pk__in={r.order_id for r in rows if r.order_id}).values_list("pk", flat=True))
    for row in rows:
        row.order_id = row.order_id if row.order_id in orders else None
    ProviderCall.objects.bulk_create([r for r in rows if r.channel_id in channels], ignore_conflicts=True)


def call_log_flush() -> int:
    """Write the queued rows in bulk (a beat job, every few seconds). Safe to run anywhere, any number of times:
    one flush at a time (a lock in Redis), and a row written twice (a crash between the insert and the trim) is
    kept once by its unique call id. Returns how many rows it wrote."""
    client = _redis_client(write=True)
    if client is None:
        return 0
    key, written = _call_log_key(), 0
    try:
        lock = client.lock(caches["default"].make_key("provider-calls-flush"), timeout=300, blocking=False)
        if not lock.acquire():
            return 0
        try:
            while rows := client.lrange(key, 0, CALL_LOG_BATCH - 1):
                _call_rows_write([_call_row(json.loads(r)) for r in rows])
                client.ltrim(key, len(rows), -1)
                written += len(rows)
        finally:
            lock.release()
    except REDIS_ERRORS as exc:
        _redis_failed(exc, doing="writing the queued provider calls")
    return written


# --- the admin's view, over any window, from the rows (not the hot path) ---------------------------------------


def health_annotations(*, prefix: str, since) -> dict:
    """Annotations for a PaymentChannel queryset: `<prefix>_calls`, `_failures` (errors and timeouts),
    `_timeouts` and `_latency` (average ms) over the calls made since `since`."""
    window = Q(calls__created_at__gte=since)
    return {
        f"{prefix}_calls": Count("calls", filter=window),
        f"{prefix}_failures": Count("calls", filter=window & Q(calls__outcome__in=FAILED)),
        f"{prefix}_timeouts": Count("calls", filter=window & Q(calls__outcome=CallOutcome.TIMEOUT)),
        f"{prefix}_latency": Avg("calls__latency_ms", filter=window),
    }


def health_of(channel: PaymentChannel, *, prefix: str) -> ChannelHealth:
    """The health of a channel annotated with health_annotations(prefix=...); none recorded if not annotated."""
    return ChannelHealth(
        calls=getattr(channel, f"{prefix}_calls", 0),
        failures=getattr(channel, f"{prefix}_failures", 0),
        timeouts=getattr(channel, f"{prefix}_timeouts", 0),
        average_latency_ms=getattr(channel, f"{prefix}_latency", None),
    )


def provider_calls_prune(*, older_than: timedelta = timedelta(days=30)) -> int:
    deleted, _ = ProviderCall.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted
