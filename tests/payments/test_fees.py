"""Fees: every payment keeps the fee the channel's settings expect and the fee the provider reports; the
admin report per channel and month gives count, volume, fees, effective rate, refunds and disputes."""

from decimal import Decimal

import pytest
from django.urls import reverse

from catalog.models import FulfilmentKind
from payments.models import Dispute, Payment, PaymentChannel
from payments.selectors import fee_report
from storefront.flow.checkout import payment_capture, payment_confirm_card, payment_start_for_order
from storefront.flow.refunds import refund_issue
from tests.conftest import TEST_CARD
from tests.factories import ProductFactory


@pytest.fixture
def sales(db, localstripe, stripe_client, paypal, make_order, django_capture_on_commit_callbacks):
    """Two card payments (49.00, 20.00) and one PayPal payment (25.00); the 20.00 one refunded, one disputed."""
    PaymentChannel.objects.filter(code="stripe").update(fee_percent=Decimal("3.0"), fee_fixed=30)
    made = []
    for price in (4900, 2000):
        order = make_order((ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=price), 1))
        payment = payment_start_for_order(order=order, channel=PaymentChannel.objects.get(code="stripe"))
        token = stripe_client.v1.tokens.create(params={"card": TEST_CARD})
        with django_capture_on_commit_callbacks(execute=True):
            made.append(payment_confirm_card(payment=payment, card_token=token.id))
    order = make_order((ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=2500), 1))
    payment = payment_start_for_order(order=order, channel=PaymentChannel.objects.get(code="paypal"))
    paypal.approve(payment.provider_ref)
    with django_capture_on_commit_callbacks(execute=True):
        made.append(payment_capture(payment=payment))
        refund_issue(order=made[1].order, actor="staff:ann", reason="Refunded.")
    Dispute.objects.create(
        payment=made[0], order=made[0].order, provider="stripe", provider_ref="dp_fee_test", amount=4900
    )
    return made


def test_each_payment_keeps_its_expected_and_reported_fee(sales):
    big_card, small_card, paypal_payment = (Payment.objects.get(pk=p.pk) for p in sales)
    # expected from the channel (3.0% + 30), reported by Stripe's balance transaction (2.9% + 30)
    assert (big_card.expected_fee, big_card.actual_fee) == (177, 172)
    assert (small_card.expected_fee, small_card.actual_fee) == (90, 88)
    # PayPal: 3.49% + 0.49 both as configured and as its seller receivable breakdown says
    assert (paypal_payment.expected_fee, paypal_payment.actual_fee) == (136, 136)


def test_the_report_gives_volume_fees_effective_rate_refunds_and_disputes_per_channel(sales):
    rows = {row.channel: row for row in fee_report()}

    card = rows["stripe"]
    assert (card.payments, card.volume, card.fees, card.fees_estimated) == (2, 6900, 260, 0)
    assert card.effective_rate == Decimal("3.77")  # 260 / 6900: the fixed fees weigh on small payments
    assert (card.refunds, card.refunded, card.disputes, card.dispute_rate) == (1, 2000, 1, Decimal("50.00"))
    pp = rows["paypal"]
    assert (pp.payments, pp.volume, pp.fees, pp.effective_rate) == (1, 2500, 136, Decimal("5.44"))
    assert (pp.refunds, pp.disputes, pp.dispute_rate) == (0, 0, Decimal("0.00"))


def test_a_fee_not_yet_reported_counts_as_expected_and_is_marked(sales):
    Payment.objects.filter(pk=sales[0].pk).update(actual_fee=None)
    card = next(row for row in fee_report() if row.channel == "stripe")
    assert (card.fees, card.fees_estimated) == (177 + 88, 1)


def test_the_fee_report_page_in_admin(admin_client, sales):
    page = admin_client.get(reverse("admin:payments_paymentchannel_fees")).content.decode()
    assert 'data-channel="stripe"' in page and 'data-channel="paypal"' in page
    assert "3.77%" in page and "5.44%" in page and "50.00%" in page
    assert "USD 69.00" in page
