"""Provider calls' audit rows: queued in Redis by provider_call, written in bulk by call_log_flush (a beat job)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from catalog.models import FulfilmentKind
from payments.health import call_log_flush, health_counters_reset, provider_call
from payments.models import PaymentChannel, ProviderCall
from tests.factories import ProductFactory
from tests.payments.test_channel_health import counters_cache, dead_redis

pytestmark = pytest.mark.django_db

NOW = datetime(2031, 3, 14, 12, 0, tzinfo=UTC)  # a fixed moment: the clock of the run is never read


@pytest.fixture(autouse=True)
def own_queue(settings):
    settings.CACHES = counters_cache()
    health_counters_reset()
    yield
    health_counters_reset()


def test_calls_wait_in_redis_and_are_written_once_with_the_time_they_were_made(time_machine, make_order):
    stripe = PaymentChannel.objects.get(code="stripe")
    order = make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1))
    time_machine.move_to(NOW)
    with provider_call(channel=stripe, operation="create_payment", order=order):
        pass
    time_machine.move_to(NOW + timedelta(seconds=1))
    with provider_call(channel=stripe, operation="fetch"):
        pass
    assert not ProviderCall.objects.exists()  # no INSERT on the shopper's request

    time_machine.move_to(NOW + timedelta(minutes=5))
    assert call_log_flush() == 2
    assert call_log_flush() == 0  # nothing left, nothing written twice
    rows = list(ProviderCall.objects.order_by("pk").values_list("operation", "order_id", "created_at"))
    assert rows == [("create_payment", order.pk, NOW), ("fetch", None, NOW + timedelta(seconds=1))]


def test_a_row_whose_order_is_gone_keeps_the_call_without_the_order(make_order):
    stripe = PaymentChannel.objects.get(code="stripe")
    order = make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1))
    with provider_call(channel=stripe, operation="create_payment", order=order):
        pass
    order.delete()
    with connection.cursor() as cursor:  # checked at once, as the flush's own commit checks it
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert call_log_flush() == 1
    assert list(ProviderCall.objects.values_list("operation", "order_id")) == [("create_payment", None)]


def test_without_redis_the_row_is_written_at_once(settings):
    stripe = PaymentChannel.objects.get(code="stripe")
    settings.CACHES = dead_redis()
    with provider_call(channel=stripe, operation="fetch"):
        pass
    assert ProviderCall.objects.filter(channel=stripe, operation="fetch").count() == 1
