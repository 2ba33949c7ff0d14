"""Properties of coupons and quantity prices: for every cart, price break and coupon, the order's totals are never
negative and never above the list price, the discount is shared out over the lines exactly, and refunds by line
or in full never return more than was paid."""

import uuid

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from catalog.models import FulfilmentKind, PriceBreak
from orders.cart import CartLine
from orders.coupons import CouponInvalid, discount_share_out
from orders.models import Coupon, CouponKind, Order, OrderLine
from orders.status import order_lock
from payments.models import Payment, PaymentStatus
from payments.refunds import NothingCharged, RefundNotAllowed, refund_mark_settled, refund_prepare
from storefront.flow.checkout import checkout_create_order
from storefront.flow.payment import order_mark_paid
from tests.factories import ProductFactory
from tests.riskengine.test_rules import use_only_rules

pytestmark = pytest.mark.django_db

PURE = hypothesis_settings(max_examples=300, deadline=None, database=None)
WITH_DB = hypothesis_settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

weights_lists = st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=12)
line_specs = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=500_000),  # list price, minor units (0: a free product)
        st.integers(min_value=1, max_value=8),  # quantity
        st.none() | st.tuples(st.integers(min_value=2, max_value=6), st.integers(min_value=1, max_value=500_000)),
    ),
    min_size=1,
    max_size=4,
)
coupons = st.one_of(
    st.builds(
        lambda p, s: {"kind": CouponKind.PERCENT, "percent_off": p, "stack": s}, st.integers(1, 100), st.booleans()
    ),
    st.builds(
        lambda a, s: {"kind": CouponKind.FIXED, "amount_off": a, "currency": "USD", "stack": s},
        st.integers(1, 3_000_000),
        st.booleans(),
    ),
)


@pytest.fixture
def rules(db):
    """No risk rule: every order is released, whatever other tests left in the velocity counters."""
    use_only_rules()


@PURE
@given(weights=weights_lists, data=st.data())
def test_a_discount_is_shared_out_exactly_and_no_share_is_above_its_line(weights, data):
    amount = data.draw(st.integers(min_value=0, max_value=sum(weights)))
    shares = discount_share_out(amount, weights)
    assert sum(shares) == amount
    assert all(0 <= share <= weight for share, weight in zip(shares, weights, strict=True))


def _products(specs) -> list[CartLine]:
    lines = []
    for price, quantity, price_break in specs:
        product = ProductFactory(
            kind=FulfilmentKind.SERVICE, price_amount=price, max_per_order=10, slug=f"p-{uuid.uuid4().hex[:12]}"
        )
        if price_break is not None:
            PriceBreak.objects.create(product=product, min_quantity=price_break[0], unit_amount=price_break[1])
        lines.append(CartLine(product=product, quantity=quantity))
    return lines


def _coupon(spec) -> Coupon:
    spec = dict(spec)
    stack = spec.pop("stack")
    return Coupon.objects.create(
        code=f"C{uuid.uuid4().hex[:10]}", stacks_with_quantity_prices=stack, max_uses_per_shopper=None, **spec
    )


def _checkout(lines, coupon: Coupon) -> Order:
    return checkout_create_order(
        lines=lines,
        email=f"p{uuid.uuid4().hex[:8]}@example.com",
        shipping=None,
        locale="en",
        purchase_ip="203.0.113.50",
        user_agent="hypothesis",
        device_id=uuid.uuid4().hex,
        coupon=coupon.code.lower(),
    )


