"""Out of stock after payment: the merchant may offer a coupon for waiting. The awaiting-stock email promises it,
and the shopper gets a one-use copy with the delivery email when the order is filled, once per order."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail

from fulfillment.keys import keys_set_state
from fulfillment.models import KeyStatus, LicenseKey
from fulfillment.services import backorders_fill, order_deliver
from orders.coupons import CouponInvalid, coupon_issue_for_waiting
from orders.models import Coupon, CouponKind, OrderStatus
from storefront.flow.payment import order_mark_paid
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def paid_while_sold_out(product, make_order, capture):
    """A paid order for a key that was retired between checkout and payment: it waits for stock."""
    order = make_order((product, 1))
    ids = list(LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).values_list("pk", flat=True))
    keys_set_state(key_ids=ids, action="retire", actor="merchant")
    with capture(execute=True):
        order_mark_paid(order_id=order.pk, amount=order.total_amount, currency="USD", payment_ref="pi_w", actor="t")
    order.refresh_from_db()
    assert order.status == OrderStatus.AWAITING_STOCK
    return order


@pytest.fixture
def product():
    product = ProductFactory(name="Game key", price_amount=1000)
    add_keys(product, 1)
    return product


def test_the_offer_is_promised_while_waiting_and_a_one_use_copy_is_sent_when_filled(
    product, make_order, django_capture_on_commit_callbacks
):
    # Given the merchant offers 15% off for waiting, valid 30 days
    offer = Coupon.objects.create(code="SORRY15", percent_off=15, offered_for_waiting=True, valid_days_when_offered=30)
    with time_machine.travel(NOW, tick=False):
        order = paid_while_sold_out(product, make_order, django_capture_on_commit_callbacks)

        # Then the awaiting-stock email promises the coupon
        assert len(mail.outbox) == 1
        assert "15% off your next order" in mail.outbox[0].body
        assert not Coupon.objects.filter(issued_for_order=order).exists()

        # When stock arrives and the order is filled
        add_keys(product, 2, prefix="NEW")
        with django_capture_on_commit_callbacks(execute=True):
            assert backorders_fill(product_id=product.pk) == 1

    # Then a one-use copy is issued for this order and sent with the delivery
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    issued = Coupon.objects.get(issued_for_order=order)
    assert (issued.kind, issued.percent_off, issued.max_uses, issued.ends_at) == (
        CouponKind.PERCENT,
        15,
        1,
        NOW + timedelta(days=30),
    )
    assert issued.code.startswith("THANKS-") and issued.code != offer.code
    assert [m.subject for m in mail.outbox][-2:] == [
        f"Your order {order.number} is ready",
        f"A coupon for waiting for order {order.number}",
    ]
    assert issued.code in mail.outbox[-1].body and "15% off" in mail.outbox[-1].body
    assert issued.code not in mail.outbox[-2].body

    # And delivering again issues and sends nothing more
    sent = len(mail.outbox)
    with django_capture_on_commit_callbacks(execute=True):
        order_deliver(order_id=order.pk)
        assert coupon_issue_for_waiting(order=order) is None
    assert Coupon.objects.filter(issued_for_order__isnull=False).count() == 1
    assert len(mail.outbox) == sent


def test_the_offer_code_itself_is_not_accepted_only_its_copies(product, make_order):
    Coupon.objects.create(code="SORRY15", percent_off=15, offered_for_waiting=True)

    with pytest.raises(CouponInvalid):
        make_order((product, 1), coupon="SORRY15")


def test_without_an_offer_nothing_is_promised_nor_issued(product, make_order, django_capture_on_commit_callbacks):
    order = paid_while_sold_out(product, make_order, django_capture_on_commit_callbacks)
    assert "off your next order" not in mail.outbox[0].body

    add_keys(product, 1, prefix="NEW")
    with django_capture_on_commit_callbacks(execute=True):
        backorders_fill(product_id=product.pk)

    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert not Coupon.objects.exists()
    assert [m.subject for m in mail.outbox][-1] == f"Your order {order.number} is ready"
