"""Merchant notifications (issue 15, point 6): an order held for review, a dispute opened and a payment channel's
breaker opening are emailed to the merchants, once each; holds and low stock also reach the webhooks."""

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import cache

from fulfillment.crypto import encrypt_secret
from orders.models import OrderStatus
from payments.health import provider_call
from payments.models import PaymentChannel
from payments.providers.base import ProviderUnavailable
from riskengine.models import RiskRule, RiskSettings, RuleType
from storefront.flow.checkout import payment_confirm_card, payment_start_for_order
from storefront.flow.outbound import new_endpoint_secret
from storefront.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import TEST_CARD, record_payment, signed_stripe_event
from tests.factories import ProductFactory, add_keys


@pytest.fixture
def merchant(db):
    return get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")


@pytest.fixture
def webhook_sink(db, settings):
    """An endpoint that takes every event but is never reached (the attempts fail: nothing listens there)."""
    settings.WEBHOOK_ALLOW_LOOPBACK_HTTP = True
    return WebhookEndpoint.objects.create(
        url="http://127.0.0.1:9/hooks",
        secret_ciphertext=encrypt_secret(new_endpoint_secret()),
        events=["order.held", "stock.low", "order.paid"],
    )


def test_an_order_held_for_review_is_emailed_and_announced(
    merchant, webhook_sink, make_order, django_capture_on_commit_callbacks
):
    RiskRule.objects.all().delete()
    RiskSettings.objects.update_or_create(pk=1, defaults={"review_threshold": 40, "decline_threshold": 80})
    RiskRule.objects.create(name="High-risk product", type=RuleType.HIGH_RISK_PRODUCT, points=50)
    product = ProductFactory(high_risk=True)
    add_keys(product, 2)
    mail.outbox.clear()

    order = record_payment(make_order((product, 1)), django_capture_on_commit_callbacks)

    assert order.status == OrderStatus.ON_HOLD
    held = [m for m in mail.outbox if m.subject == f"Order {order.number} is held for review"]
    assert len(held) == 1 and held[0].to == ["boss@example.com"] and "/review/" in held[0].body
    announced = WebhookDelivery.objects.filter(event_type__startswith="order.").order_by("id")
    assert list(announced.values_list("event_type", flat=True)) == [
        "order.paid",
        "order.held",
    ]
    held_event = WebhookDelivery.objects.get(event_type="order.held").payload
    assert held_event["data"]["order"]["status"] == "on_hold" and "review" in held_event["data"]["reason"]


def test_an_approved_order_sends_no_hold_email(merchant, make_order, django_capture_on_commit_callbacks):
    product = ProductFactory()
    add_keys(product, 2)
    mail.outbox.clear()
    order = record_payment(make_order((product, 1)), django_capture_on_commit_callbacks)
    assert order.status == OrderStatus.FULFILLED
    assert not [m for m in mail.outbox if "held" in m.subject]


def test_low_stock_reaches_the_webhooks_once_per_crossing(
    merchant, webhook_sink, make_order, django_capture_on_commit_callbacks
):
    product = ProductFactory(low_stock_threshold=1)
    add_keys(product, 3)
    for _ in range(3):
        record_payment(make_order((product, 1)), django_capture_on_commit_callbacks)
    low = WebhookDelivery.objects.filter(event_type="stock.low")
    assert low.count() == 1
    assert low.get().payload["data"] == {
        "product": {"id": product.pk, "name": product.name},
        "available": 1,
        "threshold": 1,
    }


def test_a_channel_breaker_opening_is_emailed_once(merchant, django_capture_on_commit_callbacks):
    channel = PaymentChannel.objects.get(code="stripe")
    PaymentChannel.objects.filter(pk=channel.pk).update(breaker_threshold=3, failures_in_row=0, breaker_open_until=None)
    channel.refresh_from_db()
    mail.outbox.clear()
    cache.delete(f"notify:breaker:{channel.pk}")

    for _ in range(5):  # opens at the third failure; the fourth and fifth find it open
        try:
            with django_capture_on_commit_callbacks(execute=True), provider_call(channel=channel, operation="pay"):
                raise ProviderUnavailable("down")
        except ProviderUnavailable:
            pass

    breaker = [m for m in mail.outbox if m.subject.startswith("Payment channel stripe is failing")]
    assert len(breaker) == 1 and breaker[0].to == ["boss@example.com"]


def test_a_dispute_opened_is_emailed_once(
    merchant, client, localstripe, stripe_client, make_order, django_capture_on_commit_callbacks
):
    product = ProductFactory(price_amount=4900)
    add_keys(product, 1)
    order = make_order((product, 1))
    payment = payment_start_for_order(order=order)
    token = stripe_client.v1.tokens.create(params={"card": TEST_CARD})
    with django_capture_on_commit_callbacks(execute=True):
        payment = payment_confirm_card(payment=payment, card_token=token.id)
    dispute = localstripe.open_dispute(charge=payment.capture_ref, reason="fraudulent")
    mail.outbox.clear()

    for event_id in ("evt_notify_1", "evt_notify_2"):  # the same dispute told twice
        body, header = signed_stripe_event(
            {"id": event_id, "object": "event", "type": "charge.dispute.created", "data": {"object": dispute}}
        )
        with django_capture_on_commit_callbacks(execute=True):
            client.post(
                "/payments/stripe/webhook/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
            )

    opened = [m for m in mail.outbox if m.subject == f"Dispute opened on order {order.number}"]
    assert len(opened) == 1 and "fraudulent" in opened[0].body and "49.00 USD" in opened[0].body
