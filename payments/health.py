"""Channel health: every provider call is recorded, and a channel that keeps failing is skipped for a while.

A timeout, an unreachable provider, a 5xx, or a refusal of the account itself (401, 403, 429) counts
against the channel; a decline or a rejected request is the provider working. `breaker_threshold`
failures in a row open the channel's breaker for `breaker_cooldown_seconds`; the router skips it
meanwhile. After the cool-down the next call is a trial: a success closes the breaker, a failure opens
it again at once (the count is only reset by a success).
"""

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Avg, Case, Count, F, Q, Value, When
from django.utils import timezone

from payments.models import CallOutcome, PaymentChannel, ProviderCall
from payments.providers.base import NotSupported, PaymentDeclined, PaymentError, ProviderUnavailable

logger = logging.getLogger(__name__)

HEALTH_WINDOW = timedelta(minutes=30)
ACCOUNT_TROUBLE = {401, 403, 429}
FAILED = [CallOutcome.ERROR, CallOutcome.TIMEOUT]


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
    """Time and record one provider call, and move the channel's breaker. Never inside a transaction."""
    started = time.perf_counter()
    failure: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        failure = exc
        raise
    finally:
        outcome = _outcome(failure)
        ProviderCall.objects.create(
            channel=channel,
            operation=operation,
            outcome=outcome,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            error="" if failure is None else (getattr(failure, "issue", "") or type(failure).__name__)[:100],
            order=order,
        )
        breaker_record(channel=channel, failed=outcome in FAILED)


def breaker_record(*, channel: PaymentChannel, failed: bool) -> None:
    """Count a failure (opening the breaker at the threshold) or clear the count on a success."""
    if not failed:
        if channel.failures_in_row or channel.breaker_open_until:
            PaymentChannel.objects.filter(pk=channel.pk).update(failures_in_row=0, breaker_open_until=None)
            channel.failures_in_row, channel.breaker_open_until = 0, None
        return
    now = timezone.now()
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


def channel_health(*, since=None) -> dict[int, ChannelHealth]:
    """Calls, failures and average latency per channel since `since` (the last 30 minutes by default)."""
    since = since or timezone.now() - HEALTH_WINDOW
    channels = PaymentChannel.objects.annotate(**health_annotations(prefix="h", since=since))
    return {channel.pk: health_of(channel, prefix="h") for channel in channels}


def provider_calls_prune(*, older_than: timedelta = timedelta(days=30)) -> int:
    deleted, _ = ProviderCall.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted
