"""/metrics (storefront.metrics, storefront.metrics_shop): access, request counts, and the shop's own figures."""

import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from catalog.models import Product
from fulfillment.models import LicenseKey
from fulfillment.services import backorders_fill
from orders.models import Order, OrderStatus
from payments.models import PaymentChannel, WebhookEvent
from riskengine.models import ReviewCase, RiskAssessment, RiskDecision
from storefront.celery import app as celery_app
from tests.conftest import record_payment
from tests.factories import ProductFactory, add_keys
from tests.harness import free_port

TOKEN = "metrics-token-for-the-suite-0123456789"
ROOT = django_settings.BASE_DIR


def product_in_stock(keys: int = 5, **fields):
    product = ProductFactory(**fields)
    add_keys(product, keys)
    return product


def stock_vanishes(product) -> None:
    """Its keys gone after the order was placed (as a merchant retiring them would)."""
    LicenseKey.objects.filter(product=product).delete()
    Product.objects.filter(pk=product.pk).update(keys_available=0)


def scrape(**headers) -> dict[tuple, float]:
    """Every sample of one scrape, by (name, sorted labels)."""
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(autouse=True)
def _token(settings):
    settings.METRICS_TOKEN = TOKEN


# --- access ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 403), ("Bearer wrong-token", 403), (f"Basic {TOKEN}", 403), (f"Bearer {TOKEN}", 200)],
)
@pytest.mark.django_db
def test_metrics_answer_only_the_bearer_of_the_token(authorization, status):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    assert Client().get("/metrics", **headers).status_code == status


@pytest.mark.django_db
def test_metrics_do_not_exist_in_production_without_a_token(settings):
    settings.METRICS_TOKEN = ""
    settings.DEBUG = False
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.django_db
def test_metrics_are_open_without_a_token_only_with_debug_on(settings):
    settings.METRICS_TOKEN = ""
    settings.DEBUG = True
    assert Client().get("/metrics").status_code == 200


@pytest.mark.django_db
def test_prometheus_scrapes_over_plain_http_by_the_containers_name(settings):
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    assert scrape(HTTP_HOST="web:8000")  # no 400 for the host, no redirect to https


# --- requests ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_requests_are_counted_by_view_name_and_status_never_by_path(make_order):
    order = make_order((product_in_stock(), 1))
    before = scrape()

    assert Client().get(f"/order/{order.token}/").status_code == 200
    assert Client().get("/no-such-page/").status_code == 404

    after = scrape()
    counted = ("storefront_http_requests_total", {"view": "order-detail", "method": "GET", "status": "200"})
    assert value(after, counted[0], **counted[1]) == value(before, counted[0], **counted[1]) + 1
    assert value(after, "storefront_http_requests_total", view="unmatched", method="GET", status="404") >= 1
    timed = {"view": "order-detail", "method": "GET"}
    assert value(after, "storefront_http_request_duration_seconds_count", **timed) >= 1
    text = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    assert order.token not in text and "no-such-page" not in text


# --- things counted as they happen --------------------------------------------------------------------------------


def delivery_count(bucket: str | None = None) -> float:
    samples = scrape()
    if bucket is None:
        return value(samples, "storefront_payment_to_delivery_seconds_count")
    return value(samples, "storefront_payment_to_delivery_seconds_bucket", le=bucket)


@pytest.mark.django_db
def test_an_order_waiting_two_hours_for_stock_is_observed_as_two_hours_from_payment_to_delivery(
    make_order, django_capture_on_commit_callbacks, time_machine
):
    # Given an order paid while its product had no key
    time_machine.move_to(timezone.now(), tick=False)
    product = product_in_stock(1)
    order = make_order((product, 1))
    stock_vanishes(product)
    order = record_payment(order, django_capture_on_commit_callbacks)
    assert order.status == OrderStatus.AWAITING_STOCK
    count, within_an_hour, within_six = delivery_count(), delivery_count("3600.0"), delivery_count("21600.0")

    # When keys arrive two hours later and the waiting order is delivered
    time_machine.shift(timedelta(hours=2))
    add_keys(product, 1)
    with django_capture_on_commit_callbacks(execute=True):
        backorders_fill(product_id=product.pk)

    # Then one delivery is observed, between one and six hours after its payment
    assert Order.objects.get(pk=order.pk).status == OrderStatus.FULFILLED
    assert delivery_count() == count + 1
    assert delivery_count("3600.0") == within_an_hour
    assert delivery_count("21600.0") == within_six + 1


