"""Key reservations: a shopper who starts paying holds their keys for the product's window, and only then."""

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from catalog.models import StockDisplay
from catalog.selectors import product_stock_label
from fulfillment.keys import keys_release_expired, keys_release_for_order, keys_reserve_for_order, keys_set_state
from fulfillment.models import KeyEvent, KeyStatus, LicenseKey
from fulfillment.tasks import release_expired_reservations
from orders.errors import CheckoutError
from orders.models import Order, OrderStatus
from orders.status import order_transition
from payments.models import Payment
from payments.services import OrderOutOfStock
from storefront.flow.checkout import payment_start_for_order
from storefront.flow.payment import order_mark_paid
from storefront.flow.refunds import refund_issue
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db


def held_by(order: Order):
    return LicenseKey.objects.filter(reserved_for=order, status=KeyStatus.RESERVED)


def pay(order: Order, capture, *, amount: int | None = None) -> Order:
    """Record the order's payment and run delivery as it runs after commit."""
    with capture(execute=True):
        order_mark_paid(
            order_id=order.pk,
            amount=order.total_amount if amount is None else amount,
            currency=order.currency,
            payment_ref=f"pi_{order.number}",
            actor="test",
        )
    order.refresh_from_db()
    return order


def test_starting_payment_holds_one_key_per_unit_for_the_products_window(
    localstripe, make_order, time_machine, django_capture_on_commit_callbacks
):
    # Given 5 keys of a product held for 20 minutes, an order for 3, and a clock that stands still
    time_machine.move_to(timezone.now(), tick=False)
    product = ProductFactory(reservation_minutes=20, stock_display=StockDisplay.COUNT, low_stock_threshold=0)
    add_keys(product, 5)
    order = make_order((product, 3))
    assert product_stock_label(product) == {"state": "in_stock", "count": 5}

    # When the shopper starts paying (and that commits)
    with django_capture_on_commit_callbacks(execute=True):
        payment_start_for_order(order=order)

    # Then exactly 3 keys are held for this order until now + 20 minutes, each move audited
    held = list(held_by(order))
    assert len(held) == 3
    assert {key.reserved_until for key in held} == {timezone.now() + timedelta(minutes=20)}
    assert set(KeyEvent.objects.filter(type="reserved", order=order).values_list("key_id", flat=True)) == {
        k.pk for k in held
    }
    assert LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).count() == 2

    # And the other shoppers see, and can buy, only what is left
    product.refresh_from_db()
    assert product_stock_label(product) == {"state": "in_stock", "count": 2}
    with pytest.raises(CheckoutError) as refused:
        make_order((product, 3), email="other@example.com")
    assert refused.value.code == "out_of_stock"


def test_starting_payment_again_extends_the_hold_and_never_doubles_it(localstripe, make_order, time_machine):
    # Given an order that started paying 25 minutes ago (window 30 minutes)
    time_machine.move_to(timezone.now(), tick=False)
    product = ProductFactory(reservation_minutes=30)
    add_keys(product, 6)
    order = make_order((product, 2))
    payment_start_for_order(order=order)
    first_keys = set(held_by(order).values_list("pk", flat=True))
    time_machine.shift(timedelta(minutes=25))

    # When the shopper comes back to the payment page
    payment_start_for_order(order=order)

    # Then the same 2 keys are held, for a fresh window from now, and nothing else is taken
    assert set(held_by(order).values_list("pk", flat=True)) == first_keys
    assert {key.reserved_until for key in held_by(order)} == {timezone.now() + timedelta(minutes=30)}
    assert LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).count() == 4
    assert KeyEvent.objects.filter(type="reserved", order=order).count() == 2
    assert Payment.objects.filter(order=order).count() == 1


def test_short_stock_raises_out_of_stock_and_holds_nothing(localstripe, make_order):
    # Given an order for 2 of a well-stocked product and 2 of one that lost a key after checkout
    plenty = ProductFactory()
    add_keys(plenty, 5)
    scarce = ProductFactory()
    add_keys(scarce, 2)
    order = make_order((plenty, 2), (scarce, 2))
    keys_set_state(
        key_ids=list(LicenseKey.objects.filter(product=scarce).values_list("pk", flat=True)[:1]),
        action="retire",
        actor="merchant",
    )

    # When the shopper starts paying
    with pytest.raises(OrderOutOfStock):
        payment_start_for_order(order=order)

    # Then no key of either product is held, none was audited as reserved, and no payment was opened
    assert not LicenseKey.objects.filter(reserved_for=order).exists()
    assert not LicenseKey.objects.filter(status=KeyStatus.RESERVED).exists()
    assert not KeyEvent.objects.filter(type="reserved").exists()
    assert LicenseKey.objects.filter(product=plenty, status=KeyStatus.AVAILABLE).count() == 5
    assert not Payment.objects.filter(order=order).exists()


