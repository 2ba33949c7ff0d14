"""A shopper buys in a real browser: product page, cart, checkout, the pay page's card form or PayPal, the order page.

Stripe is localstripe (its Stripe.js stand-in renders the card element as plain inputs); PayPal is the
project's fake, whose buyer page has an Approve button.
"""

import re

import pytest
from playwright.sync_api import expect

from catalog.models import FulfilmentKind
from fulfillment.models import DeliveryAccess, LicenseKey
from orders.models import Order, OrderStatus
from payments.models import PaymentStatus
from tests.e2e.steps import (
    ADDRESS,
    ORDER_PAGE,
    add_to_cart,
    address_inputs,
    check_out,
    fill_address,
    key_product,
    order_line,
    order_of,
    pay_by_card,
    reveal_key,
)
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)

# Tests -----------------------------------------------------------------------------------------------------


def test_a_key_bought_by_card_is_delivered_and_revealed_without_any_address_asked(browsers):
    # Given a license-key product with three keys in its pool
    product, keys = key_product(name="Nebula Racer key")
    shopper = browsers.open()
    page = shopper.page

    # When the shopper adds it to the cart and checks out
    add_to_cart(page, product)
    page.get_by_role("link", name="Checkout").click()

    # Then checkout asks for an email and no address at all
    expect(page.locator("#id_email")).to_be_visible()
    expect(address_inputs(page)).to_have_count(0)
    expect(page.locator("#shipping-address")).to_have_count(0)
    expect(page.get_by_text("no address needed")).to_be_visible()

    # When they continue to the pay page and pay with the test card
    page.fill("#id_email", "key.buyer@example.com")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.locator("#method")).to_have_text("Card")
    pay_by_card(page)

    # Then the order page says delivered, and Reveal key shows one of the pool's keys
    expect(page.locator("#order-status")).to_contain_text("Delivered")
    expect(page.locator("#order-status")).to_have_attribute("data-status", OrderStatus.FULFILLED)
    shown = reveal_key(page, product)
    assert shown in keys
    order = order_of(page)
    assert LicenseKey.objects.get(order_line__order=order).reveal() == shown
    assert DeliveryAccess.objects.filter(order=order).count() == 1  # the reveal was logged
    assert order.ship_line1 == ""
    browsers.finish(shopper)


def test_a_physical_item_needs_an_address_and_then_awaits_shipment(browsers):
    # Given a physical product
    product = ProductFactory(name="Enamel mug", kind=FulfilmentKind.PHYSICAL, price_amount=1500)
    shopper = browsers.open()
    page = shopper.page
    add_to_cart(page, product)

    # When the shopper checks out, the address fields are there and required
    page.get_by_role("link", name="Checkout").click()
    expect(page.locator("#shipping-address")).to_be_visible()
    expect(address_inputs(page)).to_have_count(3)
    for selector in ("#id_ship_name", "#id_ship_line1", "#id_ship_city"):
        expect(page.locator(selector)).to_have_attribute("required", "")

    # And continuing with only an email is stopped by the browser
    page.fill("#id_email", "mug.buyer@example.com")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page).to_have_url(re.compile(r"/checkout/$"))
    assert page.eval_on_selector("#id_ship_name", "el => el.validity.valueMissing")

    # And by the shop itself when the browser does not validate (the form comes back with its errors)
    page.eval_on_selector("#checkout-form", "form => { form.noValidate = true; }")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page).to_have_url(re.compile(r"/checkout/$"))
    expect(page.locator("#shipping-address .errorlist").first).to_contain_text("required")
    assert not Order.objects.exists()

    # When they fill the address and pay
    fill_address(page, ADDRESS)
    page.get_by_role("button", name="Continue to payment").click()
    expect(page).to_have_url(re.compile(r"/pay/[\w-]+/"))
    pay_by_card(page)

    # Then the order awaits shipment: the line says "To be shipped", there is no key to reveal
    expect(page.locator("#order-status")).to_have_attribute("data-status", OrderStatus.AWAITING_SHIPMENT)
    expect(page.locator("#order-status")).to_contain_text("shipped soon")
    expect(order_line(page, product)).to_contain_text("To be shipped")
    expect(page.get_by_role("button", name="Reveal key")).to_have_count(0)
    order = order_of(page)
    assert (order.ship_name, order.ship_city, order.ship_country) == ("Ada Lovelace", "London", "GB")
    browsers.finish(shopper)