@pytest.mark.django_db
def test_a_delivery_is_observed_only_once_its_transaction_commits(make_order, django_capture_on_commit_callbacks):
    product = ProductFactory()
    add_keys(product, 1)
    count = delivery_count()
    order = make_order((product, 1))

    # Paid and delivered, but the commit callbacks never run (as if the transaction rolled back)
    with django_capture_on_commit_callbacks(execute=False):
        from storefront.flow.payment import order_mark_paid

        order_mark_paid(
            order_id=order.pk, amount=order.total_amount, currency="USD", payment_ref="pi_uncommitted", actor="test"
        )
    assert Order.objects.get(pk=order.pk).status == OrderStatus.FULFILLED
    assert delivery_count() == count


@pytest.mark.django_db
def test_each_risk_decision_is_counted_by_stage_and_band(make_order, django_capture_on_commit_callbacks):
    product = ProductFactory()
    add_keys(product, 1)
    labels = {"stage": "paid", "decision": "approve"}
    before = value(scrape(), "storefront_risk_decisions_total", **labels)

    record_payment(make_order((product, 1)), django_capture_on_commit_callbacks)

    assert RiskAssessment.objects.filter(stage="paid", decision=RiskDecision.APPROVE).exists()
    assert value(scrape(), "storefront_risk_decisions_total", **labels) == before + 1


# --- the shop's figures, read at scrape time ---------------------------------------------------------------------


@pytest.mark.django_db
def test_open_orders_are_reported_by_status(make_order, django_capture_on_commit_callbacks):
    product = product_in_stock(3)
    make_order((product, 1))
    make_order((product, 1))
    waiting = make_order((product, 1))
    stock_vanishes(product)
    record_payment(waiting, django_capture_on_commit_callbacks)  # no key left: awaiting stock

    samples = scrape()

    assert value(samples, "storefront_orders", status="pending_payment") == 2
    assert value(samples, "storefront_orders", status="awaiting_stock") == 1
    assert value(samples, "storefront_orders", status="on_hold") == 0


