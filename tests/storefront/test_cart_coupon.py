"""The cart page's coupon: applied in any case, shown in the cart and checkout totals, refused with the reason,
removed, and used by the order checkout places."""

import pytest
from django.urls import reverse

from catalog.models import FulfilmentKind
from orders.models import Coupon, Order
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def cart(client):
    service = ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=2000)
    Coupon.objects.create(code="WELCOME10", percent_off=10, max_uses_per_shopper=1)
    client.post(reverse("cart-add", kwargs={"slug": service.slug}), {"quantity": "2"})
    return client


def test_a_coupon_applied_in_the_cart_shows_in_its_totals_and_is_used_at_checkout(cart):
    page = cart.post(reverse("cart-coupon"), {"coupon": "welcome10"}, follow=True).content.decode()

    assert "Coupon WELCOME10 applied." in page
    assert 'id="cart-discount"' in page and "USD 4.00" in page and "USD 36.00" in page
    assert "USD 36.00" in cart.get(reverse("checkout")).content.decode()

    cart.post(reverse("checkout"), {"email": "buyer@example.com"})
    order = Order.objects.get()
    assert (order.subtotal_amount, order.discount_amount, order.total_amount, order.coupon.code) == (
        4000,
        400,
        3600,
        "WELCOME10",
    )


def test_an_unknown_code_is_refused_with_its_reason_and_a_code_can_be_removed(cart):
    page = cart.post(reverse("cart-coupon"), {"coupon": "nope"}, follow=True).content.decode()
    assert "The coupon “NOPE” cannot be used: there is no such code." in page
    assert 'id="cart-discount"' not in page

    cart.post(reverse("cart-coupon"), {"coupon": "WELCOME10"})
    page = cart.post(reverse("cart-coupon"), {"remove": "1"}, follow=True).content.decode()
    assert "Coupon removed." in page and 'id="cart-discount"' not in page


def test_a_spent_code_refuses_the_checkout_and_keeps_the_cart(cart):
    cart.post(reverse("cart-coupon"), {"coupon": "WELCOME10"})
    cart.post(reverse("checkout"), {"email": "buyer@example.com"})
    service = Order.objects.get().lines.get().product
    cart.post(reverse("cart-add", kwargs={"slug": service.slug}), {"quantity": "1"})
    cart.post(reverse("cart-coupon"), {"coupon": "WELCOME10"})

    page = cart.post(reverse("checkout"), {"email": "Buyer@example.com"}).content.decode()

    assert "you have used it already." in page
    assert Order.objects.count() == 1
