"""Channel health from counters kept as calls complete: what the router reads on every checkout.

The counters live in the test Redis server, shared by every run. Each test writes under its own cache KEY_PREFIX,
so the default channels (the same ids in every test database) never add up across tests or runs, and in a Redis
database of their own: other suites' cache.clear() (FLUSHDB) empties the shared one from other runs at any moment.
"""

import logging
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.db.models import Avg

from catalog.models import FulfilmentKind
from payments import health as health_module
from payments.health import ChannelHealth, call_log_flush, channel_health, provider_call
from payments.models import CallOutcome, PaymentChannel, ProviderCall
from payments.providers.base import PaymentDeclined, PaymentError, ProviderUnavailable
from payments.routing import channels_for_order
from tests.factories import ProductFactory
from tests.harness import free_port

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)  # half a minute into its minute bucket
COUNTERS_DB = 14  # next to the suite's database 15, which other runs flush


def counters_cache(location: str | None = None) -> dict:
    """CACHES for one test's counters: its own key prefix, in COUNTERS_DB of the test Redis unless told another
    address. The keys expire on their own (payments.health.COUNTER_TTL_SECONDS)."""
    location = location or urlsplit(django_settings.REDIS_URL)._replace(path=f"/{COUNTERS_DB}").geturl()
    prefix = f"health-test-{uuid.uuid4().hex[:8]}"
    return {"default": {**django_settings.CACHES["default"], "LOCATION": location, "KEY_PREFIX": prefix}}


@pytest.fixture(autouse=True)
def counters_of_this_test(settings):
    """This test's counters only, and no Redis failure remembered from another test."""
    settings.CACHES = counters_cache()
    health_module.health_counters_reset()
    yield
    health_module.health_counters_reset()


def call(channel: PaymentChannel, error: Exception | None = None) -> None:
    try:
        with provider_call(channel=channel, operation="create_payment"):
            if error is not None:
                raise error
    except PaymentError:
        pass


def refused_with(status: int) -> PaymentError:
    error = PaymentError("refused")
    error.status = status
    return error


def test_successes_failures_and_timeouts_are_counted_per_channel(time_machine):
    # Given the clock stands still, and the card channel makes six calls and PayPal one
    time_machine.move_to(NOW, tick=False)
    stripe, paypal = PaymentChannel.objects.get(code="stripe"), PaymentChannel.objects.get(code="paypal")
    for error in (
        None,
        PaymentDeclined("no"),  # the provider working: not a failure
        refused_with(400),  # a rejected request: not a failure
        ProviderUnavailable("down", timeout=True),
        ProviderUnavailable("refused"),
        refused_with(503),
    ):
        call(stripe, error)
    call(paypal)

    # When the router reads health
    health = channel_health(channel_ids=[stripe.pk, paypal.pk, stripe.pk])

    # Then each channel has its own counts, and the latency is the rows' average
    assert (health[stripe.pk].calls, health[stripe.pk].failures, health[stripe.pk].timeouts) == (6, 3, 1)
    assert health[stripe.pk].success_rate == 0.5
    call_log_flush()  # the rows queued in Redis, written
    rows = ProviderCall.objects.filter(channel=stripe).aggregate(latency=Avg("latency_ms"))["latency"]
    assert health[stripe.pk].average_latency_ms == pytest.approx(rows, abs=0.01)
    assert (health[paypal.pk].calls, health[paypal.pk].failures) == (1, 0)
    assert set(health) == {stripe.pk, paypal.pk}


def test_a_channel_without_calls_has_no_health_yet():
    stripe = PaymentChannel.objects.get(code="stripe")

    assert channel_health(channel_ids=[stripe.pk]) == {stripe.pk: ChannelHealth()}
    assert channel_health(channel_ids=[]) == {}


def test_calls_older_than_thirty_minutes_are_not_counted(time_machine):
    # Given two failures now and a success ten minutes later
    time_machine.move_to(NOW, tick=False)
    stripe = PaymentChannel.objects.get(code="stripe")
    call(stripe, ProviderUnavailable("refused"))
    call(stripe, ProviderUnavailable("refused"))
    time_machine.move_to(NOW + timedelta(minutes=10), tick=False)
    call(stripe)

    def counts_at(moment: datetime) -> tuple[int, int]:
        time_machine.move_to(moment, tick=False)
        health = channel_health(channel_ids=[stripe.pk])[stripe.pk]
        return health.calls, health.failures

    # Then all three count 29 minutes on, only the later success 30 and 31 minutes on, nothing 41 minutes on
    assert counts_at(NOW + timedelta(minutes=29)) == (3, 2)
    assert counts_at(NOW + timedelta(minutes=30)) == (1, 0)
    assert counts_at(NOW + timedelta(minutes=31)) == (1, 0)
    assert counts_at(NOW + timedelta(minutes=41)) == (0, 0)
    assert channel_health(channel_ids=[stripe.pk])[stripe.pk].average_latency_ms is None


