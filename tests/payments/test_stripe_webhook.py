import threading
import time

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.urls import reverse

from fulfillment.models import KeyStatus, LicenseKey
from orders.models import Order, OrderEvent, OrderStatus
from payments.models import Payment, WebhookEvent
from storefront.flow.checkout import payment_start_for_order
from tests.conftest import payment_intent_event, signed_stripe_event
from tests.factories import ProductFactory, add_keys

WEBHOOK = "/payments/stripe/webhook/"


def post_event(client, event: dict, *, secret: str | None = None, timestamp: int | None = None):
    payload, header = signed_stripe_event(event, secret=secret, timestamp=timestamp)
    return client.post(WEBHOOK, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)


@pytest.fixture
def paid_order_setup(db, localstripe, make_order):
    """A pending order for 2 keys with its PaymentIntent opened at localstripe."""
    product = ProductFactory()
    add_keys(product, 5)
    order = make_order((product, 2))
    payment = payment_start_for_order(order=order)
    return order, payment


def succeeded_event(
    order: Order, payment: Payment, event_id: str = "evt_test_1", amount: int | None = None, currency: str | None = None
) -> dict:
    return payment_intent_event(
        event_id=event_id,
        intent_id=payment.provider_ref,
        amount=order.total_amount if amount is None else amount,
        currency=(currency or order.currency).lower(),
        order_number=order.number,
    )


