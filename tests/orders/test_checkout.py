from importlib import import_module

import pytest
from django.conf import settings as django_settings

from catalog.models import FulfilmentKind, Product
from orders.cart import CartLine, cart_add, cart_read, cart_set_quantity
from orders.errors import CheckoutError
from orders.models import Order, OrderLine
from orders.services import ShippingAddress
from storefront.flow.checkout import checkout_create_order
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db

ADDRESS = ShippingAddress(
    name="Ada Lovelace", line1="1 Analytical Way", city="London", postal_code="N1 1AA", country="gb"
)


def checkout(*lines: tuple, email: str = "buyer@example.com", shipping: ShippingAddress | None = None) -> Order:
    return checkout_create_order(
        lines=[CartLine(product=p, quantity=q) for p, q in lines],
        email=email,
        shipping=shipping,
        locale="en",
        purchase_ip="203.0.113.7",
        user_agent="pytest",
    )


def assert_refused(code: str, *lines: tuple, **kwargs) -> CheckoutError:
    with pytest.raises(CheckoutError) as raised:
        checkout(*lines, **kwargs)
    assert raised.value.code == code
    assert not Order.objects.exists()
    assert not OrderLine.objects.exists()
    return raised.value


@pytest.fixture
def session():
    return import_module(django_settings.SESSION_ENGINE).SessionStore()


def test_digital_order_totals_in_minor_units_without_shipping(settings):
    # Given two digital products
    settings.SHIPPING_FLAT_FEE = 750
    key_product = ProductFactory(kind=FulfilmentKind.LICENSE_KEY, price_amount=1999)
    add_keys(key_product, 2)
    service = ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=500)

    # When they are checked out
    order = checkout((key_product, 2), (service, 1), email="Buyer@Example.COM")

    # Then nothing is charged for shipping and no address is stored
    assert (order.subtotal_amount, order.shipping_amount, order.total_amount) == (4498, 0, 4498)
    assert order.currency == "USD"
    assert order.email == "buyer@example.com"
    assert order.status == "pending_payment"
    assert order.ship_line1 == ""
    assert [(line.unit_price, line.quantity, line.line_total) for line in order.lines.all()] == [
        (1999, 2, 3998),
        (500, 1, 500),
    ]


def test_physical_line_adds_the_flat_shipping_fee_once(settings):
    settings.SHIPPING_FLAT_FEE = 750
    service = ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=500)
    book = ProductFactory(kind=FulfilmentKind.PHYSICAL, price_amount=2500)

    order = checkout((service, 1), (book, 2), shipping=ADDRESS)

    assert (order.subtotal_amount, order.shipping_amount, order.total_amount) == (5500, 750, 6250)
    assert (order.ship_name, order.ship_line1, order.ship_city, order.ship_postal_code, order.ship_country) == (
        "Ada Lovelace",
        "1 Analytical Way",
        "London",
        "N1 1AA",
        "GB",
    )


def test_address_given_for_a_digital_order_is_ignored():
    service = ProductFactory(kind=FulfilmentKind.SERVICE)

    order = checkout((service, 1), shipping=ADDRESS)

    assert order.shipping_amount == 0
    assert (order.ship_name, order.ship_line1, order.ship_country) == ("", "", "")


def test_prices_come_from_the_database_not_from_the_cart_line():
    # Given a product whose price changed after it went into the cart
    service = ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=1000)
    stale = Product.objects.get(pk=service.pk)
    stale.price_amount = 1

    # When the stale line is checked out
    order = checkout((stale, 2))

    # Then today's price is charged
    assert order.total_amount == 2000


def test_empty_cart_is_refused():
    assert_refused("empty_cart")


def test_quantity_over_the_product_maximum_is_refused():
    service = ProductFactory(kind=FulfilmentKind.SERVICE, max_per_order=2)

    error = assert_refused("quantity_over_maximum", (service, 3))

    assert "2" in error.message


def test_same_product_on_two_lines_cannot_exceed_the_maximum():
    product = ProductFactory(max_per_order=5)
    add_keys(product, 6)

    assert_refused("quantity_over_maximum", (product, 5), (product, 5))


