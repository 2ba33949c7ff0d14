"""Properties of money and of the cart: what holds for every amount, currency and cart, not for a few examples.

Money: decimal strings round-trip for every currency exponent, anything that is not an exact amount is refused
with MoneyError, fees round half up and grow with the amount. Cart and checkout: random carts built through the
session API end in orders whose totals add up, whose lines are merged per product, and refusals create nothing.
"""

from decimal import Decimal, InvalidOperation
from fractions import Fraction
from importlib import import_module
from math import floor

import pytest
from django.conf import settings
from hypothesis import HealthCheck, assume, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from catalog.models import FulfilmentKind
from orders.cart import CartLine, cart_add, cart_lines, cart_read, cart_set_quantity
from orders.errors import CheckoutError
from orders.models import Order, OrderEvent, OrderLine
from orders.services import ShippingAddress
from payments.models import PaymentChannel
from payments.money import (
    MAX_MINOR_UNITS,
    THREE_DECIMAL,
    ZERO_DECIMAL,
    MoneyError,
    exponent,
    from_decimal_string,
    percent_of,
)
from payments.money import to_decimal_string as to_string
from storefront.flow.checkout import checkout_create_order
from tests.factories import ProductFactory, add_keys

ADDRESS = ShippingAddress(name="Ada Lovelace", line1="1 Analytical Way", city="London", postal_code="N1", country="gb")
# Each money example is pure arithmetic; the database ones create a handful of rows.
PURE = hypothesis_settings(max_examples=200, deadline=None, database=None)
WITH_DB = hypothesis_settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

currencies = st.sampled_from(sorted(ZERO_DECIMAL) + sorted(THREE_DECIMAL) + ["USD", "EUR", "GBP", "usd", "jpy", "kwd"])
# Minor units as the shop stores them, and far beyond (bigint), never beyond what a Decimal holds exactly.
minor_amounts = st.integers(min_value=-(10**15), max_value=10**15)
percents = st.decimals(min_value=0, max_value=Decimal("99.999"), places=3)


def exact_minor_units(text: str, currency: str) -> Fraction:
    """The oracle: the amount a decimal string means, in minor units, with no rounding at all."""
    return Fraction(Decimal(text.strip())) * 10 ** exponent(currency)


def small_enough_for_the_oracle(text: str) -> bool:
    """Not a number, or one whose exponent keeps the exact Fraction oracle small (extremes have their own test)."""
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return True
    return not number.is_finite() or abs(number.adjusted()) < 1000


# --- money ---------------------------------------------------------------------------------------------------------


def test_exponents_of_the_currencies_the_shop_names():
    assert [exponent(code) for code in ("JPY", "USD", "KWD", "jpy", "kwd", "EUR")] == [0, 2, 3, 0, 3, 2]


@PURE
@given(amount=minor_amounts, currency=currencies)
@example(amount=1999, currency="USD")
@example(amount=500, currency="JPY")
@example(amount=1, currency="KWD")
def test_decimal_string_round_trips_with_exactly_the_currencys_decimals(amount, currency):
    # When an amount is written out for a provider
    text = to_string(amount, currency)

    # Then it has the currency's number of decimals and reads back as the same minor units, padded or not
    places = exponent(currency)
    assert len(text.partition(".")[2]) == places
    assert ("." in text) == (places > 0)
    assert from_decimal_string(text, currency) == amount
    assert from_decimal_string(f"  {text}\n", currency) == amount
    shortest = f"{Decimal(text).normalize():f}"  # "19.90" -> "19.9", "500" stays
    assert from_decimal_string(shortest, currency) == amount


@PURE
@given(
    amount=minor_amounts,
    currency=currencies,
    extra=st.text("0123456789", min_size=0, max_size=3),
    last=st.sampled_from("123456789"),
)
@example(amount=1999, currency="USD", extra="", last="5")  # 19.995
@example(amount=500, currency="JPY", extra="", last="5")  # 500.5
@example(amount=1, currency="KWD", extra="00", last="1")  # 0.0010001
def test_more_decimals_than_the_currency_has_are_refused(amount, currency, extra, last):
    # Given an exact amount with at least one more non-zero decimal than the currency allows
    text = to_string(amount, currency)
    too_precise = text + ("" if "." in text else ".") + extra + last

    # Then it is refused, not rounded
    with pytest.raises(MoneyError):
        from_decimal_string(too_precise, currency)


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "nan",
        "-NaN",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        "",
        " ",
        "1,00",
        "$5",
        "12.3.4",
        "0x10",
        "1e",
        "--1",
    ],
)
@pytest.mark.parametrize("currency", ["JPY", "USD", "KWD"])
def test_nan_infinity_and_non_numbers_are_refused(text, currency):
    with pytest.raises(MoneyError):
        from_decimal_string(text, currency)