def test_expired_holds_go_back_to_the_pool_with_released_events(make_order, time_machine):
    # Given an order holding 2 keys for 15 minutes, and a clock that stands still
    time_machine.move_to(timezone.now(), tick=False)
    product = ProductFactory(reservation_minutes=15)
    add_keys(product, 3)
    order = make_order((product, 2))
    assert keys_reserve_for_order(order=order)
    held = set(held_by(order).values_list("pk", flat=True))

    # When expiry runs inside the window, nothing moves
    assert keys_release_expired(now=timezone.now() + timedelta(minutes=14)) == 0
    assert held_by(order).count() == 2

    # When it runs after the window
    released = keys_release_expired(now=timezone.now() + timedelta(minutes=16))

    # Then both keys are available again, unassigned, with a 'released' event each
    assert released == 2
    for key in LicenseKey.objects.filter(pk__in=held):
        assert (key.status, key.reserved_for_id, key.reserved_until) == (KeyStatus.AVAILABLE, None, None)
    assert set(KeyEvent.objects.filter(type="released").values_list("key_id", flat=True)) == held
    assert LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).count() == 3


def test_the_periodic_task_releases_holds_whose_window_has_passed(make_order):
    # Given one order whose hold ran out a minute ago and one whose hold is still running
    product = ProductFactory(reservation_minutes=30)
    add_keys(product, 4)
    stale = make_order((product, 2))
    fresh = make_order((product, 1), email="fresh@example.com")
    assert keys_reserve_for_order(order=stale)
    assert keys_reserve_for_order(order=fresh)
    held_by(stale).update(reserved_until=timezone.now() - timedelta(minutes=1))

    # When the beat runs the release task
    result = release_expired_reservations.delay()

    # Then only the stale hold is released
    assert result.get() == 2
    assert not held_by(stale).exists()
    assert held_by(fresh).count() == 1
    assert KeyEvent.objects.filter(type="released", actor="reservation-expiry").count() == 2


@pytest.mark.parametrize(
    ("paid_amount_delta", "status"),
    [(0, OrderStatus.FULFILLED), (-100, OrderStatus.ON_HOLD)],
    ids=["paid", "on-hold"],
)
def test_expiry_never_releases_the_keys_of_an_order_that_was_paid(
    make_order, django_capture_on_commit_callbacks, paid_amount_delta, status
):
    # Given an order holding 2 keys whose payment arrived (delivered with it, or held for staff)
    product = ProductFactory(reservation_minutes=10)
    add_keys(product, 2)
    order = make_order((product, 2))
    assert keys_reserve_for_order(order=order)
    held = set(held_by(order).values_list("pk", flat=True))
    order_mark_paid(
        order_id=order.pk,
        amount=order.total_amount + paid_amount_delta,
        currency=order.currency,
        payment_ref="pi_late",
        actor="test",
    )
    order.refresh_from_db()
    assert order.status == status

    # When the reservation window has long passed and expiry runs
    released = keys_release_expired(now=timezone.now() + timedelta(days=1))

    # Then the paid order keeps its keys: the very keys it held, sold to it, or still held while staff look
    assert released == 0
    if status == OrderStatus.FULFILLED:
        sold = LicenseKey.objects.filter(order_line__order=order, status=KeyStatus.SOLD)
        assert set(sold.values_list("pk", flat=True)) == held
    else:
        assert set(held_by(order).values_list("pk", flat=True)) == held
    assert not KeyEvent.objects.filter(type="released").exists()


