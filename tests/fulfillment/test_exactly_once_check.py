"""The check every `make bench` load and fault run ends with (tests/load/checks.py) passes on honest
outcomes and fails on each way delivery can go wrong: it is a check that can fail."""

import pytest

from fulfillment.models import KeyEvent, KeyStatus, LicenseKey
from orders.models import Order, OrderStatus
from payments.models import Payment
from tests.conftest import record_payment
from tests.factories import ProductFactory, add_keys
from tests.load.checks import ExactlyOnceViolated, check_exactly_once


@pytest.fixture
def delivered(db, make_order, django_capture_on_commit_callbacks):
    """Two orders of one key each, paid (one successful Payment each) and delivered."""
    product = ProductFactory()
    add_keys(product, 3)
    orders = []
    for i in range(2):
        order = make_order((product, 1), email=f"buyer{i}@example.com")
        Payment.objects.create(
            order=order, provider="stripe", provider_ref=f"pi_check_{i}", amount=order.total_amount,
            currency="USD", status="succeeded",
        )  # fmt: skip
        orders.append(record_payment(order, django_capture_on_commit_callbacks))
    assert [o.status for o in orders] == [OrderStatus.FULFILLED] * 2
    return orders


def ids(orders) -> list[int]:
    return [o.pk for o in orders]


def test_honest_deliveries_pass(delivered):
    result = check_exactly_once(ids(delivered), label="honest")
    assert result == {"orders": 2, "statuses": {"fulfilled": 2}, "keys_sold": 2}


def test_a_key_sold_twice_in_the_audit_fails(delivered):
    key = LicenseKey.objects.filter(order_line__order=delivered[0]).get()
    KeyEvent.objects.create(key=key, type="sold", actor="bug")
    with pytest.raises(ExactlyOnceViolated, match="sold more than once"):
        check_exactly_once(ids(delivered), label="double sale")


def test_a_paid_order_left_undelivered_fails(delivered):
    Order.objects.filter(pk=delivered[1].pk).update(status=OrderStatus.PAID)
    with pytest.raises(ExactlyOnceViolated, match="paid but left paid"):
        check_exactly_once(ids(delivered), label="lost delivery")


def test_a_delivered_order_missing_its_key_fails(delivered):
    LicenseKey.objects.filter(order_line__order=delivered[0]).update(
        status=KeyStatus.AVAILABLE, order_line=None, unit_index=None, sold_at=None
    )
    with pytest.raises(ExactlyOnceViolated, match="delivered with units"):
        check_exactly_once(ids(delivered), label="empty delivery")


def test_waiting_for_stock_while_keys_are_available_fails(delivered):
    Order.objects.filter(pk=delivered[1].pk).update(status=OrderStatus.AWAITING_STOCK)
    with pytest.raises(ExactlyOnceViolated, match="wait for stock while keys are available"):
        check_exactly_once(ids(delivered), label="stuck backorder")


def test_two_successful_payments_fail(delivered):
    Payment.objects.create(
        order=delivered[0], provider="stripe", provider_ref="pi_check_twice", amount=1999, currency="USD",
        status="succeeded",
    )  # fmt: skip
    with pytest.raises(ExactlyOnceViolated, match="2 successful payments"):
        check_exactly_once(ids(delivered), label="charged twice")