@pytest.mark.django_db(transaction=True)
def test_purchase_through_localstripe_and_its_signed_webhook_shows_the_key(
    localstripe_sends_webhooks, localstripe, stripe_client, make_order
):
    # Given a product with keys, an order, and localstripe sending webhooks to the running shop
    product = ProductFactory(price_amount=2500)
    keys = add_keys(product, 3)
    order = make_order((product, 1))
    payment = payment_start_for_order(order=order)
    assert payment.provider_ref.startswith("pi_")
    assert payment.amount == 2500

    # When the shopper's card is confirmed at Stripe (outside our server, as Stripe.js would)
    token = stripe_client.v1.tokens.create(
        params={"card": {"number": "4242424242424242", "exp_month": "12", "exp_year": "2031", "cvc": "123"}}
    )
    stripe_client.v1.payment_intents.update(payment.provider_ref, params={"payment_method": token.card.id})
    stripe_client.v1.payment_intents.confirm(payment.provider_ref)

    # Then localstripe's signed payment_intent.succeeded reaches the shop, which delivers
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        order.refresh_from_db()
        if order.status == OrderStatus.FULFILLED:
            break
        time.sleep(0.2)
    assert order.status == OrderStatus.FULFILLED
    assert (
        WebhookEvent.objects.filter(payment_ref=payment.provider_ref, event_type="payment_intent.succeeded").count()
        == 1
    )
    sold = LicenseKey.objects.get(order_line__order=order)
    assert sold.reveal() in keys
    page = Client().post(
        reverse("order-reveal", kwargs={"token": order.token}), {"line": order.lines.get().pk}, follow=True
    )
    assert sold.reveal() in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_pay_endpoint_confirms_card_and_delivers_without_waiting_for_the_webhook(
    localstripe, stripe_client, make_order
):
    product = ProductFactory()
    add_keys(product, 1)
    order = make_order((product, 1))
    token = stripe_client.v1.tokens.create(
        params={"card": {"number": "4242424242424242", "exp_month": "12", "exp_year": "2031", "cvc": "123"}}
    )

    response = Client().post(
        reverse("api-order-pay", kwargs={"token": order.token}),
        {"card_token": token.id},
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "succeeded"
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED


@pytest.mark.django_db(transaction=True)
def test_declined_card_gets_a_clear_error_and_the_order_stays_payable(localstripe, stripe_client, make_order):
    product = ProductFactory()
    add_keys(product, 1)
    order = make_order((product, 1))
    token = stripe_client.v1.tokens.create(
        params={"card": {"number": "4000000000000341", "exp_month": "12", "exp_year": "2031", "cvc": "123"}}
    )

    response = Client().post(
        reverse("api-order-pay", kwargs={"token": order.token}),
        {"card_token": token.id},
        content_type="application/json",
    )

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "payment_declined"
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert not LicenseKey.objects.filter(order_line__order=order).exists()


def test_same_webhook_delivered_ten_times_delivers_once(paid_order_setup, client, django_capture_on_commit_callbacks):
    order, payment = paid_order_setup
    event = succeeded_event(order, payment)

    outcomes = []
    for _ in range(10):
        with django_capture_on_commit_callbacks(execute=True):
            response = post_event(client, event)
        assert response.status_code == 200
        outcomes.append(response.json()["outcome"])

    assert outcomes == ["applied"] + ["duplicate"] * 9
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert LicenseKey.objects.filter(order_line__order=order, status=KeyStatus.SOLD).count() == 2
    assert OrderEvent.objects.filter(order=order, to_status=OrderStatus.FULFILLED).count() == 1
    assert OrderEvent.objects.filter(order=order, to_status=OrderStatus.PAID).count() == 1
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_same_webhook_delivered_ten_times_at_once_delivers_once(localstripe, make_order):
    product = ProductFactory()
    add_keys(product, 5)
    order = make_order((product, 2))
    payment = payment_start_for_order(order=order)
    payload, header = signed_stripe_event(succeeded_event(order, payment, event_id="evt_concurrent"))
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def deliver():
        try:
            barrier.wait()
            response = Client().post(
                WEBHOOK, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert statuses == [200] * 10
    assert WebhookEvent.objects.filter(event_id="evt_concurrent").count() == 1
    assert LicenseKey.objects.filter(order_line__order=order).count() == 2
    assert OrderEvent.objects.filter(order=order, to_status=OrderStatus.FULFILLED).count() == 1


@pytest.mark.parametrize(
    "tamper",
    ["wrong_secret", "tampered_body", "missing_header", "stale_timestamp", "not_json"],
)
def test_forged_webhook_is_rejected_and_changes_nothing(paid_order_setup, client, tamper):
    order, payment = paid_order_setup
    event = succeeded_event(order, payment)
    payload, header = signed_stripe_event(event)
    if tamper == "wrong_secret":
        payload, header = signed_stripe_event(event, secret="whsec_attacker")
    elif tamper == "tampered_body":
        payload = payload.replace(b'"amount": ', b'"amount": 1')
    elif tamper == "missing_header":
        header = ""
    elif tamper == "stale_timestamp":
        payload, header = signed_stripe_event(event, timestamp=int(time.time()) - 3600)
    elif tamper == "not_json":
        payload = b"not json at all"
        header = signed_stripe_event({})[1].split(",")[0] + ",v1=" + "0" * 64

    response = client.post(WEBHOOK, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_webhook"
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert not WebhookEvent.objects.exists()
    assert not LicenseKey.objects.filter(order_line__order=order).exists()


@pytest.mark.parametrize("amount_delta, currency", [(-1, None), (100, None), (0, "eur")])
def test_wrong_amount_or_currency_is_flagged_and_delivers_nothing(paid_order_setup, client, amount_delta, currency):
    order, payment = paid_order_setup
    event = succeeded_event(order, payment, amount=order.total_amount + amount_delta, currency=currency)

    response = post_event(client, event)

    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert order.payment_state == "mismatch"
    held = OrderEvent.objects.get(order=order, to_status=OrderStatus.ON_HOLD)
    assert held.data["reason"] == "payment_mismatch"
    assert not LicenseKey.objects.filter(order_line__order=order).exists()


def test_payment_failed_is_recorded_and_order_stays_payable(paid_order_setup, client):
    order, payment = paid_order_setup
    event = payment_intent_event(
        event_id="evt_fail",
        intent_id=payment.provider_ref,
        amount=order.total_amount,
        event_type="payment_intent.payment_failed",
    )

    response = post_event(client, event)

    assert response.status_code == 200
    order.refresh_from_db()
    payment.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert payment.status == "failed"
    assert OrderEvent.objects.filter(order=order, type="payment_failed").exists()


def test_event_for_unknown_payment_is_recorded_but_changes_no_order(paid_order_setup, client):
    order, _ = paid_order_setup
    event = payment_intent_event(event_id="evt_other", intent_id="pi_not_ours", amount=order.total_amount)

    response = post_event(client, event)

    assert response.status_code == 200
    assert response.json()["outcome"] == "unknown_payment"
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT


def test_unhandled_event_types_are_acknowledged(db, client):
    response = post_event(
        client,
        {
            "id": "evt_cust",
            "object": "event",
            "type": "customer.created",
            "data": {"object": {"id": "cus_1", "object": "customer"}},
        },
    )

    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
