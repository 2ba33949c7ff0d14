"""Orders paid while stock ran out: the shopper may wait (filled oldest first) or take a one-click refund."""

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from fulfillment.keys import keys_release_for_order, keys_set_state
from fulfillment.models import KeyEvent, KeyStatus, LicenseKey
from fulfillment.services import backorders_fill, order_deliver
from orders.emails import order_url
from orders.models import Order, OrderStatus
from payments.models import Payment, PaymentStatus
from storefront.flow.checkout import payment_confirm_card, payment_start_for_order
from storefront.flow.jobs import refund_overdue_backorders
from tests.conftest import TEST_CARD, record_payment
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db

CARD = TEST_CARD


def retire_available(product) -> None:
    ids = list(LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).values_list("pk", flat=True))
    keys_set_state(key_ids=ids, action="retire", actor="merchant")


def pay_by_card_after_stock_vanished(order: Order, stripe_client, capture, *, keys_left: int = 0) -> Payment:
    """Open the payment at localstripe (holding keys), lose all but `keys_left` of them, then pay by card."""
    payment = payment_start_for_order(order=order)
    held = list(LicenseKey.objects.filter(reserved_for=order).order_by("id").values_list("pk", flat=True))
    keys_release_for_order(order=order, actor="reservation-expiry")
    keys_set_state(key_ids=held[keys_left:], action="retire", actor="merchant")
    token = stripe_client.v1.tokens.create(params={"card": CARD})
    with capture(execute=True):
        payment = payment_confirm_card(payment=payment, card_token=token.id)
    assert payment.status == PaymentStatus.SUCCEEDED
    order.refresh_from_db()
    return payment


def refunds_at_stripe(stripe_client, payment: Payment) -> list:
    return list(stripe_client.v1.refunds.list(params={"payment_intent": payment.provider_ref}).data)


def refund_link_in(message) -> str:
    links = re.findall(r"https?://\S+/order/\S+/refund/\S+/", message.body)
    assert len(links) == 1, message.body
    return urlsplit(links[0]).path


def test_paid_without_stock_waits_and_the_shopper_is_emailed_once_with_both_links(
    localstripe, stripe_client, make_order, django_capture_on_commit_callbacks
):
    # Given a shopper whose held key was lost before their card payment went through
    product = ProductFactory()
    add_keys(product, 1)
    order = make_order((product, 1))

    # When the payment succeeds
    pay_by_card_after_stock_vanished(order, stripe_client, django_capture_on_commit_callbacks)

    # Then the order waits for stock and the shopper got one email with the order link and a refund link
    assert order.status == OrderStatus.AWAITING_STOCK
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [order.email]
    assert order.number in message.subject and "waiting for stock" in message.subject
    assert order_url(order) in message.body
    assert refund_link_in(message).startswith(f"/order/{order.token}/refund/")

    # And delivering again (sweeper, retries) while still short sends nothing more
    with django_capture_on_commit_callbacks(execute=True):
        order_deliver(order_id=order.pk)
        order_deliver(order_id=order.pk)
    assert len(mail.outbox) == 1


def test_refund_link_opened_shows_a_confirmation_and_changes_nothing(
    client, localstripe, stripe_client, make_order, django_capture_on_commit_callbacks
):
    # Given an order waiting for stock and the refund link from its email
    product = ProductFactory()
    add_keys(product, 1)
    order = make_order((product, 1))
    payment = pay_by_card_after_stock_vanished(order, stripe_client, django_capture_on_commit_callbacks)
    link = refund_link_in(mail.outbox[0])

    # When the shopper (or a mail scanner) opens the link
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(link)

    # Then they see what the refund would be, with a button, and nothing has happened yet
    page = response.content.decode()
    assert response.status_code == 200
    assert "Refund my order" in page and '<form method="post">' in page
    order.refresh_from_db()
    assert order.status == OrderStatus.AWAITING_STOCK
    assert refunds_at_stripe(stripe_client, payment) == []
    assert len(mail.outbox) == 1