def test_reading_health_costs_no_sql_and_does_not_grow_with_the_calls(time_machine, django_assert_num_queries):
    # Given three counted calls and 50,000 more audit rows inside the window
    time_machine.move_to(NOW, tick=False)
    stripe, paypal = PaymentChannel.objects.get(code="stripe"), PaymentChannel.objects.get(code="paypal")
    call(stripe)
    call(stripe, ProviderUnavailable("down", timeout=True))
    call(paypal)
    ProviderCall.objects.bulk_create(
        (
            ProviderCall(channel=stripe, operation="create_payment", outcome=CallOutcome.ERROR, latency_ms=5)
            for _ in range(50_000)
        ),
        batch_size=5_000,
    )
    call_log_flush()  # the rows queued in Redis, written
    assert ProviderCall.objects.filter(channel=stripe).count() == 50_002

    # When health is read: not one query, the rows are never scanned
    with django_assert_num_queries(0):
        health = channel_health(channel_ids=[stripe.pk, paypal.pk])

    # Then it holds what the counters hold
    assert (health[stripe.pk].calls, health[stripe.pk].failures, health[stripe.pk].timeouts) == (2, 1, 1)
    assert health[paypal.pk].calls == 1


def dead_redis() -> dict:
    """A cache on a port nobody listens on: connection refused, as when Redis was just killed."""
    return counters_cache(f"redis://127.0.0.1:{free_port()}/0")


def health_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "payments.health" and r.levelno == logging.WARNING]


def test_with_redis_down_calls_go_through_health_is_unknown_and_checkout_still_offers_channels(
    make_order, settings, monkeypatch, caplog, time_machine
):
    # Given an order placed, then Redis goes down (and is tried again on every call, to see each failure)
    time_machine.move_to(NOW, tick=False)
    caplog.set_level(logging.INFO, logger="payments.health")
    order = make_order((ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=5000, currency="USD"), 1))
    stripe = PaymentChannel.objects.get(code="stripe")
    live_caches = settings.CACHES
    settings.CACHES = dead_redis()
    monkeypatch.setattr(health_module, "REDIS_RETRY_SECONDS", 0.0)

    # When a provider call completes, and the router ranks channels twice
    call(stripe)
    health = channel_health(channel_ids=[stripe.pk])
    offered = [offer.channel.code for offer in channels_for_order(order=order)]
    offered_again = [offer.channel.code for offer in channels_for_order(order=order)]

    # Then the call is in the audit log, health is unknown, the card is still offered,
    # and the outage was logged once, not on every call and checkout
    call_log_flush()  # the rows queued in Redis, written
    assert ProviderCall.objects.filter(channel=stripe, outcome=CallOutcome.SUCCESS).count() == 1
    assert health == {}
    assert offered == offered_again == ["stripe"]
    assert len(health_warnings(caplog)) == 1

    # And when Redis is back, calls are counted again
    settings.CACHES = live_caches
    call(stripe)
    assert channel_health(channel_ids=[stripe.pk])[stripe.pk].calls == 1
    assert "channel health: redis is back" in [r.getMessage() for r in caplog.records]


def test_after_a_redis_error_redis_is_left_alone_for_a_while(settings, monkeypatch, time_machine):
    # Given Redis failed once (so a hung Redis would cost one wait, not one per checkout)
    time_machine.move_to(NOW, tick=False)
    monkeypatch.setattr(health_module, "REDIS_RETRY_SECONDS", 3600.0)
    stripe = PaymentChannel.objects.get(code="stripe")
    live_caches = settings.CACHES
    settings.CACHES = dead_redis()
    assert channel_health(channel_ids=[stripe.pk]) == {}

    # When it is back within the retry period, a call is made and health is read
    settings.CACHES = live_caches
    call(stripe)

    # Then neither touched Redis: the call is only in the audit log, health still unknown
    assert channel_health(channel_ids=[stripe.pk]) == {}
    call_log_flush()  # the rows queued in Redis, written
    assert ProviderCall.objects.filter(channel=stripe).count() == 1
    health_module.health_counters_reset()
    assert channel_health(channel_ids=[stripe.pk]) == {stripe.pk: ChannelHealth()}
