import threading

import pytest
from django.db import connection
from django.test import Client

from fulfillment.models import KeyStatus, LicenseKey
from fulfillment.services import order_deliver
from orders.models import Order, OrderStatus
from payments.models import Payment
from tests.conftest import payment_intent_event, signed_stripe_event
from tests.factories import ProductFactory, add_keys


def open_payment(order: Order, ref: str) -> Payment:
    return Payment.objects.create(
        order=order, provider="stripe", provider_ref=ref, amount=order.total_amount, currency=order.currency
    )


@pytest.mark.django_db(transaction=True)
def test_forty_buyers_paying_at_once_for_twenty_five_keys(make_order):
    # Given 25 keys and 40 orders, each with its payment opened
    product = ProductFactory(max_per_order=1)
    pool = set(add_keys(product, 25))
    orders = [make_order((product, 1), email=f"buyer{i}@example.com") for i in range(40)]
    bodies = []
    for i, order in enumerate(orders):
        open_payment(order, f"pi_buyer_{i}")
        event = payment_intent_event(event_id=f"evt_buyer_{i}", intent_id=f"pi_buyer_{i}", amount=order.total_amount)
        bodies.append(signed_stripe_event(event))

    # When all 40 payment webhooks arrive at the same moment, each on its own connection
    barrier = threading.Barrier(40)
    codes: list[int] = []

    def pay(payload: bytes, header: str) -> None:
        try:
            barrier.wait()
            response = Client().post(
                "/payments/stripe/webhook/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
            )
            codes.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=pay, args=body) for body in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    # Then exactly 25 orders got 25 distinct keys, 15 wait for stock, nothing is lost
    assert codes == [200] * 40
    statuses = [o.status for o in Order.objects.filter(pk__in=[o.pk for o in orders])]
    assert statuses.count(OrderStatus.FULFILLED) == 25
    assert statuses.count(OrderStatus.AWAITING_STOCK) == 15
    sold = LicenseKey.objects.filter(product=product, status=KeyStatus.SOLD)
    assert sold.count() == 25
    assert len({k.order_line_id for k in sold}) == 25
    assert {k.reveal() for k in sold} == pool
    for order in Order.objects.filter(status=OrderStatus.FULFILLED):
        assert LicenseKey.objects.filter(order_line__order=order).count() == 1
    assert not LicenseKey.objects.filter(order_line__order__status=OrderStatus.AWAITING_STOCK).exists()
    # And the stock counter, moved by each delivery after its commit, agrees with the pool
    product.refresh_from_db()
    assert product.keys_available == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_delivery_runs_for_one_order_claim_its_keys_once(make_order, django_capture_on_commit_callbacks):
    product = ProductFactory()
    add_keys(product, 10)
    order = make_order((product, 3))
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.PAID)
    barrier = threading.Barrier(8)

    def deliver():
        try:
            barrier.wait()
            order_deliver(order_id=order.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert LicenseKey.objects.filter(order_line__order=order).count() == 3
    assert LicenseKey.objects.filter(status=KeyStatus.AVAILABLE).count() == 7
    product.refresh_from_db()
    assert product.keys_available == 7


def test_partial_stock_keeps_claimed_keys_and_completes_when_restocked(
    db, make_order, django_capture_on_commit_callbacks
):
    # Given an order for 5 placed while 5 keys existed, 2 of which were retired before payment
    product = ProductFactory()
    add_keys(product, 5)
    order = make_order((product, 5))
    retired = LicenseKey.objects.filter(product=product).order_by("-id")[:2].values_list("pk", flat=True)
    LicenseKey.objects.filter(pk__in=list(retired)).update(status=KeyStatus.RETIRED)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.PAID)

    with django_capture_on_commit_callbacks(execute=True):
        order = order_deliver(order_id=order.pk)
    assert order.status == OrderStatus.AWAITING_STOCK
    assert LicenseKey.objects.filter(order_line__order=order).count() == 3

    add_keys(product, 4, prefix="RESTOCK")
    with django_capture_on_commit_callbacks(execute=True):
        order = order_deliver(order_id=order.pk)

    assert order.status == OrderStatus.FULFILLED
    units = sorted(LicenseKey.objects.filter(order_line__order=order).values_list("unit_index", flat=True))
    assert units == [0, 1, 2, 3, 4]
    assert LicenseKey.objects.filter(status=KeyStatus.AVAILABLE).count() == 2


def test_delivery_ignores_orders_that_are_not_paid_and_approved(db, make_order):
    product = ProductFactory()
    add_keys(product, 2)
    order = make_order((product, 1))
    for status in (OrderStatus.PENDING_PAYMENT, OrderStatus.ON_HOLD, OrderStatus.CANCELLED, OrderStatus.REFUNDED):
        Order.objects.filter(pk=order.pk).update(status=status)
        assert order_deliver(order_id=order.pk).status == status
    assert not LicenseKey.objects.filter(order_line__order=order).exists()


def test_a_key_is_unique_per_product_and_one_per_line_unit(db, make_order):
    from django.db import IntegrityError, transaction

    product = ProductFactory()
    add_keys(product, 2)
    order = make_order((product, 1))
    line = order.lines.get()
    first, second = LicenseKey.objects.filter(product=product)
    LicenseKey.objects.filter(pk=first.pk).update(status=KeyStatus.SOLD, order_line=line, unit_index=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        LicenseKey.objects.filter(pk=second.pk).update(status=KeyStatus.SOLD, order_line=line, unit_index=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        LicenseKey.objects.create(product=product, ciphertext=b"x", fingerprint=first.fingerprint)
