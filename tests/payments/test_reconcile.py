"""Reconciliation: payments whose notification was lost on purpose are delivered by one run, exactly once,
even when the notification then arrives late; mismatches are held for staff; stuck refunds are retried."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client

from fulfillment.models import KeyStatus, LicenseKey
from orders.models import OrderEvent, OrderStatus, PaymentState
from payments.models import Payment, PaymentChannel, PaymentStatus, ReconciliationRun, Refund, RefundStatus
from payments.providers.base import ProviderUnavailable
from storefront.flow.checkout import payment_start_for_order
from storefront.flow.reconcile import reconcile_channel
from storefront.flow.refunds import refund_issue
from tests.conftest import TEST_CARD, payment_intent_event, signed_stripe_event
from tests.factories import ProductFactory, add_keys

NOW = timedelta(0)


@pytest.fixture
def product(db):
    product = ProductFactory(price_amount=2000)
    add_keys(product, 5)
    return product


def pay_at_stripe_behind_our_back(stripe_client, payment: Payment) -> None:
    """The card is charged at Stripe, but neither the confirmation nor the webhook reaches the shop."""
    token = stripe_client.v1.tokens.create(params={"card": TEST_CARD})
    stripe_client.v1.payment_intents.update(payment.provider_ref, params={"payment_method": token.card.id})
    stripe_client.v1.payment_intents.confirm(payment.provider_ref)


def delivered_keys(order) -> int:
    return LicenseKey.objects.filter(order_line__order=order, status=KeyStatus.SOLD).count()


@pytest.mark.django_db
def test_a_stripe_payment_whose_webhook_was_lost_is_delivered_by_one_run_exactly_once(
    localstripe, stripe_client, make_order, product, django_capture_on_commit_callbacks
):
    # Given an order paid at Stripe whose notification never arrived
    order = make_order((product, 1))
    payment = payment_start_for_order(order=order)
    pay_at_stripe_behind_our_back(stripe_client, payment)
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT

    # When reconciliation runs once
    with django_capture_on_commit_callbacks(execute=True):
        run = reconcile_channel(channel=payment.channel, min_age=NOW)

    # Then the order is paid and delivered, and the run says what it put right
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert delivered_keys(order) == 1
    assert (run.applied, run.mismatches, run.errors) == (1, 0, 0)
    assert any("never arrived" in note for note in run.notes)
    assert Payment.objects.get(pk=payment.pk).actual_fee == round(2000 * 0.029) + 30

    # When the lost webhook then arrives late, and reconciliation runs again
    payload, header = signed_stripe_event(
        payment_intent_event(event_id="evt_late_1", intent_id=payment.provider_ref, amount=2000)
    )
    with django_capture_on_commit_callbacks(execute=True):
        late = Client().post(
            "/payments/stripe/webhook/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
        )
        again = reconcile_channel(channel=payment.channel, min_age=NOW)

    # Then nothing more happens: one key, one payment event, one delivery
    assert late.status_code == 200
    assert again.applied == 0
    assert delivered_keys(order) == 1
    assert OrderEvent.objects.filter(order=order, to_status=OrderStatus.PAID).count() == 1
    assert OrderEvent.objects.filter(order=order, to_status=OrderStatus.FULFILLED).count() == 1


@pytest.mark.django_db
def test_a_young_pending_payment_is_still_found_among_the_providers_recent_successes(
    localstripe, stripe_client, make_order, product, settings
):
    order = make_order((product, 1))
    payment = payment_start_for_order(order=order)
    pay_at_stripe_behind_our_back(stripe_client, payment)

    run = reconcile_channel(channel=payment.channel, min_age=timedelta(minutes=2))

    # still found through the provider's list of recent successes, so the shop is never left unpaid
    assert run.applied == 1


@pytest.mark.django_db
def test_an_approved_paypal_order_nobody_captured_is_captured_and_delivered(
    client, paypal, make_order, product, django_capture_on_commit_callbacks
):
    # Given a buyer who approved at PayPal, never came back, and whose webhooks were all lost
    PaymentChannel.objects.filter(code="stripe").update(enabled=False)
    paypal.drop_webhooks(True)
    order = make_order((product, 1))
    payment = payment_start_for_order(order=order)
    approved = paypal.approve(payment.provider_ref)

    # When reconciliation runs
    with django_capture_on_commit_callbacks(execute=True):
        run = reconcile_channel(channel=payment.channel, min_age=NOW)

    # Then it captured once and delivered
    order.refresh_from_db()
    assert (order.status, run.applied) == (OrderStatus.FULFILLED, 1)
    assert len(paypal.captures) == 1

    # And the late approval and capture webhooks change nothing
    capture = next(iter(paypal.captures.values()))
    for event in (
        {"id": "WH-LATE-A", "event_type": "CHECKOUT.ORDER.APPROVED", "resource": approved},
        {"id": "WH-LATE-C", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": capture},
    ):
        body = json.dumps(event).encode()
        headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in paypal.signed_headers(body).items()}
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post("/payments/webhook/paypal/", data=body, content_type="application/json", **headers)
    assert len(paypal.captures) == 1
    assert delivered_keys(order) == 1


@pytest.mark.django_db
def test_a_paypal_capture_whose_answer_was_lost_is_found_and_applied(
    client, paypal, make_order, product, settings, django_capture_on_commit_callbacks
):
    # Given the capture happened at PayPal but its answer timed out, and no webhook came
    PaymentChannel.objects.filter(code="stripe").update(enabled=False)
    paypal.drop_webhooks(True)
    settings.PAYPAL_TIMEOUT_SECONDS = 0.3
    order = make_order((product, 1))
    payment = payment_start_for_order(order=order)
    paypal.approve(payment.provider_ref)
    paypal.fail(f"/v2/checkout/orders/{payment.provider_ref}/capture", "commit_then_timeout", seconds=0.6)
    client.get(f"/pay/{order.token}/return/?token={payment.provider_ref}&PayerID=P")
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert len(paypal.captures) == 1

    # When reconciliation runs
    with django_capture_on_commit_callbacks(execute=True):
        run = reconcile_channel(channel=payment.channel, min_age=NOW)

    # Then the payment is applied from PayPal's records, and delivered once
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert run.applied == 1
    assert len(paypal.captures) == 1
    assert delivered_keys(order) == 1


@pytest.mark.django_db
def test_an_amount_that_differs_from_the_order_is_held_for_staff_and_counted(
    localstripe, stripe_client, make_order, product, django_capture_on_commit_callbacks
):
    # Given a payment at Stripe for less than the order (changed behind our back)
    order = make_order((product, 1))
    payment = payment_start_for_order(order=order)
    stripe_client.v1.payment_intents.update(payment.provider_ref, params={"amount": 1500})
    pay_at_stripe_behind_our_back(stripe_client, payment)

    with django_capture_on_commit_callbacks(execute=True):
        run = reconcile_channel(channel=payment.channel, min_age=NOW)

    order.refresh_from_db()
    assert (order.status, order.payment_state) == (OrderStatus.ON_HOLD, PaymentState.MISMATCH)
    assert (run.applied, run.mismatches) == (1, 1)
    assert delivered_keys(order) == 0


@pytest.mark.django_db
def test_a_refund_the_provider_never_answered_is_sent_again_with_the_same_key(
    localstripe, stripe_client, make_order, product, django_capture_on_commit_callbacks
):
    # Given a delivered order whose refund request finds Stripe unreachable (its address refuses connections)
    order = make_order((product, 1))
    payment = payment_start_for_order(order=order)
    from storefront.flow.checkout import payment_confirm_card

    token = stripe_client.v1.tokens.create(params={"card": TEST_CARD})
    with django_capture_on_commit_callbacks(execute=True):
        payment_confirm_card(payment=payment, card_token=token.id)
    PaymentChannel.objects.filter(code="stripe").update(api_base="http://127.0.0.1:9")
    with pytest.raises(ProviderUnavailable):
        refund_issue(order=order, actor="staff:ann", reason="Asked for it.")
    pending = Refund.objects.get()
    assert pending.status == RefundStatus.PENDING
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED  # nothing is withdrawn before the money goes back

    # When Stripe is back and reconciliation runs
    PaymentChannel.objects.filter(code="stripe").update(api_base="", failures_in_row=0, breaker_open_until=None)
    with django_capture_on_commit_callbacks(execute=True):
        run = reconcile_channel(channel=PaymentChannel.objects.get(code="stripe"), min_age=NOW)

    # Then the refund is made once, with the key it was written down with, and the keys are revoked
    refunds = stripe_client.v1.refunds.list(params={"payment_intent": payment.provider_ref}).data
    assert [r.amount for r in refunds] == [2000]
    pending.refresh_from_db()
    assert pending.status == RefundStatus.SUCCEEDED
    assert any(f"refund {pending.pk}" in note for note in run.notes)
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert LicenseKey.objects.get(order_line__order=order).status == KeyStatus.REVOKED


@pytest.mark.django_db(transaction=True)
def test_webhook_and_reconciliation_racing_deliver_once(localstripe, stripe_client, make_order):
    # Given an order paid at Stripe, then its webhook and a reconciliation run arriving at the same moment
    product = ProductFactory(price_amount=2000)
    add_keys(product, 3)
    order = make_order((product, 1))
    payment = payment_start_for_order(order=order)
    pay_at_stripe_behind_our_back(stripe_client, payment)
    payload, header = signed_stripe_event(
        payment_intent_event(event_id="evt_race_1", intent_id=payment.provider_ref, amount=2000)
    )
    start = threading.Barrier(2)
    errors = []

    def webhook():
        try:
            start.wait()
            Client().post(
                "/payments/stripe/webhook/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
            )
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    def reconcile():
        try:
            start.wait()
            reconcile_channel(channel=PaymentChannel.objects.get(code="stripe"), min_age=NOW)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=webhook), threading.Thread(target=reconcile)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Then one of them applied it: one key, one paid event
    assert errors == []
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert delivered_keys(order) == 1
    assert OrderEvent.objects.filter(order=order, to_status=OrderStatus.PAID).count() == 1


@pytest.mark.django_db
def test_the_beat_job_reconciles_every_usable_channel_and_skips_unconfigured_ones(localstripe, paypal):
    from storefront.flow.jobs import reconcile_payments

    PaymentChannel.objects.create(code="unset", provider="stripe", display_name="Unset", secret_env="NOT_SET_ANYWHERE")

    result = reconcile_payments.apply().get()

    assert set(result) == {"stripe", "paypal"}
    assert set(ReconciliationRun.objects.values_list("channel__code", flat=True)) == {"stripe", "paypal"}
    assert Payment.objects.filter(status=PaymentStatus.SUCCEEDED).count() == 0