# Numbers as providers and people write them (signs, exponents, spaces) with at most 18 significant digits.
number_like = st.from_regex(r"\s?[-+]?\d{0,12}(\.\d{0,6})?([eE][-+]?\d{1,2})?\s?", fullmatch=True)


@PURE
@given(text=st.text(max_size=30) | number_like, currency=currencies)
def test_any_text_is_either_its_exact_amount_or_a_money_error(text, currency):
    assume(small_enough_for_the_oracle(text))  # beyond it: test_long_or_extreme_strings_are_refused

    # When any string at all is read as an amount
    try:
        minor = from_decimal_string(text, currency)
    except MoneyError:
        refused = True
    else:
        refused = False

    # Then it is refused exactly when it is not a whole number of minor units or beyond any payment,
    # and otherwise read exactly
    try:
        exact = exact_minor_units(text, currency)
    except (ArithmeticError, ValueError):  # not a number, NaN or infinity
        assert refused
        return
    if exact.denominator != 1 or abs(exact) > MAX_MINOR_UNITS:
        assert refused
    else:
        assert not refused and minor == exact


@pytest.mark.parametrize("amount", [19.99, Decimal("19.99"), "1999", True, None])
def test_only_integer_minor_units_can_be_written_out(amount):
    with pytest.raises(MoneyError):
        to_string(amount, "USD")


@pytest.mark.parametrize(
    "text, currency",
    [
        ("19.99000000000000000000000000001", "USD"),  # 31 digits: a 28-digit context would round it to 1999
        ("123456789012345678901234567.891", "USD"),  # far beyond any payment
        ("1e999999999", "USD"),  # would overflow a default context
        ("1e-999999999", "JPY"),  # would underflow to 0
    ],
)
def test_long_or_extreme_strings_are_refused(text, currency):
    """Exact, however long: no rounding into a wrong amount, no overflow, no underflow to zero."""
    with pytest.raises(MoneyError):
        from_decimal_string(text, currency)


@PURE
@given(amount=st.integers(min_value=0, max_value=2**31 - 1), percent=percents)
@example(amount=50, percent=Decimal("1"))  # 0.5 -> 1
@example(amount=250, percent=Decimal("1"))  # 2.5 -> 3: half up, not half to even
@example(amount=1, percent=Decimal("49.999"))  # 0.49999 -> 0
def test_percent_of_rounds_half_up_to_a_whole_minor_unit(amount, percent):
    exact = Fraction(amount) * Fraction(percent) / 100
    assert percent_of(amount, percent) == floor(exact + Fraction(1, 2))


@PURE
@given(
    amounts=st.lists(st.integers(min_value=0, max_value=2**31 - 1), min_size=2, max_size=2).map(sorted),
    percent=percents,
)
def test_percent_of_never_decreases_when_the_amount_grows(amounts, percent):
    smaller, larger = amounts
    assert 0 <= percent_of(smaller, percent) <= percent_of(larger, percent)


@PURE
@given(
    amounts=st.lists(st.integers(min_value=0, max_value=2**31 - 1), min_size=2, max_size=2).map(sorted),
    percent=percents,
    fixed=st.integers(min_value=0, max_value=10_000),
)
def test_a_channels_expected_fee_is_its_percent_plus_its_fixed_fee_and_never_negative(amounts, percent, fixed):
    # Given a channel's fee settings as admin stores them
    channel = PaymentChannel(code="card", provider="stripe", fee_percent=percent, fee_fixed=fixed)
    smaller, larger = amounts

    # Then its fee on any amount is the rounded percent plus the fixed part, and grows with the amount
    assert channel.expected_fee(smaller) == percent_of(smaller, percent) + fixed
    assert fixed <= channel.expected_fee(smaller) <= channel.expected_fee(larger)