@WITH_DB
@given(specs=line_specs, coupon_spec=coupons)
def test_totals_with_coupons_and_price_breaks_are_never_negative_nor_over_the_list_price(rules, specs, coupon_spec):
    lines = _products(specs)
    coupon = _coupon(coupon_spec)
    before = Order.objects.count()
    try:
        order = _checkout(lines, coupon)
    except CouponInvalid as refused:
        # a coupon that takes nothing off is refused, and nothing is created
        assert refused.reason == "nothing_applies"
        assert Order.objects.count() == before
        return

    list_total = sum(line.product.price_amount * line.quantity for line in lines)
    order_lines = list(order.lines.all())
    assert 0 < order.discount_amount <= order.subtotal_amount <= list_total
    assert order.total_amount == order.subtotal_amount + order.shipping_amount - order.discount_amount >= 0
    assert sum(line.discount_amount for line in order_lines) == order.discount_amount
    for line in order_lines:
        product = line.product
        assert line.unit_price <= product.price_amount  # a quantity price only ever lowers it
        assert line.line_total == line.unit_price * line.quantity
        assert 0 <= line.discount_amount <= line.line_total
        assert 0 <= line.paid_amount <= product.price_amount * line.quantity
        if not coupon.stacks_with_quantity_prices and line.unit_price < product.price_amount:
            assert line.discount_amount == 0
    if coupon.kind == CouponKind.PERCENT:
        assert order.discount_amount == order.subtotal_amount * coupon.percent_off // 100 or not all(
            coupon.stacks_with_quantity_prices or line.unit_price == line.product.price_amount for line in order_lines
        )
    else:
        assert order.discount_amount <= coupon.amount_off


@WITH_DB
@given(specs=line_specs, coupon_spec=coupons, data=st.data())
def test_refunds_by_line_then_in_full_never_return_more_than_was_paid(rules, specs, coupon_spec, data):
    lines = _products(specs)
    try:
        order = _checkout(lines, _coupon(coupon_spec))
    except CouponInvalid:
        return
    assume(order.total_amount > 0)
    order_mark_paid(order_id=order.pk, amount=order.total_amount, currency="USD", payment_ref="pi_p", actor="test")
    order.refresh_from_db()
    assert order.status == "fulfilled"
    payment = Payment.objects.create(
        order=order,
        provider="stripe",
        provider_ref=f"pi_{uuid.uuid4().hex}",
        amount=order.total_amount,
        amount_received=order.total_amount,
        currency="USD",
        status=PaymentStatus.SUCCEEDED,
    )
    line_ids = list(order.lines.values_list("pk", flat=True))
    refunded_lines = data.draw(st.lists(st.sampled_from(line_ids), unique=True, max_size=len(line_ids)))
    paid_for = dict(order.lines.values_list("pk", "line_total"))
    shares = dict(order.lines.values_list("pk", "discount_amount"))

    returned = 0
    for line_id in refunded_lines:  # one line at a time, each settled, then whatever is left in full
        owed = paid_for[line_id] - shares[line_id]
        try:
            refund = refund_prepare(order=order_lock(order_id=order.pk), actor="t", reason="p", line_ids=[line_id])
        except RefundNotAllowed:
            assert owed == 0  # a line the coupon made free has nothing to return
            continue
        assert refund.amount == owed  # what was paid for it, not its list price
        returned += _settle(refund)
        assert returned <= payment.amount
    try:
        rest = refund_prepare(order=order_lock(order_id=order.pk), actor="t", reason="p", line_ids=None)
    except RefundNotAllowed:
        rest = None  # nothing left to return
    if isinstance(rest, NothingCharged):  # the payment is refunded in full already
        assert returned == payment.amount
    elif rest is not None:
        returned += _settle(rest)
        assert returned == payment.amount  # in full: exactly what was paid, never more
    assert 0 <= returned <= payment.amount
    payment.refresh_from_db()
    assert payment.refunded_amount == returned


def _settle(refund) -> int:
    """The provider paid the refund and its lines' goods were taken back (what storefront.flow.refunds does)."""
    refund_mark_settled(refund_id=refund.pk, provider_ref=f"re_{uuid.uuid4().hex[:12]}")
    OrderLine.objects.filter(pk__in=refund.line_ids).update(refunded_at=timezone.now())
    return refund.amount
