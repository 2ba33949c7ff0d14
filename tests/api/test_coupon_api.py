"""Coupons, quantity prices and free products through the REST API: the cart and checkout take an optional
`coupon` and answer `discount_amount`; an unknown or spent code is 400 coupon_invalid and creates nothing."""

import pytest

from catalog.models import FulfilmentKind, PriceBreak
from orders.models import Coupon, CouponRedemption, Order
from payments.models import Payment
from tests.factories import ProductFactory, add_keys
from tests.riskengine.test_rules import use_shipped_rules

pytestmark = pytest.mark.django_db


def put_json(client, body):
    return client.put("/api/cart/", body, content_type="application/json")


def checkout(client, body):
    return client.post("/api/checkout/", body, content_type="application/json")


def coupon_error(response) -> dict:
    assert response.status_code == 400, response.content
    assert set(response.json()) == {"error"}
    error = response.json()["error"]
    assert error["code"] == "coupon_invalid" and error["message"]
    return error


@pytest.fixture
def editor():
    """A key product with quantity prices, like the demo's photo-editor-pro: 29.00, 25.00 from 3, 22.00 from 5."""
    product = ProductFactory(price_amount=2900, max_per_order=10)
    PriceBreak.objects.bulk_create(
        [
            PriceBreak(product=product, min_quantity=3, unit_amount=2500),
            PriceBreak(product=product, min_quantity=5, unit_amount=2200),
        ]
    )
    add_keys(product, 10)
    Coupon.objects.create(code="WELCOME10", percent_off=10, max_uses_per_shopper=1)
    return product


def test_the_product_api_lists_its_quantity_prices(client, editor):
    body = client.get(f"/api/products/{editor.slug}/").json()
    assert body["price_breaks"] == [{"min_quantity": 3, "unit_amount": 2500}, {"min_quantity": 5, "unit_amount": 2200}]


def test_the_cart_applies_quantity_prices_and_a_coupon_kept_with_it(client, editor):
    # When three are put in the cart, with the coupon in lower case
    cart = put_json(client, {"product": editor.slug, "quantity": 3, "coupon": "welcome10"}).json()

    # Then the quantity price applies and 10% comes off it
    assert cart["lines"][0]["unit_price"] == 2500
    assert (cart["subtotal_amount"], cart["coupon"], cart["discount_amount"], cart["total_amount"]) == (
        7500,
        "WELCOME10",
        750,
        6750,
    )
    # and the coupon stays with the cart as its quantity changes
    cart = put_json(client, {"product": editor.slug, "quantity": 5}).json()
    assert (cart["subtotal_amount"], cart["discount_amount"]) == (11000, 1100)
    assert client.get("/api/cart/").json()["discount_amount"] == 1100
    # and a code may be priced without keeping it, or removed
    assert client.get("/api/cart/", {"coupon": "NOPE"}).json()["error"]["code"] == "coupon_invalid"
    assert put_json(client, {"coupon": ""}).json()["discount_amount"] == 0


def test_an_unknown_code_in_the_cart_is_400_and_the_cart_keeps_its_code(client, editor):
    put_json(client, {"product": editor.slug, "quantity": 1, "coupon": "WELCOME10"})
    error = coupon_error(put_json(client, {"coupon": "NOPE"}))
    assert "NOPE" in error["message"]
    assert client.get("/api/cart/").json()["coupon"] == "WELCOME10"


def test_checkout_with_a_coupon_answers_the_discount_and_charges_the_rest(client, editor, localstripe):
    body = {"email": "new@example.com", "lines": [{"product": editor.slug, "quantity": 1}], "coupon": "Welcome10"}

    response = checkout(client, body)

    assert response.status_code == 201, response.content
    order = response.json()["order"]
    assert (order["subtotal_amount"], order["discount_amount"], order["total_amount"], order["coupon"]) == (
        2900,
        290,
        2610,
        "WELCOME10",
    )
    assert order["lines"][0]["discount_amount"] == 290
    assert Payment.objects.get(order__token=response.json()["order_token"]).amount == 2610

    # A second order by the same shopper: the coupon is spent, 400 and nothing created
    before = (Order.objects.count(), CouponRedemption.objects.count())
    coupon_error(checkout(client, {**body, "email": "NEW@example.com"}))
    assert (Order.objects.count(), CouponRedemption.objects.count()) == before


@pytest.mark.parametrize("code", ["NOPE", "WELCOME1O"])
def test_checkout_with_an_unknown_code_is_400_and_creates_nothing(client, editor, code):
    body = {"email": "a@example.com", "lines": [{"product": editor.slug, "quantity": 1}], "coupon": code}
    coupon_error(checkout(client, body))
    assert not Order.objects.exists()


def test_checkout_of_the_session_cart_uses_its_coupon(client, editor, localstripe):
    put_json(client, {"product": editor.slug, "quantity": 1, "coupon": "WELCOME10"})
    response = checkout(client, {"email": "cart@example.com"})
    assert response.status_code == 201, response.content
    assert response.json()["order"]["discount_amount"] == 290
    assert client.get("/api/cart/").json()["coupon"] is None  # the cart and its code are used up


def test_a_free_product_checks_out_with_no_payment_step(client):
    use_shipped_rules()
    freebie = ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=0)

    response = checkout(client, {"email": "lead@example.com", "lines": [{"product": freebie.slug, "quantity": 1}]})

    assert response.status_code == 201, response.content
    assert response.json()["payment"] is None
    assert response.json()["order"]["status"] == "fulfilled"
    assert not Payment.objects.exists()