def test_paying_within_the_window_gets_the_held_keys_even_when_the_rest_sold_out(
    make_order, django_capture_on_commit_callbacks
):
    # Given 3 keys, a shopper holding 2 of them while paying
    product = ProductFactory()
    add_keys(product, 3)
    slow = make_order((product, 2), email="slow@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        assert keys_reserve_for_order(order=slow)
    held = set(held_by(slow).values_list("pk", flat=True))

    # And meanwhile another shopper buys the last free key, and a third finds the product sold out
    fast = pay(make_order((product, 1), email="fast@example.com"), django_capture_on_commit_callbacks)
    assert fast.status == OrderStatus.FULFILLED
    assert not set(LicenseKey.objects.filter(order_line__order=fast).values_list("pk", flat=True)) & held
    with pytest.raises(CheckoutError):
        make_order((product, 1), email="late@example.com")

    # When the first shopper's payment arrives within the window
    slow = pay(slow, django_capture_on_commit_callbacks)

    # Then they get exactly the keys they held
    assert slow.status == OrderStatus.FULFILLED
    sold = LicenseKey.objects.filter(order_line__order=slow, status=KeyStatus.SOLD)
    assert set(sold.values_list("pk", flat=True)) == held
    assert not LicenseKey.objects.filter(status__in=[KeyStatus.AVAILABLE, KeyStatus.RESERVED]).exists()


def test_paying_after_the_hold_expired_and_stock_is_gone_waits_for_stock_honestly(
    client, make_order, django_capture_on_commit_callbacks
):
    # Given a shopper who held the only key, let the window pass, and lost it to another buyer
    product = ProductFactory(reservation_minutes=10)
    add_keys(product, 1)
    slow = make_order((product, 1), email="slow@example.com")
    assert keys_reserve_for_order(order=slow)
    assert keys_release_for_order(order=slow, actor="reservation-expiry") == 1  # what expiry does to it
    fast = pay(make_order((product, 1), email="fast@example.com"), django_capture_on_commit_callbacks)
    assert fast.status == OrderStatus.FULFILLED
    mail.outbox.clear()

    # When the slow shopper's payment arrives
    slow = pay(slow, django_capture_on_commit_callbacks)

    # Then the order waits for stock: nothing delivered, no key shown, the shopper told so
    assert slow.status == OrderStatus.AWAITING_STOCK
    line = slow.lines.get()
    assert line.delivered_at is None
    assert not LicenseKey.objects.filter(order_line__order=slow).exists()
    assert [m.to for m in mail.outbox] == [["slow@example.com"]]
    assert "waiting for stock" in mail.outbox[0].subject
    page = client.get(reverse("order-detail", kwargs={"token": slow.token})).content.decode()
    assert 'data-status="awaiting_stock"' in page
    assert "Reveal key" not in page


def test_pay_page_says_sold_out_when_the_keys_cannot_be_held(client, localstripe, make_order):
    # Given two orders for the only key, the first of which started paying
    product = ProductFactory()
    add_keys(product, 1)
    first = make_order((product, 1), email="first@example.com")
    second = make_order((product, 1), email="second@example.com")
    assert client.get(reverse("pay", kwargs={"token": first.token})).status_code == 200
    assert held_by(first).count() == 1

    # When the second shopper opens their payment page
    response = client.get(reverse("pay", kwargs={"token": second.token}))

    # Then they are told it sold out, get no card form, and no payment is opened for them
    page = response.content.decode()
    assert response.status_code == 200
    assert "sold out before payment" in page
    assert 'id="payment-form"' not in page
    assert not Payment.objects.filter(order=second).exists()
    assert not held_by(second).exists()
    assert 'id="payment-form"' in client.get(reverse("pay", kwargs={"token": first.token})).content.decode()


def test_refunding_an_order_that_holds_keys_puts_them_back(make_order, django_capture_on_commit_callbacks):
    # Given an order holding 2 keys whose payment came in short, so it is held for staff
    product = ProductFactory()
    add_keys(product, 2)
    order = make_order((product, 2))
    assert keys_reserve_for_order(order=order)
    order = pay(order, django_capture_on_commit_callbacks, amount=order.total_amount - 1)
    assert order.status == OrderStatus.ON_HOLD

    # When staff refund it
    with django_capture_on_commit_callbacks(execute=True):
        refund_issue(order=order, actor="staff:ann", reason="Underpaid.")

    # Then its keys are back in the pool, audited as released by that actor
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert not held_by(order).exists()
    assert LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).count() == 2
    assert KeyEvent.objects.filter(type="released", actor="staff:ann", order=order).count() == 2


def test_releasing_a_cancelled_orders_hold_returns_its_keys(make_order):
    # Given an order holding 2 of 3 keys, then cancelled
    product = ProductFactory()
    add_keys(product, 3)
    order = make_order((product, 2))
    assert keys_reserve_for_order(order=order)
    order_transition(order=order, to_status=OrderStatus.CANCELLED, actor="staff:ann")

    # When its hold is released
    released = keys_release_for_order(order=order, actor="staff:ann")

    # Then the keys are available again and a second release does nothing
    assert released == 2
    assert LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).count() == 3
    assert keys_release_for_order(order=order, actor="staff:ann") == 0
    assert KeyEvent.objects.filter(type="released", order=order).count() == 2


def test_the_hold_of_a_cancelled_order_is_released_when_its_window_passes(make_order):
    # Given an order holding the only 2 keys, cancelled before paying
    product = ProductFactory(reservation_minutes=10)
    add_keys(product, 2)
    order = make_order((product, 2))
    assert keys_reserve_for_order(order=order)
    order_transition(order=order, to_status=OrderStatus.CANCELLED, actor="staff:ann")

    # When the reservation window has passed and expiry runs
    keys_release_expired(now=timezone.now() + timedelta(minutes=11))

    # Then the keys can be sold again
    assert LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).count() == 2


def test_paying_through_the_api_when_the_keys_cannot_be_held_is_a_clear_409(
    client, localstripe, stripe_client, make_order
):
    # Given two orders for the only key, the first of which holds it
    product = ProductFactory()
    add_keys(product, 1)
    first = make_order((product, 1), email="first@example.com")
    second = make_order((product, 1), email="second@example.com")
    payment_start_for_order(order=first)
    token = stripe_client.v1.tokens.create(
        params={"card": {"number": "4242424242424242", "exp_month": "12", "exp_year": "2031", "cvc": "123"}}
    )

    # When the second shopper pays through the API
    response = client.post(
        reverse("api-order-pay", kwargs={"token": second.token}),
        {"card_token": token.id},
        content_type="application/json",
    )

    # Then they get a JSON error they can act on, and nothing was charged or held
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "out_of_stock"
    assert not Payment.objects.filter(order=second).exists()
    assert not held_by(second).exists()
