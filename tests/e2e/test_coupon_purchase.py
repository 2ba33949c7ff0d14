"""A shopper buys with a coupon in a real browser: the code typed in the cart in lower case, the discount in the
cart, checkout and pay page totals, the card charged the discounted amount, the order page showing it; and a
free product checked out with the email alone."""

import re

import pytest
from playwright.sync_api import expect

from catalog.models import FulfilmentKind, PriceBreak
from orders.models import Coupon, OrderStatus
from payments.models import Payment, PaymentStatus
from tests.e2e.steps import ORDER_PAGE, add_to_cart, check_out, key_product, order_line, order_of, pay_by_card
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_coupon_entered_in_the_cart_is_taken_off_every_total_and_the_charge(browsers):
    # Given a key product (25.00, 20.00 each from 2) and the coupon WELCOME10
    product, keys = key_product(name="Photon Studio key")
    PriceBreak.objects.create(product=product, min_quantity=2, unit_amount=2000)
    Coupon.objects.create(code="WELCOME10", percent_off=10, max_uses_per_shopper=1)
    shopper = browsers.open()
    page = shopper.page

    # When the shopper puts two in the cart and types the code in lower case
    add_to_cart(page, product)
    page.get_by_label("Quantity of Photon Studio key").fill("2")
    page.get_by_role("button", name="Update").click()
    page.get_by_label("Coupon code").fill("welcome10")
    page.get_by_role("button", name="Apply").click()

    # Then the cart shows the quantity price, the coupon and the total
    expect(page.get_by_text("Coupon WELCOME10 applied.")).to_be_visible()
    expect(page.locator("#cart-discount")).to_contain_text("USD 4.00")
    expect(page.locator("tfoot")).to_contain_text("USD 36.00")

    # When they check out and pay by card
    check_out(page, "coupon.buyer@example.com")
    expect(page.locator("#pay-summary")).to_contain_text("Coupon WELCOME10")
    expect(page.locator("#pay-summary tfoot")).to_contain_text("USD 36.00")
    pay_by_card(page)

    # Then the card was charged 36.00, the order shows the coupon, and a key is delivered
    expect(page.locator("#order-status")).to_have_attribute("data-status", OrderStatus.FULFILLED)
    order = order_of(page)
    assert (order.subtotal_amount, order.discount_amount, order.total_amount) == (4000, 400, 3600)
    assert Payment.objects.get(order=order, status=PaymentStatus.SUCCEEDED).amount_received == 3600
    expect(page.get_by_text("Coupon WELCOME10")).to_be_visible()
    order_line(page, product).get_by_role("button", name="Reveal key").click()
    shown = order_line(page, product).locator(".key")
    expect(shown).to_have_count(2)
    assert {text.strip() for text in shown.all_inner_texts()} <= set(keys)

    # And the same shopper cannot use it twice
    add_to_cart(page, product)
    page.get_by_label("Coupon code").fill("WELCOME10")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("link", name="Checkout").click()
    page.fill("#id_email", "coupon.buyer@example.com")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_role("alert")).to_contain_text("you have used it already")
    browsers.finish(shopper)


def test_an_unknown_code_is_refused_in_the_cart_and_changes_nothing(browsers):
    product, _ = key_product(name="Quiet Fox key")
    shopper = browsers.open()
    page = shopper.page
    add_to_cart(page, product)

    page.get_by_label("Coupon code").fill("NOSUCHCODE")
    page.get_by_role("button", name="Apply").click()

    expect(page.get_by_text(re.compile("NOSUCHCODE.*cannot be used"))).to_be_visible()
    expect(page.locator("#cart-discount")).to_have_count(0)
    browsers.finish(shopper)


def test_a_free_product_is_had_with_the_email_alone(browsers):
    checklist = ProductFactory(name="Launch checklist", kind=FulfilmentKind.SERVICE, price_amount=0)
    shopper = browsers.open()
    page = shopper.page
    add_to_cart(page, checklist)

    page.get_by_role("link", name="Checkout").click()
    page.fill("#id_email", "reader@example.com")
    page.get_by_role("button", name="Get it free").click()

    expect(page).to_have_url(ORDER_PAGE)
    expect(page.locator("#order-status")).to_have_attribute("data-status", OrderStatus.FULFILLED)
    assert not Payment.objects.filter(order=order_of(page)).exists()
    browsers.finish(shopper)