def test_a_mixed_cart_asks_for_the_address_reveals_the_key_and_ships_the_rest(browsers):
    # Given a key product and a physical product in one cart
    key, keys = key_product(name="Orbital Chess key")
    poster = ProductFactory(name="Orbital Chess poster", kind=FulfilmentKind.PHYSICAL, price_amount=1200)
    shopper = browsers.open()
    page = shopper.page
    add_to_cart(page, key)
    add_to_cart(page, poster)
    expect(page.locator("table tr").filter(has_text="Orbital Chess")).to_have_count(2)

    # When they check out, the address is asked for (the poster must travel)
    page.get_by_role("link", name="Checkout").click()
    expect(page.locator("#shipping-address")).to_be_visible()
    expect(page.locator("#id_ship_line1")).to_have_attribute("required", "")
    page.fill("#id_email", "mixed.buyer@example.com")
    fill_address(page, ADDRESS)
    page.get_by_role("button", name="Continue to payment").click()
    pay_by_card(page)

    # Then the key is delivered and revealable, and the poster is "To be shipped"
    expect(page.locator("#order-status")).to_have_attribute("data-status", OrderStatus.AWAITING_SHIPMENT)
    expect(order_line(page, poster)).to_contain_text("To be shipped")
    expect(order_line(page, poster).get_by_role("button", name="Reveal key")).to_have_count(0)
    assert reveal_key(page, key) in keys
    expect(order_line(page, poster)).to_contain_text("To be shipped")
    browsers.finish(shopper)


def test_a_key_bought_in_simplified_chinese_shows_chinese_pages_and_the_key(browsers):
    # Given a product with a Chinese name, and a shopper who switches the shop to Simplified Chinese
    product, keys = key_product(name="Lantern Festival key", name_zh_hans="元宵节密钥")
    shopper = browsers.open()
    page = shopper.page
    page.goto(f"/p/{product.slug}/")
    expect(page.get_by_role("button", name="Add to cart")).to_be_visible()
    with page.expect_navigation():
        page.get_by_label("Language").select_option("zh-hans")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")

    # When they buy it through the Chinese pages
    add_to_cart(page, product, name="元宵节密钥", button="加入购物车")
    page.get_by_role("link", name="结账").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("结账")
    expect(page.get_by_text("无需填写地址")).to_be_visible()
    expect(address_inputs(page)).to_have_count(0)
    page.fill("#id_email", "zh.buyer@example.com")
    page.get_by_role("button", name="继续付款").click()
    expect(page.locator("#method")).to_have_text("银行卡")
    pay_by_card(page, button="立即付款")

    # Then the order page says, in Chinese, that it is delivered, and 显示密钥 shows the key
    expect(page.locator("#order-status")).to_contain_text("已交付")
    expect(order_line(page, product, name="元宵节密钥")).to_be_visible()
    assert reveal_key(page, product, name="元宵节密钥", button="显示密钥") in keys
    assert order_of(page).locale == "zh-hans"
    browsers.finish(shopper)


def test_a_key_paid_with_paypal_is_delivered_after_approving_at_paypal(browsers, shop, paypal):
    # Given PayPal enabled next to the card, and a shopper on the pay page
    product, keys = key_product(name="Deep Sea Sonar key")
    shopper = browsers.open()
    page = shopper.page
    add_to_cart(page, product)
    check_out(page, "paypal.buyer@example.com")
    expect(page.locator("#method")).to_have_text("Card")

    # When they choose PayPal under "Or pay another way" and approve on PayPal's page
    page.locator("#other-methods").get_by_role("link", name="PayPal").click()
    expect(page.locator("#method")).to_have_text("PayPal")
    page.locator("#paypal-button").click()
    expect(page).to_have_url(re.compile(re.escape(paypal.url) + r"/checkoutnow\?token="))
    page.locator("#approve").click()

    # Then they are back on the shop's order page, delivered, with the key
    expect(page).to_have_url(ORDER_PAGE, timeout=10_000)
    assert page.url.startswith(shop.url)
    expect(page.locator("#order-status")).to_have_attribute("data-status", OrderStatus.FULFILLED)
    assert reveal_key(page, product) in keys
    assert order_of(page).payments.get(status=PaymentStatus.SUCCEEDED).provider == "paypal"
    browsers.finish(shopper)