# --- cart and checkout ---------------------------------------------------------------------------------------------

KINDS = [FulfilmentKind.LICENSE_KEY, FulfilmentKind.SERVICE, FulfilmentKind.DOWNLOAD, FulfilmentKind.PHYSICAL]
# Mostly what shoppers ask for, often more than allowed, sometimes zero.
quantities = st.one_of(st.integers(min_value=1, max_value=3), st.integers(min_value=0, max_value=9))


@st.composite
def catalogs(draw, *, currencies=("USD",)):
    """1-4 products as (kind, price, maximum per order, keys in stock, currency)."""
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(KINDS),
                st.integers(min_value=1, max_value=500_000),
                st.integers(min_value=1, max_value=6),
                st.integers(min_value=0, max_value=6),
                st.sampled_from(currencies),
            ),
            min_size=1,
            max_size=4,
        )
    )


def create_products(catalog):
    products = []
    for kind, price, maximum, stock, currency in catalog:
        product = ProductFactory(kind=kind, price_amount=price, max_per_order=maximum, currency=currency)
        if kind == FulfilmentKind.LICENSE_KEY and stock:
            add_keys(product, stock)
        product.stock = stock if kind == FulfilmentKind.LICENSE_KEY else None
        products.append(product)
    return products


def new_session():
    return import_module(settings.SESSION_ENGINE).SessionStore()


def counts() -> tuple[int, int, int]:
    return Order.objects.count(), OrderLine.objects.count(), OrderEvent.objects.count()


def checkout(lines: list[CartLine], shipping: ShippingAddress | None = ADDRESS) -> Order:
    return checkout_create_order(
        lines=lines,
        email="buyer@example.com",
        shipping=shipping,
        locale="en",
        purchase_ip=None,
        user_agent="hypothesis",
    )


def assert_order_adds_up(order: Order, expected: dict[int, int], products: list) -> None:
    """One line per product at its price; subtotal is the sum of the lines; shipping only for physical goods."""
    by_pk = {p.pk: p for p in products}
    lines = list(order.lines.all())
    assert sorted((line.product_id, line.quantity) for line in lines) == sorted(expected.items())
    for line in lines:
        assert line.unit_price == by_pk[line.product_id].price_amount
        assert line.line_total == line.unit_price * line.quantity
        assert line.kind == by_pk[line.product_id].kind
    physical = any(by_pk[pk].requires_shipping for pk in expected)
    assert order.subtotal_amount == sum(line.line_total for line in lines)
    assert order.shipping_amount == (settings.SHIPPING_FLAT_FEE if physical else 0)
    assert order.total_amount == order.subtotal_amount + order.shipping_amount
    assert order.currency == by_pk[next(iter(expected))].currency
    assert bool(order.ship_line1) == physical
    order.refresh_from_db()  # what was stored, not only what was returned
    assert order.total_amount == order.subtotal_amount + order.shipping_amount


