import json
import time

import pytest
import stripe
from django.conf import settings

from orders.cart import CartLine
from orders.services import checkout_create_order
from payments.localstripe_process import localstripe_start


@pytest.fixture(scope="session")
def localstripe():
    """A real localstripe process on 127.0.0.1 for the whole session; the shop's SDK points at it."""
    server = localstripe_start()
    previous = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = server.url
    yield server
    settings.STRIPE_API_BASE = previous
    server.stop()


@pytest.fixture(scope="session")
def paypal_fake(tmp_path_factory):
    """The project's fake PayPal (tests/paypal_fake.py) on 127.0.0.1 for the whole session."""
    from tests.paypal_fake import paypal_fake_start

    fake = paypal_fake_start(client_id="fake-client", client_secret="fake-secret", webhook_id="WH-SUITE")
    trust = tmp_path_factory.mktemp("paypal") / "fake-ca.pem"
    trust.write_bytes(fake.ca_pem)
    fake.trust_path = str(trust)
    yield fake
    fake.stop()


@pytest.fixture
def paypal(paypal_fake, settings, monkeypatch, db):
    """The 'paypal' channel enabled against the fake, trusting its certificate; state reset per test."""
    from payments.models import PaymentChannel
    from payments.providers import provider_cache_clear
    from payments.providers.paypal_webhooks import clear_certificate_cache

    provider_cache_clear()  # no HTTP session kept alive to a fake that a test restarted
    paypal_fake.reset()
    paypal_fake.drop_webhooks(False)
    monkeypatch.setenv("PAYPAL_TEST_CLIENT_ID", paypal_fake.client_id)
    monkeypatch.setenv("PAYPAL_TEST_CLIENT_SECRET", paypal_fake.client_secret)
    monkeypatch.setenv("PAYPAL_TEST_WEBHOOK_ID", paypal_fake.webhook_id)
    settings.PAYPAL_CERT_HOSTS = ["127.0.0.1"]
    settings.PAYPAL_CERT_ALLOW_HTTP = True
    settings.PAYPAL_CERT_TRUST = paypal_fake.trust_path
    clear_certificate_cache()
    PaymentChannel.objects.filter(code="paypal").update(
        enabled=True,
        api_base=paypal_fake.url,
        public_key_env="PAYPAL_TEST_CLIENT_ID",
        secret_env="PAYPAL_TEST_CLIENT_SECRET",
        webhook_env="PAYPAL_TEST_WEBHOOK_ID",
    )
    yield paypal_fake
    clear_certificate_cache()


@pytest.fixture
def stripe_client(localstripe):
    return stripe.StripeClient("sk_test_suite", base_addresses={"api": localstripe.url}, max_network_retries=0)


def signed_stripe_event(event: dict, secret: str | None = None, timestamp: int | None = None) -> tuple[bytes, str]:
    """A Stripe event body and a Stripe-Signature header for it (valid unless told another secret)."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(
        payload, secret or settings.STRIPE_WEBHOOK_SECRET, timestamp=timestamp or int(time.time())
    )
    return payload.encode(), header


def payment_intent_event(
    *,
    event_id: str,
    intent_id: str,
    amount: int,
    currency: str = "usd",
    event_type: str = "payment_intent.succeeded",
    order_number: str = "",
) -> dict:
    status = "succeeded" if event_type == "payment_intent.succeeded" else "requires_payment_method"
    intent = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": currency,
        "status": status,
        "metadata": {"order_number": order_number},
        "last_payment_error": None if status == "succeeded" else {"message": "Your card was declined."},
    }
    return {"id": event_id, "object": "event", "type": event_type, "data": {"object": intent}}


@pytest.fixture
def make_order():
    def make(*lines: tuple, email: str = "buyer@example.com", shipping=None):
        return checkout_create_order(
            lines=[CartLine(product=p, quantity=q) for p, q in lines],
            email=email,
            shipping=shipping,
            locale="en",
            purchase_ip="203.0.113.7",
            user_agent="pytest",
        )

    return make


TEST_CARD = {"number": "4242424242424242", "exp_month": "12", "exp_year": "2031", "cvc": "123"}


def record_payment(order, capture, *, locale: str | None = None):
    """Record the order's payment without a provider and run delivery as after commit.

    `capture` is pytest-django's django_capture_on_commit_callbacks; `locale` sets the shopper's language.
    """
    from orders.models import Order
    from orders.services import order_mark_paid

    if locale:
        Order.objects.filter(pk=order.pk).update(locale=locale)
    with capture(execute=True):
        order_mark_paid(
            order_id=order.pk,
            amount=order.total_amount,
            currency=order.currency,
            payment_ref=f"pi_{order.number}",
            actor="test",
        )
    order.refresh_from_db()
    return order


@pytest.fixture
def celery_worker_on_redis():
    """A real Celery worker consuming from the test Redis broker (not eager)."""
    from celery.contrib.testing.worker import start_worker

    from storefront.celery import app as celery_app

    celery_app.conf.task_always_eager = False
    celery_app.control.purge()
    try:
        with start_worker(celery_app, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10):
            yield
    finally:
        celery_app.conf.task_always_eager = True


@pytest.fixture(autouse=True)
def _default_payment_channels(request):
    """The channels migration payments/0003 creates, back after a transactional test flushed them."""
    if request.node.get_closest_marker("django_db") is None:
        yield
        return
    request.getfixturevalue("_django_db_helper")
    import importlib

    from payments.models import PaymentChannel

    for fields in importlib.import_module("payments.migrations.0003_default_channels").CHANNELS:
        PaymentChannel.objects.get_or_create(code=fields["code"], defaults=fields)
    yield


@pytest.fixture(scope="session", autouse=True)
def _velocity_keys_of_this_run():
    """Delete this run's risk velocity counters from the shared test Redis when the run ends."""
    yield
    import redis as redis_lib

    if not settings.REDIS_URL:
        return
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{settings.RISK_VELOCITY_PREFIX}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    except redis_lib.RedisError:
        pass
