"""The pay page's turns a new shopper took: cancelling at PayPal, failing the bank's 3-D Secure check, paying an
order a second tab already paid, and refreshing the page a key was revealed on."""

import re

import pytest
from playwright.sync_api import expect

from fulfillment.models import DeliveryAccess
from orders.models import OrderStatus
from payments.models import PaymentStatus
from tests.e2e.steps import (
    ORDER_PAGE,
    add_to_cart,
    check_out,
    fill_card,
    key_product,
    order_of,
    pay_by_card,
    reveal_key,
)

pytestmark = pytest.mark.django_db(transaction=True)

CARD_3DS = "4000002500003155"


def on_the_pay_page(browsers, name: str, email: str):
    """A shopper with one key of a new product in the cart, checked out, on the pay page."""
    product, keys = key_product(name=name)
    shopper = browsers.open()
    add_to_cart(shopper.page, product)
    check_out(shopper.page, email)
    return shopper, product, keys


def test_cancelling_at_paypal_brings_back_the_card_form_with_nothing_called_unavailable(browsers, paypal):
    # Given a shopper who chose PayPal on the pay page and went to PayPal
    shopper, _, _ = on_the_pay_page(browsers, "Harbour Lights key", "changes.mind@example.com")
    page = shopper.page
    page.locator("#other-methods").get_by_role("link", name="PayPal").click()
    page.locator("#paypal-button").click()
    expect(page).to_have_url(re.compile(re.escape(paypal.url) + r"/checkoutnow\?token="))

    # When they cancel and return to the shop
    page.locator("#cancel").click()

    # Then the card form is back, PayPal is still offered, and nothing says unavailable
    expect(page.locator("#card-element")).to_be_visible()
    expect(page.locator("#other-methods").get_by_role("link", name="PayPal")).to_be_visible()
    expect(page.get_by_text("unavailable")).to_have_count(0)
    browsers.finish(shopper)


def test_a_failed_3ds_check_is_shown_and_the_shopper_pays_again(browsers):
    # Given a shopper paying with a card whose bank asks for 3-D Secure
    shopper, product, keys = on_the_pay_page(browsers, "Lantern Festival key", "three.d@example.com")
    page = shopper.page
    fill_card(page, CARD_3DS)
    page.get_by_role("button", name="Pay now").click()

    # When they fail the bank's check
    page.get_by_role("button", name="Fail authentication").click()

    # Then the pay page says so and lets them try again; the order waits, unpaid
    expect(page.locator("#payment-error")).to_contain_text("authentication")
    expect(page.get_by_role("button", name="Pay now")).to_be_enabled()

    # When they try again and complete the check
    fill_card(page, CARD_3DS)
    page.get_by_role("button", name="Pay now").click()
    page.get_by_role("button", name="Complete authentication").click()

    # Then the order is delivered once, on the second payment
    expect(page).to_have_url(ORDER_PAGE, timeout=10_000)
    expect(page.locator("#order-status")).to_have_attribute("data-status", OrderStatus.FULFILLED)
    assert reveal_key(page, product) in keys
    order = order_of(page)
    assert order.payments.filter(status=PaymentStatus.SUCCEEDED).count() == 1
    browsers.finish(shopper)


def test_a_second_tab_that_pays_a_paid_order_links_to_it(browsers):
    # Given the same pay page open in two tabs
    shopper, _, _ = on_the_pay_page(browsers, "Twin Peaks key", "two.tabs@example.com")
    first = shopper.page
    second = shopper.context.new_page()
    second.goto(first.url)

    # When the first tab pays, then the second tries
    pay_by_card(first)
    fill_card(second)
    second.get_by_role("button", name="Pay now").click()

    # Then the second tab says the order can no longer be paid and links to it
    expect(second.locator("#payment-error")).to_contain_text("can no longer be paid")
    second.locator("#order-link").click()
    expect(second).to_have_url(first.url)
    browsers.finish(shopper)


def test_refreshing_after_a_reveal_does_not_post_again(browsers):
    # Given a delivered key, revealed on the order page
    shopper, product, keys = on_the_pay_page(browsers, "Quiet Hours key", "refresh@example.com")
    page = shopper.page
    pay_by_card(page)
    assert reveal_key(page, product) in keys

    # When the shopper refreshes
    expect(page).to_have_url(ORDER_PAGE)
    page.reload()

    # Then the order page loads (no form resubmission), the key is hidden again, and one reveal was logged
    expect(page.get_by_role("button", name="Reveal key")).to_be_visible()
    assert DeliveryAccess.objects.filter(order=order_of(page), kind="reveal").count() == 1
    browsers.finish(shopper)
