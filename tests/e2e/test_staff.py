"""Staff in a real browser: a merchant imports keys in admin, a reviewer releases a held order from the queue."""

import importlib
import re

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from catalog.models import FulfilmentKind, StockDisplay
from fulfillment.models import KeyStatus, LicenseKey
from orders.models import Order, OrderStatus
from riskengine.models import ReviewStatus, RiskRule, RuleType
from tests.e2e.steps import add_to_cart, check_out, order_line, pay_by_card, reveal_key
from tests.factories import ProductFactory, add_keys, second_factor_device

pytestmark = pytest.mark.django_db(transaction=True)

reviewers_migration = importlib.import_module("riskengine.migrations.0004_reviewers_group")
PASSWORD = "e2e-staff-pass-1"


def log_in(page, url: str, username: str, device: TOTPDevice | None = None) -> None:
    """The login page, then (for staff with an authenticator app) the second factor's page with the app's code."""
    page.goto(url)
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.locator("form [type=submit]").click()
    if device is not None:
        expect(page).to_have_url(re.compile(r"/staff/2fa/verify/"))
        page.fill("#id_token", f"{totp(device.bin_key, step=device.step, digits=device.digits):06d}")
        page.locator("form [type=submit]").first.click()


def stock_cell(page, product):
    """The product's stock in the admin's product list."""
    row = page.locator("#result_list tbody tr").filter(has=page.get_by_role("link", name=product.name, exact=True))
    return row.locator("td.field-stock")


def test_merchant_imports_pasted_keys_in_admin_and_the_stock_goes_up(browsers):
    # Given a license-key product with 2 keys, whose storefront page shows the exact count
    product = ProductFactory(name="Comet Miner key", kind=FulfilmentKind.LICENSE_KEY, stock_display=StockDisplay.COUNT)
    existing = add_keys(product, 2, prefix="OLD")
    boss = get_user_model().objects.create_superuser("merchant", "merchant@example.com", PASSWORD)
    merchant = browsers.open("merchant", width=1600)  # narrower, the product list scrolls its stock column away
    page = merchant.page
    log_in(page, "/admin/login/?next=/admin/catalog/product/", "merchant", device=second_factor_device(boss))
    expect(stock_cell(page, product)).to_have_text("2")

    # When the merchant opens the product, chooses Import keys and pastes 20 new keys (and one already in stock)
    page.get_by_role("link", name=product.name, exact=True).click()
    page.get_by_role("link", name="Import keys").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Import keys into Comet Miner key")
    new_keys = [f"COMET-{n:04d}-NEW" for n in range(20)]
    page.get_by_label("Or paste keys").fill("\n".join([*new_keys, existing[0]]))
    page.locator("input[type=submit][value='Import keys']").click()

    # Then the progress page reports the finished import: 20 added, the repeat skipped
    expect(page).to_have_url(re.compile(r"/admin/catalog/product/key-imports/\d+/$"))
    expect(page.locator("#import-status")).to_contain_text("Done")
    expect(page.locator("#import-status")).to_contain_text("100%")
    report = page.locator("#import-report")
    expect(report.locator("tr").filter(has_text="Added to stock").locator("td")).to_have_text("20")
    expect(report.locator("tr").filter(has_text="Duplicates already in stock").locator("td")).to_have_text("1")

    # And the stock is 22 in the admin's product list and on the storefront
    page.goto("/admin/catalog/product/")
    expect(stock_cell(page, product)).to_have_text("22")
    shopper = browsers.open()
    shopper.page.goto(f"/p/{product.slug}/")
    expect(shopper.page.locator(".stock")).to_have_text("22 left")
    assert LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).count() == 22
    browsers.finish(merchant)


def test_reviewer_approves_a_held_order_and_the_shopper_then_sees_the_key(browsers):
    # Given the merchant weighs high-risk products enough to send their orders to review (50 >= 40)
    RiskRule.objects.filter(type=RuleType.HIGH_RISK_PRODUCT).update(points=50)
    product = ProductFactory(name="Vault Breaker key", high_risk=True, price_amount=4900)
    keys = add_keys(product, 2, prefix="RISK")
    reviewers_migration.create_reviewers_group(django_apps, None)
    reviewer_user = get_user_model().objects.create_user("rita", "rita@ops.example.com", PASSWORD)
    reviewer_user.groups.add(Group.objects.get(name=reviewers_migration.REVIEWERS_GROUP))

    # When a shopper pays for it by card
    shopper = browsers.open()
    page = shopper.page
    add_to_cart(page, product)
    check_out(page, "held.buyer@example.com")
    pay_by_card(page)

    # Then the order page says it is being checked, and there is no key to reveal yet
    expect(page.locator("#order-status")).to_have_attribute("data-status", OrderStatus.ON_HOLD)
    expect(page.locator("#order-status")).to_contain_text("being checked")
    expect(page.get_by_role("button", name="Reveal key")).to_have_count(0)
    order = Order.objects.get(email="held.buyer@example.com")

    # When the reviewer logs in, opens the case from the queue, claims it, writes a note and approves
    reviewer = browsers.open("reviewer")
    desk = reviewer.page
    log_in(desk, "/review/login/", "rita")
    expect(desk.get_by_role("heading", level=1)).to_have_text("Held orders (1)")
    desk.locator("#review-queue").get_by_role("link", name=order.number).click()
    expect(desk.get_by_role("heading", level=1)).to_have_text(f"Review of {order.number}")
    expect(desk.locator("#reasons")).to_contain_text("High-risk product")
    desk.get_by_role("button", name="Claim this order").click()
    expect(desk.locator("#actions")).to_contain_text("You are reviewing this order")
    desk.fill("#approve-note", "Known customer; the card matches the address.")
    desk.get_by_role("button", name="Approve and deliver").click()

    # Then the queue is empty and says the order was released
    expect(desk.locator(".messages")).to_contain_text(f"{order.number} approved and released")
    expect(desk.get_by_role("heading", level=1)).to_have_text("Held orders (0)")

    # And the shopper's order page, reloaded, shows the order delivered with its key
    page.reload()
    expect(page.locator("#order-status")).to_have_attribute("data-status", OrderStatus.FULFILLED)
    assert reveal_key(page, product) in keys
    expect(order_line(page, product).locator(".key")).to_be_visible()
    order.review_case.refresh_from_db()
    assert order.review_case.status == ReviewStatus.APPROVED
    assert order.review_case.note == "Known customer; the card matches the address."
    browsers.finish(shopper)
