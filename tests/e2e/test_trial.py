"""A free trial in a real browser, with localstripe's Stripe.js: the pay page says nothing is charged today, the
card is set up with the bank's 3-D Secure check when it asks, and the order page shows the trial."""

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from catalog.models import BillingInterval, FulfilmentKind
from orders.models import OrderStatus, Subscription, SubscriptionStatus
from payments.models import Payment
from tests.e2e.steps import ORDER_PAGE, add_to_cart, check_out, fill_card, order_of
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)

CARD_3DS = "4000002500003155"


def test_a_trial_is_started_with_a_card_the_bank_checks_and_nothing_is_charged(browsers):
    # Given a shopper at the pay page of a monthly membership with 14 days free
    product = ProductFactory(
        name="Lantern Club",
        kind=FulfilmentKind.MEMBERSHIP,
        price_amount=900,
        billing_interval=BillingInterval.MONTH,
        trial_days=14,
        membership_group=Group.objects.create(name="lantern members"),
        max_per_order=1,
    )
    shopper = browsers.open()
    page = shopper.page
    add_to_cart(page, product)
    check_out(page, "lantern@example.com")
    expect(page.locator("#trial-terms")).to_contain_text("Nothing is charged today")

    # When they give a card whose bank asks for its check, and pass it
    fill_card(page, CARD_3DS)
    page.get_by_role("button", name="Start free trial").click()
    page.get_by_role("button", name="Complete authentication").click()

    # Then the order is delivered, the trial runs, and no payment was taken
    expect(page).to_have_url(ORDER_PAGE, timeout=10_000)
    expect(page.locator("#order-status")).to_have_attribute("data-status", OrderStatus.FULFILLED)
    expect(page.locator("#subscription-link")).to_contain_text("Your free trial ends on")
    order = order_of(page)
    assert order.subscription.status == SubscriptionStatus.TRIALING
    assert Subscription.objects.get().method_ref.startswith("pm_")
    assert not Payment.objects.filter(order=order).exists()
    browsers.finish(shopper)