@pytest.mark.django_db
def test_the_review_queue_reports_its_size_and_how_long_the_oldest_has_waited(make_order, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    product = product_in_stock()
    for _ in range(2):
        order = make_order((product, 1))
        assessment = RiskAssessment.objects.create(order=order, decision=RiskDecision.REVIEW, score=60)
        ReviewCase.objects.create(order=order, assessment=assessment)
        time_machine.shift(timedelta(minutes=10))

    samples = scrape()

    assert value(samples, "storefront_review_queue_size") == 2
    assert value(samples, "storefront_review_queue_oldest_age_seconds") == 20 * 60


@pytest.mark.django_db
def test_a_channel_with_its_breaker_open_is_reported(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    PaymentChannel.objects.filter(code="stripe").update(
        failures_in_row=5, breaker_open_until=timezone.now() + timedelta(seconds=30)
    )

    samples = scrape()

    assert value(samples, "storefront_payment_channel_breaker_open", channel="stripe") == 1
    assert value(samples, "storefront_payment_channel_failures_in_row", channel="stripe") == 5
    assert value(samples, "storefront_payment_channel_breaker_open", channel="paypal") == 0
    time_machine.shift(timedelta(seconds=31))
    assert value(scrape(), "storefront_payment_channel_breaker_open", channel="stripe") == 0


@pytest.mark.django_db
def test_provider_calls_are_reported_by_channel_and_outcome_from_the_health_counters():
    from payments.health import health_counters_add, health_counters_reset

    health_counters_reset()
    stripe = PaymentChannel.objects.get(code="stripe")
    before = {o: value(scrape(), "storefront_provider_calls_last_30m", channel="stripe", outcome=o) for o in ("ok",)}
    health_counters_add(channel_id=stripe.pk, outcome="success", latency_us=200_000, calls=3)
    health_counters_add(channel_id=stripe.pk, outcome="timeout", latency_us=10_000_000)
    health_counters_add(channel_id=stripe.pk, outcome="error", latency_us=100_000)

    samples = scrape()

    assert value(samples, "storefront_provider_calls_last_30m", channel="stripe", outcome="ok") >= before["ok"] + 3
    assert value(samples, "storefront_provider_calls_last_30m", channel="stripe", outcome="timeout") >= 1
    assert value(samples, "storefront_provider_calls_last_30m", channel="stripe", outcome="error") >= 1


@pytest.mark.django_db
def test_the_time_since_a_provider_last_sent_a_webhook_is_reported(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    WebhookEvent.objects.create(provider="stripe", event_id=f"evt_{uuid.uuid4().hex}", event_type="charge.succeeded")
    time_machine.shift(timedelta(seconds=90))

    assert value(scrape(), "storefront_webhook_last_received_age_seconds", provider="stripe") == 90


@pytest.mark.django_db
def test_products_short_of_keys_are_counted():
    ProductFactory(low_stock_threshold=5)  # sold out
    add_keys(ProductFactory(low_stock_threshold=5), 2)  # low
    add_keys(ProductFactory(low_stock_threshold=5), 5)  # enough
    add_keys(ProductFactory(low_stock_threshold=5, is_active=False), 1)  # not on sale

    samples = scrape()

    assert value(samples, "storefront_products_low_stock") == 2
    assert value(samples, "storefront_products_sold_out") == 1


@pytest.mark.django_db
def test_the_celery_queue_depth_is_the_length_of_its_lists_in_the_broker(monkeypatch):
    queue = f"test-queue-{uuid.uuid4().hex[:8]}"
    monkeypatch.setitem(celery_app.conf, "task_default_queue", queue)
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    broker.rpush(queue, "a", "b", "c")
    broker.rpush(f"{queue}\x06\x169", "d")  # a message sent with a priority
    try:
        assert value(scrape(), "storefront_celery_queue_length", queue=queue) == 4
    finally:
        broker.delete(queue, f"{queue}\x06\x169")


@pytest.mark.django_db
def test_a_part_that_cannot_be_read_is_reported_and_the_rest_still_is(settings, make_order):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    make_order((product_in_stock(), 1))

    samples = scrape()

    assert value(samples, "storefront_metrics_errors", part="celery") == 1
    assert value(samples, "storefront_metrics_errors", part="orders") == 0
    assert value(samples, "storefront_orders", status="pending_payment") == 1


# --- several processes ---------------------------------------------------------------------------------------------

COUNT_ONE_REQUEST = """
import django
django.setup()
from storefront.metrics import REQUESTS
REQUESTS.labels(view="product-list", method="GET", status="200").inc()
"""


@pytest.mark.django_db
def test_in_multiprocess_mode_a_scrape_adds_up_every_process(tmp_path, monkeypatch):
    # Given two processes (gunicorn workers) that each answered one request into the shared folder
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "storefront.settings_test"}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", COUNT_ONE_REQUEST], cwd=ROOT, env={**_env(), **env}, check=True)

    # When a third process in the same mode is scraped
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    samples = scrape()

    # Then it reports both processes' counts (and the shop's figures, read by itself)
    assert value(samples, "storefront_http_requests_total", view="product-list", method="GET", status="200") == 2
    assert ("storefront_orders", (("status", "paid"),)) in samples


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}


@pytest.mark.django_db
def test_a_webhook_is_observed_with_its_lag_from_the_providers_event_time(time_machine):
    # Given a signed Stripe event made 42 seconds before it reaches the shop
    from tests.conftest import signed_stripe_event

    time_machine.move_to(timezone.now(), tick=False)
    before = scrape()
    count = value(before, "storefront_webhook_lag_seconds_count", provider="stripe")
    total = value(before, "storefront_webhook_lag_seconds_sum", provider="stripe")
    under_a_minute = value(before, "storefront_webhook_lag_seconds_bucket", provider="stripe", le="60.0")
    under_half_a_minute = value(before, "storefront_webhook_lag_seconds_bucket", provider="stripe", le="30.0")
    event = {
        "id": f"evt_lag_{uuid.uuid4().hex}",
        "object": "event",
        "type": "customer.created",
        "created": int(timezone.now().timestamp()) - 42,
        "data": {"object": {"id": "cus_lag", "object": "customer"}},
    }
    payload, header = signed_stripe_event(event)

    # When it arrives
    answer = Client().post(
        "/payments/stripe/webhook/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )

    # Then its lag is observed once: 42 seconds, under a minute and over half of one
    assert answer.status_code == 200
    after = scrape()
    assert value(after, "storefront_webhook_lag_seconds_count", provider="stripe") == count + 1
    assert value(after, "storefront_webhook_lag_seconds_sum", provider="stripe") == pytest.approx(total + 42, abs=1)
    assert value(after, "storefront_webhook_lag_seconds_bucket", provider="stripe", le="60.0") == under_a_minute + 1
    assert value(after, "storefront_webhook_lag_seconds_bucket", provider="stripe", le="30.0") == under_half_a_minute
