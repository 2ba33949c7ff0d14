"""Out-of-order and repeated notifications end in the right state and act once; a second payment for an
order already paid is given back."""

import pytest
from django.test import Client

from fulfillment.models import KeyEvent, KeyStatus, LicenseKey
from orders.models import OrderEvent, OrderStatus, PaymentState
from payments.models import Payment, PaymentChannel, PaymentStatus, Refund
from storefront.flow.checkout import payment_start_for_order
from tests.conftest import payment_intent_event, signed_stripe_event
from tests.factories import ProductFactory, add_keys

WEBHOOK = "/payments/stripe/webhook/"


def post(event: dict):
    payload, header = signed_stripe_event(event)
    return Client().post(WEBHOOK, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)


def charge_refunded(event_id: str, *, intent: str, charge: str, refund: str, amount: int, total: int) -> dict:
    obj = {
        "id": charge,
        "object": "charge",
        "payment_intent": intent,
        "amount": total,
        "amount_refunded": amount,
        "currency": "usd",
        "refunds": {
            "object": "list",
            "data": [{"id": refund, "object": "refund", "amount": amount, "status": "succeeded"}],
        },
    }
    return {"id": event_id, "object": "event", "type": "charge.refunded", "data": {"object": obj}}


@pytest.fixture
def opened(db, localstripe, make_order):
    product = ProductFactory(price_amount=3000)
    add_keys(product, 4)
    order = make_order((product, 1))
    return order, payment_start_for_order(order=order)


def succeeded(payment, event_id: str) -> dict:
    return payment_intent_event(event_id=event_id, intent_id=payment.provider_ref, amount=payment.amount)


def test_succeeded_after_refunded_ends_refunded_and_delivers_nothing(opened, django_capture_on_commit_callbacks):
    # Given the refund notice arrives before the (lost, then late) success notice
    order, payment = opened
    with django_capture_on_commit_callbacks(execute=True):
        first = post(
            charge_refunded(
                "evt_r1", intent=payment.provider_ref, charge="ch_1", refund="re_1", amount=3000, total=3000
            )
        )
        late = post(succeeded(payment, "evt_s1"))

    # Then the payment is refunded, the order cancelled, and no key ever left the pool
    assert (first.json()["outcome"], late.json()["outcome"]) == ("refunded_before_payment", "applied")
    payment.refresh_from_db()
    order.refresh_from_db()
    assert payment.status == PaymentStatus.REFUNDED
    assert order.status == OrderStatus.CANCELLED
    assert not LicenseKey.objects.filter(order_line__order=order).exists()


def test_refunded_twice_revokes_once(opened, django_capture_on_commit_callbacks):
    order, payment = opened
    with django_capture_on_commit_callbacks(execute=True):
        post(succeeded(payment, "evt_s1"))
    assert LicenseKey.objects.get(order_line__order=order).status == KeyStatus.SOLD

    # When the same dashboard refund is reported by two different events
    event = dict(intent=payment.provider_ref, charge="ch_2", refund="re_2", amount=3000, total=3000)
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = [post(charge_refunded(eid, **event)).json()["outcome"] for eid in ("evt_r1", "evt_r2")]

    # Then it is applied once
    assert outcomes == ["refunded", "duplicate"]
    assert Refund.objects.count() == 1
    assert KeyEvent.objects.filter(type="revoked").count() == 1
    order.refresh_from_db()
    assert (order.status, order.payment_state) == (OrderStatus.REFUNDED, PaymentState.REFUNDED)


def test_capture_completed_twice_delivers_once(opened, django_capture_on_commit_callbacks):
    order, payment = opened
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = [post(succeeded(payment, eid)).json()["outcome"] for eid in ("evt_s1", "evt_s2", "evt_s1")]
    assert outcomes == ["applied", "applied", "duplicate"]
    assert LicenseKey.objects.filter(order_line__order=order).count() == 1
    assert OrderEvent.objects.filter(order=order, to_status=OrderStatus.PAID).count() == 1


def test_a_partial_refund_in_the_dashboard_is_recorded_and_flagged_for_staff(
    opened, django_capture_on_commit_callbacks
):
    order, payment = opened
    with django_capture_on_commit_callbacks(execute=True):
        post(succeeded(payment, "evt_s1"))
        outcome = post(
            charge_refunded(
                "evt_r1", intent=payment.provider_ref, charge="ch_3", refund="re_3", amount=1000, total=3000
            )
        ).json()["outcome"]

    assert outcome == "partial_refund_recorded"
    payment.refresh_from_db()
    order.refresh_from_db()
    assert (payment.status, payment.refunded_amount) == (PaymentStatus.SUCCEEDED, 1000)
    assert (order.status, order.payment_state) == (OrderStatus.FULFILLED, PaymentState.PARTIALLY_REFUNDED)
    assert OrderEvent.objects.filter(order=order, type="partial_refund_at_provider").exists()
    assert LicenseKey.objects.get(order_line__order=order).status == KeyStatus.SOLD


def test_a_second_payment_for_a_paid_order_is_refunded_and_the_goods_stay(
    opened, stripe_client, paypal, django_capture_on_commit_callbacks
):
    # Given an order paid by card, and the shopper then also pays it with PayPal in another tab
    order, card_payment = opened
    with django_capture_on_commit_callbacks(execute=True):
        post(succeeded(card_payment, "evt_s1"))
    paypal_payment = Payment.objects.create(
        order=order,
        channel=PaymentChannel.objects.get(code="paypal"),
        provider="paypal",
        provider_ref="pending",
        amount=order.total_amount,
        currency=order.currency,
    )
    from payments.providers import provider_for_channel
    from payments.providers.base import PaymentRequest

    opened_at_paypal = provider_for_channel(paypal_payment.channel).create_payment(
        PaymentRequest(order_number=order.number, amount=3000, currency="USD", email=order.email, idempotency_key="x")
    )
    Payment.objects.filter(pk=paypal_payment.pk).update(provider_ref=opened_at_paypal.ref)
    paypal.approve(opened_at_paypal.ref)

    # When the PayPal payment is captured and applied
    from storefront.flow.checkout import payment_capture

    paypal_payment.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        payment_capture(payment=paypal_payment)

    # Then it is marked a duplicate and refunded in full at PayPal; the order and its key stay as they were
    paypal_payment.refresh_from_db()
    assert paypal_payment.duplicate is True
    assert paypal_payment.status == PaymentStatus.REFUNDED
    assert [r["amount"]["value"] for r in paypal.refunds.values()] == ["30.00"]
    order.refresh_from_db()
    assert (order.status, order.payment_state) == (OrderStatus.FULFILLED, PaymentState.PAID)
    assert LicenseKey.objects.get(order_line__order=order).status == KeyStatus.SOLD
    assert OrderEvent.objects.filter(order=order, type="duplicate_payment_refunded").count() == 1


def test_a_failed_payment_then_its_success_ends_paid(opened, django_capture_on_commit_callbacks):
    order, payment = opened
    failed = payment_intent_event(
        event_id="evt_f1", intent_id=payment.provider_ref, amount=3000, event_type="payment_intent.payment_failed"
    )
    with django_capture_on_commit_callbacks(execute=True):
        post(failed)
        post(succeeded(payment, "evt_s1"))
        post(failed | {"id": "evt_f1_again"})  # a stale failure after the success changes nothing
    order.refresh_from_db()
    payment.refresh_from_db()
    assert (order.status, payment.status) == (OrderStatus.FULFILLED, PaymentStatus.SUCCEEDED)
