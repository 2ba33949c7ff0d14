"""A partial refund of a discounted line returns what was paid for it (its total less its share of the coupon),
and refunding the rest returns exactly what is left of the payment: never more than the shopper paid."""

import pytest
from django.core import mail

from catalog.models import FulfilmentKind
from orders.models import Coupon, OrderStatus, PaymentState
from payments.models import PaymentStatus
from storefront.flow.checkout import payment_confirm_card, payment_start_for_order
from storefront.flow.refunds import refund_issue
from tests.conftest import TEST_CARD
from tests.factories import ProductFactory, add_keys


@pytest.fixture
def discounted_order(db, localstripe, stripe_client, make_order, django_capture_on_commit_callbacks):
    """Keys 2 x 10.00 and a service 15.00 with 10% off (3.50): 31.50 paid at localstripe."""
    keys = ProductFactory(name="Game key", price_amount=1000)
    add_keys(keys, 2)
    call = ProductFactory(name="Setup call", kind=FulfilmentKind.SERVICE, price_amount=1500)
    Coupon.objects.create(code="TEN", percent_off=10)
    order = make_order((keys, 2), (call, 1), coupon="TEN")
    assert (order.subtotal_amount, order.discount_amount, order.total_amount) == (3500, 350, 3150)
    payment = payment_start_for_order(order=order)
    assert payment.amount == 3150
    token = stripe_client.v1.tokens.create(params={"card": TEST_CARD})
    with django_capture_on_commit_callbacks(execute=True):
        payment = payment_confirm_card(payment=payment, card_token=token.id)
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    mail.outbox.clear()
    return order, payment


def test_refunding_a_discounted_line_returns_what_was_paid_for_it(
    discounted_order, stripe_client, django_capture_on_commit_callbacks
):
    order, payment = discounted_order
    call = order.lines.get(product_name="Setup call")
    assert (call.line_total, call.discount_amount, call.paid_amount) == (1500, 150, 1350)

    with django_capture_on_commit_callbacks(execute=True):
        refund_issue(order=order, actor="staff:ann", reason="Not needed.", lines=[call])

    refunds = stripe_client.v1.refunds.list(params={"payment_intent": payment.provider_ref}).data
    assert [r.amount for r in refunds] == [1350]
    assert "USD 13.50" in mail.outbox[0].body

    with django_capture_on_commit_callbacks(execute=True):
        refund_issue(order=order, actor="staff:ann", reason="Changed their mind.")

    refunds = stripe_client.v1.refunds.list(params={"payment_intent": payment.provider_ref}).data
    assert sorted(r.amount for r in refunds) == [1350, 1800]
    payment.refresh_from_db()
    order.refresh_from_db()
    assert (payment.status, payment.refunded_amount) == (PaymentStatus.REFUNDED, 3150)
    assert (order.status, order.payment_state) == (OrderStatus.REFUNDED, PaymentState.REFUNDED)