def test_refund_link_confirmed_refunds_at_stripe_revokes_the_partial_keys_and_emails(
    client, localstripe, stripe_client, make_order, django_capture_on_commit_callbacks
):
    # Given an order for 2 keys paid when only 1 was left: one delivered, one awaited
    product = ProductFactory(price_amount=1500)
    add_keys(product, 2)
    order = make_order((product, 2))
    payment = pay_by_card_after_stock_vanished(order, stripe_client, django_capture_on_commit_callbacks, keys_left=1)
    assert order.status == OrderStatus.AWAITING_STOCK
    delivered = LicenseKey.objects.get(order_line__order=order)
    assert delivered.status == KeyStatus.SOLD
    link = refund_link_in(mail.outbox[0])

    # When the shopper confirms the refund
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(link)

    # Then the money really went back at Stripe, in full
    assert response.status_code == 302
    assert response["Location"] == reverse("order-detail", kwargs={"token": order.token})
    refunds = refunds_at_stripe(stripe_client, payment)
    assert [(r.amount, r.status) for r in refunds] == [(3000, "succeeded")]
    # And the order is refunded, the delivered key revoked for good, and the shopper told
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    delivered.refresh_from_db()
    assert delivered.status == KeyStatus.REVOKED
    assert KeyEvent.objects.filter(key=delivered, type="revoked", actor="shopper").count() == 1
    assert len(mail.outbox) == 2
    assert "was refunded" in mail.outbox[1].subject


def test_a_tampered_or_foreign_refund_signature_is_gone_and_changes_nothing(
    client, make_order, django_capture_on_commit_callbacks
):
    # Given two shoppers waiting for stock, each with their own emailed refund link
    product = ProductFactory()
    add_keys(product, 2)
    mine = make_order((product, 1), email="me@example.com")
    theirs = make_order((product, 1), email="them@example.com")
    retire_available(product)
    record_payment(mine, django_capture_on_commit_callbacks)
    record_payment(theirs, django_capture_on_commit_callbacks)
    links = {m.to[0]: refund_link_in(m) for m in mail.outbox}
    my_signature = links["me@example.com"].rstrip("/").rsplit("/", 1)[1]
    their_signature = links["them@example.com"].rstrip("/").rsplit("/", 1)[1]
    tampered = my_signature[:-1] + ("A" if my_signature[-1] != "A" else "B")

    # When my order's refund page is opened or posted with a tampered or another order's signature
    for signature in (tampered, their_signature):
        url = reverse("order-refund", kwargs={"token": mine.token, "signature": signature})
        with django_capture_on_commit_callbacks(execute=True):
            opened = client.get(url)
            posted = client.post(url)

        # Then the link is gone (410), no refund button, and both orders still wait
        assert (opened.status_code, posted.status_code) == (410, 410)
        assert "Refund my order" not in opened.content.decode()
    assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.AWAITING_STOCK}
    assert len(mail.outbox) == 2
    # And the real link still works for its own order
    assert client.get(links["me@example.com"]).status_code == 200


@pytest.mark.parametrize(("no_refund_after_reveal", "expected"), [(True, 410), (False, 200)])
def test_refund_refused_once_a_key_of_a_no_refund_product_was_revealed(
    client, make_order, django_capture_on_commit_callbacks, no_refund_after_reveal, expected
):
    # Given an order for 2 keys with 1 delivered while it waits for the other
    product = ProductFactory(no_refund_after_reveal=no_refund_after_reveal)
    add_keys(product, 2)
    order = make_order((product, 2))
    keys_set_state(
        key_ids=list(LicenseKey.objects.filter(product=product).values_list("pk", flat=True)[:1]),
        action="retire",
        actor="merchant",
    )
    order = record_payment(order, django_capture_on_commit_callbacks)
    assert order.status == OrderStatus.AWAITING_STOCK
    link = refund_link_in(mail.outbox[0])

    # When the shopper reveals the delivered key, then follows the refund link
    revealed = client.post(
        reverse("order-reveal", kwargs={"token": order.token}), {"line": order.lines.get().pk}, follow=True
    )
    assert LicenseKey.objects.get(order_line__order=order).reveal() in revealed.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        opened = client.get(link)
        posted = client.post(link)

    # Then a product that forbids refunds after reveal refuses, and the order keeps waiting
    assert opened.status_code == expected
    order.refresh_from_db()
    if expected == 410:
        assert posted.status_code == 410
        assert order.status == OrderStatus.AWAITING_STOCK
        assert LicenseKey.objects.get(order_line__order=order).status == KeyStatus.SOLD
    else:
        assert order.status == OrderStatus.REFUNDED


