"""Coupons at checkout: what a code takes off, for whom and when, and that a refused code creates nothing."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group

from catalog.models import BillingInterval, Category, FulfilmentKind, PriceBreak
from orders.cart import CartLine
from orders.coupons import USE_HELD_FOR, CouponInvalid, coupon_check, discount_share_out
from orders.errors import CheckoutError
from orders.models import Coupon, CouponKind, CouponRedemption, Order, OrderLine, Subscription
from orders.services import ShippingAddress
from storefront.flow.checkout import checkout_create_order
from storefront.flow.payment import order_mark_paid
from storefront.management.commands.seed_demo import DEMO_COUPON
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db

ADDRESS = ShippingAddress(name="Ada Lovelace", line1="1 Analytical Way", city="London", postal_code="N1", country="gb")
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def checkout(*lines: tuple, coupon: str = "", email: str = "buyer@example.com", device: str = "", shipping=None):
    return checkout_create_order(
        lines=[CartLine(product=p, quantity=q) for p, q in lines],
        email=email,
        shipping=shipping,
        locale="en",
        purchase_ip="203.0.113.7",
        user_agent="pytest",
        device_id=device,
        coupon=coupon,
    )


def refused(reason: str, *lines: tuple, **kwargs) -> None:
    before = (Order.objects.count(), OrderLine.objects.count(), CouponRedemption.objects.count())
    with pytest.raises(CouponInvalid) as raised:
        checkout(*lines, **kwargs)
    assert (raised.value.code, raised.value.reason) == ("coupon_invalid", reason)
    assert (Order.objects.count(), OrderLine.objects.count(), CouponRedemption.objects.count()) == before


def paid(order: Order) -> Order:
    return order_mark_paid(
        order_id=order.pk, amount=order.total_amount, currency=order.currency, payment_ref="pi_x", actor="test"
    )


@pytest.fixture
def keys():
    product = ProductFactory(name="Game key", price_amount=1999)
    add_keys(product, 20)
    return product


@pytest.fixture
def service():
    return ProductFactory(name="Consultation", kind=FulfilmentKind.SERVICE, price_amount=500)


def test_a_percent_coupon_is_shared_over_the_lines_in_whole_minor_units(keys, service):
    # Given 10% off, any product
    Coupon.objects.create(code="WELCOME10", percent_off=10, max_uses_per_shopper=None)

    # When two lines are checked out with the code in another case
    order = checkout((keys, 2), (service, 1), coupon=" welcome10 ")

    # Then 10% of 44.98 is taken off (rounded down), shared out exactly over the lines
    assert (order.subtotal_amount, order.discount_amount, order.total_amount) == (4498, 449, 4049)
    shares = {line.product_name: line.discount_amount for line in order.lines.all()}
    assert shares == {"Game key": 399, "Consultation": 50}
    assert sum(line.paid_amount for line in order.lines.all()) == order.total_amount
    redemption = CouponRedemption.objects.get(order=order)
    assert (redemption.coupon.code, redemption.amount, redemption.email_key) == ("WELCOME10", 449, "buyer@example.com")
    assert order.events.get(type="order_created").data["coupon"] == "WELCOME10"


def test_a_fixed_amount_never_takes_more_than_the_lines_and_never_the_shipping(settings):
    # Given 50.00 off and a 19.00 physical item that ships for 7.50
    settings.SHIPPING_FLAT_FEE = 750
    stick = ProductFactory(kind=FulfilmentKind.PHYSICAL, price_amount=1900)
    Coupon.objects.create(code="FIFTY", kind=CouponKind.FIXED, amount_off=5000, currency="USD")

    order = checkout((stick, 1), coupon="FIFTY", shipping=ADDRESS)

    # Then the lines are free and the shipping is still paid
    assert (order.subtotal_amount, order.discount_amount, order.shipping_amount, order.total_amount) == (
        1900,
        1900,
        750,
        750,
    )


def test_a_coupon_for_some_products_or_a_category_takes_off_only_their_lines(keys, service):
    games = Category.objects.create(name="Games", slug="games")
    keys.category = games
    keys.save()
    by_category = Coupon.objects.create(code="GAMES", percent_off=50, max_uses_per_shopper=None)
    by_category.categories.add(games)
    by_product = Coupon.objects.create(code="TALK", percent_off=50, max_uses_per_shopper=None)
    by_product.products.add(service)

    assert checkout((keys, 1), (service, 1), coupon="GAMES").discount_amount == 999
    assert checkout((keys, 1), (service, 1), coupon="TALK").discount_amount == 250
    refused("nothing_applies", (keys, 1), coupon="TALK")


def test_an_unknown_code_or_one_outside_its_dates_is_refused_and_nothing_is_created(keys):
    Coupon.objects.create(code="SPRING", percent_off=20, starts_at=NOW, ends_at=NOW + timedelta(days=7))
    Coupon.objects.create(code="OFF", percent_off=20, is_active=False)

    refused("unknown", (keys, 1), coupon="NOPE")
    refused("unknown", (keys, 1), coupon="OFF")
    with time_machine.travel(NOW - timedelta(minutes=1), tick=False):
        refused("not_started", (keys, 1), coupon="SPRING")
    with time_machine.travel(NOW + timedelta(days=7), tick=False):
        refused("ended", (keys, 1), coupon="SPRING")
    with time_machine.travel(NOW + timedelta(days=6), tick=False):
        assert checkout((keys, 1), coupon="spring").discount_amount == 399


def test_once_per_shopper_counts_one_mailbox_however_written_and_one_device(keys):
    Coupon.objects.create(code="ONCE", percent_off=10, max_uses_per_shopper=1)
    checkout((keys, 1), coupon="ONCE", email="jane.doe@gmail.com", device="dev-1")

    # The same Gmail mailbox with dots and a +tag, or another mailbox on the same device, is the same shopper
    refused("shopper_limit", (keys, 1), coupon="ONCE", email="JaneDoe+deal@googlemail.com", device="dev-2")
    refused("shopper_limit", (keys, 1), coupon="ONCE", email="someone.else@example.com", device="dev-1")
    # Another person on another device may use it
    assert checkout((keys, 1), coupon="ONCE", email="someone.else@example.com", device="dev-2").discount_amount


def test_the_total_limit_counts_paid_orders_and_unpaid_ones_only_while_their_use_is_held(keys):
    Coupon.objects.create(code="LAST", percent_off=10, max_uses=1, max_uses_per_shopper=None)
    with time_machine.travel(NOW, tick=False):
        first = checkout((keys, 1), coupon="LAST", email="a@example.com")
        refused("used_up", (keys, 1), coupon="LAST", email="b@example.com")

    # An abandoned order frees its use once the hold is over
    with time_machine.travel(NOW + USE_HELD_FOR + timedelta(seconds=1), tick=False):
        second = checkout((keys, 1), coupon="LAST", email="b@example.com")
        # and a paid order keeps it for good
        paid(second)
    with time_machine.travel(NOW + 3 * USE_HELD_FOR, tick=False):
        refused("used_up", (keys, 1), coupon="LAST", email="c@example.com")
    assert first.discount_amount == second.discount_amount == 199


def test_first_order_only_refuses_a_shopper_who_paid_before(keys):
    Coupon.objects.create(code="FIRST", percent_off=10, first_order_only=True, max_uses_per_shopper=None)
    paid(checkout((keys, 1), email="regular@example.com"))

    refused("first_order", (keys, 1), coupon="FIRST", email="regular@example.com")
    assert checkout((keys, 1), coupon="FIRST", email="new@example.com").discount_amount == 199


def test_a_minimum_order_and_the_currency_are_checked(keys):
    Coupon.objects.create(code="BIG", percent_off=10, currency="USD", min_order_amount=3000)
    Coupon.objects.create(code="EUROS", kind=CouponKind.FIXED, amount_off=500, currency="EUR")

    refused("minimum", (keys, 1), coupon="BIG")
    refused("currency", (keys, 1), coupon="EUROS")
    assert checkout((keys, 2), coupon="BIG").discount_amount == 399


def test_a_coupon_that_does_not_stack_leaves_lines_bought_at_a_quantity_price_alone(keys, service):
    PriceBreak.objects.create(product=keys, min_quantity=3, unit_amount=1500)
    Coupon.objects.create(code="SOLO", percent_off=10, stacks_with_quantity_prices=False, max_uses_per_shopper=None)
    Coupon.objects.create(code="BOTH", percent_off=10, max_uses_per_shopper=None)

    # Three keys at the quantity price: the non-stacking coupon only discounts the service
    order = checkout((keys, 3), (service, 1), coupon="SOLO")
    assert (order.subtotal_amount, order.discount_amount) == (5000, 50)
    refused("nothing_applies", (keys, 3), coupon="SOLO")
    # Two keys at the list price, and a stacking coupon on the quantity price
    assert checkout((keys, 2), coupon="SOLO").discount_amount == 399
    assert checkout((keys, 3), coupon="BOTH").discount_amount == 450


def test_a_subscription_takes_a_coupon_for_its_first_period_only_and_renews_at_its_own_price():
    club = ProductFactory(
        kind=FulfilmentKind.MEMBERSHIP,
        billing_interval=BillingInterval.MONTH,
        price_amount=900,
        max_per_order=1,
        membership_group=Group.objects.create(name="Club members"),
    )
    Coupon.objects.create(code="ANY", percent_off=50, max_uses_per_shopper=None)
    Coupon.objects.create(code="CLUB", percent_off=50, first_period_of_subscriptions=True, max_uses_per_shopper=None)

    refused("nothing_applies", (club, 1), coupon="ANY")
    order = paid(checkout((club, 1), coupon="CLUB"))

    assert (order.total_amount, order.discount_amount) == (450, 450)
    subscription = Subscription.objects.get(orders=order)
    assert (subscription.unit_price, subscription.amount) == (900, 900)


def test_the_cart_prices_a_code_without_the_shoppers_limits_which_checkout_then_checks(keys):
    Coupon.objects.create(code="ONCE", percent_off=10, max_uses_per_shopper=1)
    checkout((keys, 1), coupon="ONCE", email="ann@example.com")
    lines = [CartLine(product=keys, quantity=1)]

    assert coupon_check(code="once", lines=lines).amount == 199  # no email yet: a quote
    with pytest.raises(CheckoutError):
        coupon_check(code="once", lines=lines, email="ann@example.com")


@pytest.mark.parametrize(
    ("amount", "weights", "shares"),
    [
        (449, [3998, 500], (399, 50)),
        (3, [1, 1, 1, 1], (1, 1, 1, 0)),
        (10, [0, 10], (0, 10)),
        (0, [5, 7], (0, 0)),
        (7, [7], (7,)),
    ],
)
def test_a_discount_is_shared_out_exactly_and_never_above_a_line(amount, weights, shares):
    assert discount_share_out(amount, weights) == shares


def test_a_discount_larger_than_the_lines_cannot_be_shared_out():
    with pytest.raises(ValueError):
        discount_share_out(11, [5, 5])


def test_the_demo_coupon_is_ten_percent_once_per_shopper():
    assert DEMO_COUPON == {"code": "WELCOME10", "kind": "percent", "percent_off": 10, "max_uses_per_shopper": 1}
