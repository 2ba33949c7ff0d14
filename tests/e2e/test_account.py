"""A shopper who bought as a guest signs in to an account by the link mailed to them, on another device, and finds
the order there: its page reveals the key (logged as any reveal) and checkout fills their address in."""

import re
from urllib.parse import urlsplit

import pytest
from django.core import mail
from playwright.sync_api import expect

from fulfillment.models import DeliveryAccess
from tests.e2e.pages import axe_problems
from tests.e2e.steps import add_to_cart, check_out, key_product, order_of, pay_by_card, reveal_key

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "account.buyer@example.com"


def test_a_guest_buyer_signs_in_by_the_mailed_link_and_finds_the_order_in_the_account(browsers, settings):
    settings.ACCOUNT_SIGN_IN_RATE = 1_000  # the suite's other browsers come from this same address
    # Given a key bought as a guest, by card
    product, keys = key_product(name="Comet Writer key")
    buyer = browsers.open("guest-checkout")
    add_to_cart(buyer.page, product)
    check_out(buyer.page, EMAIL)
    pay_by_card(buyer.page)
    order = order_of(buyer.page)

    # When, on another device, the shopper asks for a sign-in link from the header's Account link
    shopper = browsers.open()
    page = shopper.page
    page.goto("/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    expect(page).to_have_url(re.compile(r"/account/sign-in/$"))
    assert axe_problems(page) == []
    mail.outbox.clear()
    page.get_by_label("Email address").first.fill(EMAIL.upper())
    page.get_by_role("button", name="Email me a sign-in link").click()

    # Then the page says a link was sent, whether or not there is an account, and one email holds it
    expect(page.locator("#link-sent")).to_contain_text("we have sent a sign-in link")
    assert [message.to for message in mail.outbox] == [[EMAIL]]
    link = re.search(r"(https?://\S+)", mail.outbox[0].body).group(1)
    assert urlsplit(link).fragment and urlsplit(link).fragment not in urlsplit(link).path

    # When they open the link and sign in
    page.goto(link)
    expect(page.locator("#sign-in-code")).not_to_have_value("")
    assert "#" not in page.url  # the token left the address bar
    assert axe_problems(page) == []
    page.get_by_role("button", name="Sign in").click()

    # Then their account lists the guest order, and its page reveals the key, logged as evidence
    expect(page).to_have_url(re.compile(r"/account/$"))
    expect(page.locator("#account-email")).to_contain_text(EMAIL)
    assert axe_problems(page) == []
    page.locator("#account-orders").get_by_role("link", name=order.number).click()
    expect(page).to_have_url(re.compile(rf"/order/{order.token}/$"))
    assert reveal_key(page, product) in keys
    assert DeliveryAccess.objects.filter(order=order, kind="reveal").count() == 1

    # And checkout fills their address in
    add_to_cart(page, product)
    page.get_by_role("link", name="Checkout").click()
    expect(page.locator("#id_email")).to_have_value(EMAIL)
    browsers.finish(shopper)
