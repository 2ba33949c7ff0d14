"""Coupons in admin: typed in major units and any case, checked for what each kind needs, and listed with their
paid uses, the discount given and the revenue of the orders that used them."""

import pytest
from django.urls import reverse

from catalog.models import FulfilmentKind
from orders.models import Coupon, CouponKind
from storefront.flow.payment import order_mark_paid
from tests.factories import ProductFactory
from tests.orders.test_admin import merchant_client  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db

FORM = {
    "kind": "percent",
    "percent_off": "",
    "currency": "",
    "max_uses_per_shopper": "1",
    "valid_days_when_offered": "30",
    "is_active": "on",
    "stacks_with_quantity_prices": "on",
    "redemptions-TOTAL_FORMS": "0",
    "redemptions-INITIAL_FORMS": "0",
}


def test_a_fixed_coupon_is_typed_in_major_units_and_its_code_kept_in_capitals(merchant_client):  # noqa: F811
    response = merchant_client.post(
        reverse("admin:orders_coupon_add"),
        {**FORM, "code": " summer 5 ", "kind": "fixed", "currency": "usd", "amount_off_typed": "5.00"},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    coupon = Coupon.objects.get()
    assert (coupon.code, coupon.kind, coupon.amount_off, coupon.currency) == ("SUMMER5", CouponKind.FIXED, 500, "USD")


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"kind": "fixed", "amount_off_typed": "5.00"}, "needs a currency"),
        ({"kind": "percent", "percent_off": "0"}, "Between 1 and 100."),
        ({"kind": "fixed", "currency": "USD"}, "Enter the amount taken off."),
    ],
)
def test_a_coupon_missing_what_its_kind_needs_is_refused(merchant_client, fields, error):  # noqa: F811
    response = merchant_client.post(reverse("admin:orders_coupon_add"), {**FORM, "code": "X1", **fields})
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Coupon.objects.exists()


def test_the_list_shows_paid_uses_discount_and_revenue(merchant_client, make_order):  # noqa: F811
    Coupon.objects.create(code="TEN", percent_off=10, max_uses=100, max_uses_per_shopper=None)
    service = ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=2000)
    for email in ("a@example.com", "b@example.com"):
        order = make_order((service, 1), email=email, coupon="TEN")
        order_mark_paid(order_id=order.pk, amount=1800, currency="USD", payment_ref=f"pi_{email}", actor="t")
    make_order((service, 1), email="c@example.com", coupon="TEN")  # not paid: not counted

    html = merchant_client.get(reverse("admin:orders_coupon_changelist")).content.decode()

    assert '<td class="field-uses">2 / 100</td>' in html
    assert '<td class="field-discount_given">USD 4.00</td>' in html
    assert '<td class="field-revenue">USD 36.00</td>' in html