def test_new_stock_fills_waiting_orders_oldest_payment_first_and_stops_when_it_runs_out(
    make_order, django_capture_on_commit_callbacks
):
    # Given 3 orders waiting for stock, created in one order but paid in another
    product = ProductFactory()
    add_keys(product, 3)
    orders = [make_order((product, 1), email=f"buyer{i}@example.com") for i in range(3)]
    retire_available(product)
    for order in orders:
        assert record_payment(order, django_capture_on_commit_callbacks).status == OrderStatus.AWAITING_STOCK
    now = timezone.now()
    paid_hours_ago = {orders[0].pk: 1, orders[1].pk: 3, orders[2].pk: 2}
    for pk, hours in paid_hours_ago.items():
        Order.objects.filter(pk=pk).update(paid_at=now - timedelta(hours=hours))
    mail.outbox.clear()

    # When 2 keys arrive and the backorder queue is filled
    add_keys(product, 2, prefix="RESTOCK")
    with django_capture_on_commit_callbacks(execute=True):
        filled = backorders_fill(product_id=product.pk)

    # Then the two orders paid longest ago are delivered and the newest still waits
    assert filled == 2
    status = dict(Order.objects.values_list("pk", "status"))
    assert status == {
        orders[1].pk: OrderStatus.FULFILLED,
        orders[2].pk: OrderStatus.FULFILLED,
        orders[0].pk: OrderStatus.AWAITING_STOCK,
    }
    assert not LicenseKey.objects.filter(order_line__order=orders[0]).exists()
    assert sorted(m.to[0] for m in mail.outbox) == ["buyer1@example.com", "buyer2@example.com"]
    assert all("is ready" in m.subject for m in mail.outbox)


def test_an_older_order_waiting_for_another_product_does_not_block_the_queue(
    make_order, django_capture_on_commit_callbacks
):
    # Given an older order waiting for products A and B, and a newer one waiting for A only
    a, b = ProductFactory(), ProductFactory()
    add_keys(a, 2)
    add_keys(b, 1)
    older = make_order((a, 1), (b, 1), email="older@example.com")
    newer = make_order((a, 1), email="newer@example.com")
    retire_available(a)
    retire_available(b)
    record_payment(older, django_capture_on_commit_callbacks)
    record_payment(newer, django_capture_on_commit_callbacks)
    Order.objects.filter(pk=older.pk).update(paid_at=timezone.now() - timedelta(hours=2))

    # When 5 keys of A arrive and the queue for A is filled
    add_keys(a, 5, prefix="RESTOCK")
    with django_capture_on_commit_callbacks(execute=True):
        backorders_fill(product_id=a.pk)

    # Then the older order gets its A key and keeps waiting for B, and the newer one is delivered
    assert LicenseKey.objects.filter(order_line__order=older, product=a).count() == 1
    older.refresh_from_db()
    newer.refresh_from_db()
    assert older.status == OrderStatus.AWAITING_STOCK
    assert newer.status == OrderStatus.FULFILLED


def test_backorders_past_their_products_deadline_are_refunded_at_stripe_and_newer_ones_wait(
    localstripe, stripe_client, make_order, django_capture_on_commit_callbacks
):
    # Given waiting orders: two paid 30 hours ago for products refunded after 24 and 72 hours,
    # and one paid 1 hour ago for the 24-hour product
    quick = ProductFactory(backorder_refund_after_hours=24)
    slow = ProductFactory(backorder_refund_after_hours=72)
    add_keys(quick, 2)
    add_keys(slow, 1)
    overdue = make_order((quick, 1), email="overdue@example.com")
    patient = make_order((slow, 1), email="patient@example.com")
    recent = make_order((quick, 1), email="recent@example.com")
    for order in (overdue, patient, recent):
        payment_start_for_order(order=order)  # all three hold their keys before any of them pays
    payments = {}
    for order in (overdue, patient, recent):
        payments[order.pk] = pay_by_card_after_stock_vanished(order, stripe_client, django_capture_on_commit_callbacks)
        assert order.status == OrderStatus.AWAITING_STOCK
    Order.objects.filter(pk__in=[overdue.pk, patient.pk]).update(paid_at=timezone.now() - timedelta(hours=30))
    mail.outbox.clear()

    # When the periodic deadline task runs
    with django_capture_on_commit_callbacks(execute=True):
        refunded = refund_overdue_backorders.delay().get()

    # Then only the order past its own product's deadline is refunded, for real, and told so
    assert refunded == 1
    status = dict(Order.objects.values_list("pk", "status"))
    assert status[overdue.pk] == OrderStatus.REFUNDED
    assert status[patient.pk] == OrderStatus.AWAITING_STOCK
    assert status[recent.pk] == OrderStatus.AWAITING_STOCK
    assert [r.amount for r in refunds_at_stripe(stripe_client, payments[overdue.pk])] == [overdue.total_amount]
    assert refunds_at_stripe(stripe_client, payments[patient.pk]) == []
    assert refunds_at_stripe(stripe_client, payments[recent.pk]) == []
    assert [(m.to, "was refunded" in m.subject) for m in mail.outbox] == [(["overdue@example.com"], True)]