@pytest.mark.django_db
@WITH_DB
@given(
    catalog=catalogs(currencies=("USD",) * 4 + ("EUR",)),
    operations=st.lists(
        st.tuples(st.sampled_from(["add", "set"]), st.integers(min_value=0, max_value=3), quantities),
        min_size=1,
        max_size=10,
    ),
    data=st.data(),
)
def test_random_carts_follow_a_model_and_check_out_to_orders_that_add_up(catalog, operations, data):
    # Given 1-4 products (mostly one currency) and an empty session cart
    products = create_products(catalog)
    session = new_session()
    model: dict[int, int] = {}

    # When a shopper adds and sets quantities in any order
    for action, index, quantity in operations:
        product = products[index % len(products)]
        current = model.get(product.pk, 0)
        wanted = current + quantity if action == "add" else quantity
        other_currency = any(p.currency != product.currency for p in products if p.pk != product.pk and model.get(p.pk))
        refusal = None
        if action == "add" and quantity < 1:
            refusal = "invalid_quantity"
        elif wanted > product.max_per_order:
            refusal = "quantity_over_maximum"
        elif wanted and other_currency:
            refusal = "mixed_currency"
        before = cart_read(session)
        try:
            if action == "add":
                cart_add(session, product=product, quantity=quantity)
            else:
                cart_set_quantity(session, product=product, quantity=quantity)
        except CheckoutError as error:
            # Then a refused change names why and leaves the cart as it was
            assert error.code == refusal
            assert cart_read(session) == before
            continue
        assert refusal is None, f"{action} {quantity} of {product} should have been refused: {refusal}"
        model[product.pk] = wanted
        if not wanted:
            del model[product.pk]

    # Then the cart holds exactly the model's quantities, in one currency, never above a maximum
    lines = cart_lines(session)
    assert {line.product.pk: line.quantity for line in lines} == model
    assert len({line.product.currency for line in lines}) <= 1
    assert all(1 <= line.quantity <= line.product.max_per_order for line in lines)

    # When the cart is checked out, with its lines split in pieces and shuffled as a client might send them
    pieces = []
    for line in lines:
        cuts = sorted(data.draw(st.sets(st.integers(1, line.quantity - 1), max_size=2))) if line.quantity > 1 else []
        bounds = [0, *cuts, line.quantity]
        pieces += [CartLine(product=line.product, quantity=b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
    pieces = data.draw(st.permutations(pieces))
    short = [p for p in products if p.pk in model and p.stock is not None and p.stock < model[p.pk]]
    before = counts()
    try:
        order = checkout(pieces)
    except CheckoutError as error:
        # Then an empty or short cart is refused and nothing is written
        assert error.code == ("empty_cart" if not model else "out_of_stock")
        assert not model or short
        assert counts() == before
        event(f"refused: {error.code}")
        return
    assert model and not short
    event("ordered")

    # Then the order has one line per product and totals that add up
    assert_order_adds_up(order, model, products)
    assert counts() == (before[0] + 1, before[1] + len(model), before[2] + 1)


@pytest.mark.django_db
@WITH_DB
@given(
    catalog=catalogs(currencies=("USD",) * 4 + ("EUR",)),
    requested=st.lists(st.tuples(st.integers(min_value=0, max_value=3), quantities), max_size=6),
    with_address=st.booleans(),
)
def test_checkout_refuses_any_violation_of_the_rules_and_creates_nothing(catalog, requested, with_address):
    # Given products and lines sent straight to checkout (an API client need not use the cart)
    products = create_products(catalog)
    lines = [CartLine(product=products[i % len(products)], quantity=q) for i, q in requested]
    merged: dict[int, int] = {}
    for line in lines:
        merged[line.product.pk] = merged.get(line.product.pk, 0) + line.quantity
    by_pk = {p.pk: p for p in products}

    # (what the rules say about them, on the merged quantities)
    violations = set()
    if not merged:
        violations.add("empty_cart")
    if len({by_pk[pk].currency for pk in merged}) > 1:
        violations.add("mixed_currency")
    for pk, quantity in merged.items():
        product = by_pk[pk]
        if quantity < 1:
            violations.add("invalid_quantity")
        if quantity > product.max_per_order:
            violations.add("quantity_over_maximum")
        if product.stock is not None and product.stock < quantity:
            violations.add("out_of_stock")
    if not with_address and any(by_pk[pk].requires_shipping for pk in merged):
        violations.add("shipping_required")

    # When they are checked out
    before = counts()
    try:
        order = checkout(lines, shipping=ADDRESS if with_address else None)
    except CheckoutError as error:
        # Then a refusal names one of the rules broken (a mixed cart is refused as such), and nothing is written
        assert error.code in violations
        if "mixed_currency" in violations and "empty_cart" not in violations:
            assert error.code == "mixed_currency"
        assert str(error.message)
        assert counts() == before
        event(f"refused: {error.code}")
        return
    event("ordered")

    # Then only a cart that breaks no rule becomes an order, with split lines merged and totals that add up
    assert not violations
    assert_order_adds_up(order, merged, products)


@pytest.mark.django_db
def test_a_total_beyond_the_amount_column_is_refused_as_a_checkout_error():
    # Given a zero-decimal currency where large prices are ordinary
    product = ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=500_000_000, currency="VND", max_per_order=5)

    # When five are bought, a total of 2,500,000,000 VND (about 100,000 USD)
    with pytest.raises(CheckoutError) as refused:
        checkout([CartLine(product=product, quantity=5)])

    # Then it is refused with a reason the shopper can act on, and nothing is written
    assert refused.value.code == "order_too_large"
    assert not Order.objects.exists()
