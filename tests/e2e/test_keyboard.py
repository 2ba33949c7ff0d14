"""A purchase with the keyboard alone: Tab to move, Enter or Space to press, typing into fields; no click."""

import pytest
from playwright.sync_api import Locator, Page, expect

from orders.models import OrderStatus
from tests.e2e.steps import ORDER_PAGE, key_product, order_of

pytestmark = pytest.mark.django_db(transaction=True)

MOST_TABS = 80  # more stops than any shop page has before its main button


def tab_to(page: Page, target: Locator) -> None:
    """Press Tab until `target` has the focus, and check the focus can be seen there."""
    target.wait_for()
    for _ in range(MOST_TABS):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            outline = target.evaluate("element => getComputedStyle(element).outlineStyle")
            assert outline != "none", f"{target} has the focus but shows no outline"
            return
    raise AssertionError(f"{MOST_TABS} presses of Tab never reached {target} on {page.url}")


def test_a_key_is_bought_and_revealed_with_the_keyboard_alone(browsers):
    # Given a license key in stock, and a shopper who uses no mouse
    product, keys = key_product(name="Keyboard Hero key")
    shopper = browsers.open()
    page = shopper.page
    page.goto(f"/p/{product.slug}/")

    # When they Tab to "Add to cart" and press Enter, then Tab to "Checkout" and press Enter
    tab_to(page, page.get_by_role("button", name="Add to cart"))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tab_to(page, page.get_by_role("link", name="Checkout"))
    with page.expect_navigation():
        page.keyboard.press("Enter")

    # and type their email, then press Enter on "Continue to payment"
    tab_to(page, page.get_by_label("Email"))
    page.keyboard.type("keyboard.only@example.com")
    tab_to(page, page.get_by_role("button", name="Continue to payment"))
    with page.expect_navigation():
        page.keyboard.press("Enter")

    # and type the card into the card form field by field, then press Space on "Pay now"
    card = page.locator("#card-element")
    for placeholder, value in (
        ("number", "4242424242424242"),
        ("exp_month", "12"),
        ("exp_year", "31"),
        ("cvc", "123"),
        ("postal_code", "10001"),
    ):
        tab_to(page, card.get_by_placeholder(placeholder))
        page.keyboard.type(value)
    tab_to(page, page.get_by_role("button", name="Pay now"))
    page.keyboard.press("Space")
    expect(page).to_have_url(ORDER_PAGE, timeout=10_000)

    # Then the order is delivered, and Enter on "Reveal key" shows the key, which the keyboard can reach
    expect(page.locator("#order-status")).to_have_attribute("data-status", OrderStatus.FULFILLED)
    tab_to(page, page.get_by_role("button", name="Reveal key"))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    key = page.locator(".key")
    expect(key).to_have_count(1)
    assert key.inner_text().strip() in keys
    tab_to(page, page.locator(".key-box"))
    tab_to(page, page.get_by_role("button", name="Copy key 1"))
    assert order_of(page).email == "keyboard.only@example.com"
    browsers.finish(shopper)