def test_inactive_product_is_refused():
    service = ProductFactory(kind=FulfilmentKind.SERVICE, name="Old Thing", is_active=False)

    error = assert_refused("product_unavailable", (service, 1))

    assert "Old Thing" in error.message


def test_more_keys_than_the_pool_holds_is_refused():
    product = ProductFactory(name="Game")
    add_keys(product, 1)

    error = assert_refused("out_of_stock", (product, 2))

    assert error.params == {"available": 1, "product": "Game"}


def test_email_is_trimmed_and_lowercased(settings):
    service = ProductFactory(kind=FulfilmentKind.SERVICE)

    order = checkout((service, 1), email="  Buyer@Example.com\n")

    assert order.email == "buyer@example.com"


def test_products_in_two_currencies_are_refused():
    dollars = ProductFactory(kind=FulfilmentKind.SERVICE, currency="USD")
    euros = ProductFactory(kind=FulfilmentKind.SERVICE, currency="EUR")

    assert_refused("mixed_currency", (dollars, 1), (euros, 1))


@pytest.mark.parametrize("email", ["", "   ", "not-an-email", "buyer@", "buyer @example.com"])
def test_invalid_email_is_refused(email):
    service = ProductFactory(kind=FulfilmentKind.SERVICE)

    assert_refused("invalid_email", (service, 1), email=email)


@pytest.mark.parametrize(
    "shipping",
    [
        None,
        ShippingAddress(name="Ada", line1="1 Way", city="", postal_code="N1", country="GB"),
        ShippingAddress(name="Ada", line1="   ", city="London", postal_code="N1", country="GB"),
    ],
    ids=["no-address", "no-city", "blank-line1"],
)
def test_physical_line_without_complete_address_is_refused(shipping):
    book = ProductFactory(kind=FulfilmentKind.PHYSICAL)

    assert_refused("shipping_required", (book, 1), shipping=shipping)


def test_cart_add_accumulates_up_to_the_maximum(session):
    # Given a product limited to 3 per order, with 2 in the cart
    product = ProductFactory(max_per_order=3)
    cart_add(session, product=product, quantity=2)

    # When 1 more is added, it fits; when 1 more again, it is refused
    cart_add(session, product=product)
    with pytest.raises(CheckoutError) as raised:
        cart_add(session, product=product)

    # Then the cart holds the maximum and no more
    assert raised.value.code == "quantity_over_maximum"
    assert cart_read(session) == {product.pk: 3}


def test_cart_set_quantity_replaces_and_zero_removes(session):
    product = ProductFactory()
    other = ProductFactory()
    cart_add(session, product=product, quantity=4)
    cart_add(session, product=other)

    cart_set_quantity(session, product=product, quantity=1)
    assert cart_read(session) == {product.pk: 1, other.pk: 1}

    cart_set_quantity(session, product=product, quantity=0)
    assert cart_read(session) == {other.pk: 1}


@pytest.mark.parametrize("quantity, code", [(6, "quantity_over_maximum"), (-1, "invalid_quantity")])
def test_cart_set_quantity_refuses_out_of_range(session, quantity, code):
    product = ProductFactory(max_per_order=5)
    cart_add(session, product=product, quantity=2)

    with pytest.raises(CheckoutError) as raised:
        cart_set_quantity(session, product=product, quantity=quantity)

    assert raised.value.code == code
    assert cart_read(session) == {product.pk: 2}


def test_cart_keeps_one_currency(session):
    # Given a cart priced in dollars
    dollars = ProductFactory(currency="USD")
    euros = ProductFactory(currency="EUR")
    cart_add(session, product=dollars)

    # When a euro product is added
    with pytest.raises(CheckoutError) as raised:
        cart_add(session, product=euros)

    # Then it is refused and the cart is unchanged
    assert raised.value.code == "mixed_currency"
    assert cart_read(session) == {dollars.pk: 1}


def test_cart_refuses_an_inactive_product(session):
    product = ProductFactory(is_active=False)

    with pytest.raises(CheckoutError) as raised:
        cart_add(session, product=product)

    assert raised.value.code == "product_unavailable"
    assert cart_read(session) == {}
