"""Orders for the backtest's tests (tests/riskengine/test_backtest.py and test_backtest_page.py): a clock at
fixed moments in 2025, far from anything another test leaves, a backtest window around them, and two sets of
paid orders under known rules.

The fixtures (clock, risky_month, history) are imported into each test module that uses them, under the names of
their functions (clock_fixture, ...), so that a test's argument does not shadow the import.
"""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from orders.models import Order
from payments.providers.base import FraudSignal
from riskengine.feedback import fraud_signal_apply
from riskengine.models import FraudLabel, RiskRule, RuleMode, RuleType
from storefront.flow.payment import PaymentSignals
from tests.riskengine.test_rules import new_shopper, pay, place_order, service, use_only_rules

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
WINDOW = {"start": T0 - timedelta(days=1), "end": T0 + timedelta(days=40)}
HOUR = 3600


@pytest.fixture(name="clock")
def clock_fixture(time_machine):
    """Move the clock: clock(minutes=...) after T0, frozen there."""

    def move(**delta) -> datetime:
        moment = T0 + timedelta(**delta)
        time_machine.move_to(moment, tick=False)
        return moment

    move()
    return move


def paid_with(order: Order, card: str, capture=None) -> Order:
    return pay(order, capture, signals=PaymentSignals(card_fingerprint=card, card_country="US"))


def dispute(order: Order) -> None:
    """The card network's dispute, applied as the webhook applies it: labelled fraud, card, device, email blocked."""
    fraud_signal_apply(order=order, provider_name="stripe", signal=FraudSignal(kind="dispute", reason="fraudulent"))


@pytest.fixture(name="risky_month")
def risky_month_fixture(db, clock):
    """Under a 30-point high-risk rule and review at 40: three risky orders approved at 30 (one later labelled
    fraud), two plain ones at 0."""
    use_only_rules(RiskRule(name="Risky goods", type=RuleType.HIGH_RISK_PRODUCT, points=30), review=40, decline=80)
    risky, plain = service(price_amount=1500, high_risk=True), service(price_amount=1500)
    orders = []
    for hour, product in enumerate((risky, risky, risky, plain, plain)):
        clock(hours=hour)
        shopper = new_shopper()
        orders.append(paid_with(place_order(product, shopper), shopper.card))
    clock(days=5)
    FraudLabel.objects.create(order=orders[0], source="dispute", is_fraud=True)
    clock(days=6)
    return orders


@pytest.fixture(name="history")
def history_fixture(db, clock):
    """Paid orders under an active 10-point high-risk rule, with a 40-point disposable-email rule in shadow:
    flips (disposable email + high-risk product, 10; 50 with the shadow rule), plain (0), old (like flips,
    paid 40 days before the others), pending (never paid)."""
    use_only_rules(
        RiskRule(name="Risky goods", type=RuleType.HIGH_RISK_PRODUCT, points=10),
        RiskRule(name="Disposable (trial)", type=RuleType.DISPOSABLE_EMAIL, points=40, mode=RuleMode.SHADOW),
    )
    risky, plain = service(price_amount=1500, high_risk=True), service(price_amount=1500)

    def disposable():
        return new_shopper(email=f"{uuid.uuid4().hex[:12]}@mailinator.com")

    old = pay(place_order(risky, disposable()))
    clock(days=40)
    orders = {
        "flips": pay(place_order(risky, disposable())),
        "plain": pay(place_order(plain, new_shopper())),
        "old": old,
        "pending": place_order(risky, disposable()),
    }
    clock(days=41)
    return orders
