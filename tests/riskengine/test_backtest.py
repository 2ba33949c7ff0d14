"""The backtest replays recent paid orders through today's rules, and writes nothing."""

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders.models import Order, OrderEvent
from orders.services import PaymentSignals
from riskengine import velocity
from riskengine.backtest import backtest_run
from riskengine.models import (
    FraudLabel,
    ListEntry,
    ReviewCase,
    RiskAssessment,
    RiskDecision,
    RiskRule,
    RiskSettings,
    RuleMode,
    RuleType,
)
from tests.riskengine.test_rules import new_shopper, pay, place_order, service, use_only_rules

ELEVATED = {"outcome_type": "authorized", "risk_level": "elevated", "risk_score": 67}


@pytest.fixture
def history(db):
    """Paid orders under an active 10-point high-risk rule, with a 40-point disposable-email rule in shadow:

    flips: disposable email + high-risk product, approved at 10 (50 with the shadow rule: review)
    plain: nothing against it, approved at 0
    radar: Radar said elevated, held for review
    old: like `flips` but paid 40 days ago; pending: never paid
    """
    use_only_rules(
        RiskRule(name="Risky goods", type=RuleType.HIGH_RISK_PRODUCT, points=10),
        RiskRule(name="Disposable (trial)", type=RuleType.DISPOSABLE_EMAIL, points=40, mode=RuleMode.SHADOW),
        RiskRule(
            name="Orders per email",
            type=RuleType.VELOCITY,
            points=30,
            params={"metric": "orders", "by": ["email", "ip"], "threshold": 5},
        ),
    )
    risky, plain = service(price_amount=1500, high_risk=True), service(price_amount=1500)

    def disposable():
        return new_shopper(email=f"{uuid.uuid4().hex[:12]}@mailinator.com")

    orders = {
        "flips": pay(place_order(risky, disposable())),
        "plain": pay(place_order(plain, new_shopper())),
        "radar": pay(place_order(plain, new_shopper()), signals=PaymentSignals(radar=ELEVATED)),
        "old": pay(place_order(risky, disposable())),
        "pending": place_order(risky, disposable()),
    }
    Order.objects.filter(pk=orders["old"].pk).update(paid_at=timezone.now() - timedelta(days=40))
    return orders


@pytest.mark.django_db
def test_history_is_as_described(history):
    decisions = {name: list(order.risk_assessments.values_list("decision", "score")) for name, order in history.items()}

    assert decisions == {
        "flips": [(RiskDecision.APPROVE, 10)],
        "plain": [(RiskDecision.APPROVE, 0)],
        "radar": [(RiskDecision.REVIEW, 0)],
        "old": [(RiskDecision.APPROVE, 10)],
        "pending": [],
    }


@pytest.mark.django_db
def test_shadow_rule_that_would_flip_an_order_shows_in_changed(history):
    # When the last 30 days are replayed with the shadow rule counted as active
    report = backtest_run(days=30)

    # Then the paid orders of the window are replayed, and only the flipped one changed;
    # the Radar hold stands because the stored Radar outcome is replayed too
    assert report.orders == 3
    assert report.changed == [(history["flips"].number, "approve", "review", 10, 50)]
    assert report.counts_before == {"approve": 2, "review": 1, "decline": 0}
    assert report.counts_after == {"approve": 1, "review": 2, "decline": 0}


@pytest.mark.django_db
def test_shadow_rules_stay_shadow_when_asked(history):
    report = backtest_run(days=30, treat_shadow_as_active=False)

    assert report.orders == 3
    assert report.changed == []
    assert report.counts_after == report.counts_before


@pytest.mark.django_db
def test_given_rules_are_used_exactly(history):
    # When only the disposable-email rule is replayed (without the high-risk rule)
    report = backtest_run(days=60, rules=[RiskRule.objects.get(name="Disposable (trial)")])

    # Then the flipped order scores 40 from it alone, and the old order (now in the window) flips too
    assert report.orders == 4
    assert sorted(report.changed) == sorted(
        [
            (history["flips"].number, "approve", "review", 10, 40),
            (history["old"].number, "approve", "review", 10, 40),
        ]
    )


@pytest.mark.django_db
def test_backtest_writes_nothing(history):
    # Given no settings row yet (RiskSettings.current() would create one)
    RiskSettings.objects.all().delete()
    models = [Order, OrderEvent, RiskAssessment, ReviewCase, RiskRule, RiskSettings, ListEntry, FraudLabel]
    rows_before = {model.__name__: model.objects.count() for model in models}
    ids = {"email": history["flips"].email, "ip": history["flips"].purchase_ip}
    counters_before = {m: velocity.velocity_counts(metric=m, ids=ids, window_seconds=3600)[0] for m in velocity.METRICS}

    # When the backtest runs
    with CaptureQueriesContext(connection) as queries:
        report = backtest_run(days=30)

    # Then it read, and wrote nothing: no rows, no statements that write, no velocity records
    assert report.changed
    writes = [q["sql"] for q in queries if q["sql"].lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []
    assert {model.__name__: model.objects.count() for model in models} == rows_before
    assert RiskRule.objects.get(name="Disposable (trial)").mode == RuleMode.SHADOW
    counters_after = {m: velocity.velocity_counts(metric=m, ids=ids, window_seconds=3600)[0] for m in velocity.METRICS}
    assert counters_after == counters_before


@pytest.mark.django_db
def test_command_prints_the_summary_and_the_changed_orders(history):
    out = StringIO()

    call_command("risk_backtest", "--days", "30", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "Risk backtest: 3 paid order(s) from the last 30 day(s), all enabled rules (shadow rules counted as active)."
    )
    assert "decision    before   after  change" in lines
    assert "approve          2       1      -1" in lines
    assert "review           1       2      +1" in lines
    assert "decline          0       0      +0" in lines
    assert "1 order(s) would be decided differently:" in lines
    assert f"{history['flips'].number:<14}approve  review   10 -> 50" in lines


@pytest.mark.django_db
def test_command_active_only_and_chosen_rules(history):
    out = StringIO()

    call_command("risk_backtest", "--days", "30", "--active-only", "--rule", "Risky goods", stdout=out)

    text = out.getvalue()
    assert "1 chosen rule(s): Risky goods (shadow rules stay shadow)" in text
    assert "No decision would change." in text


@pytest.mark.django_db
def test_command_refuses_an_unknown_rule(history):
    with pytest.raises(CommandError, match="No rule named: Nope"):
        call_command("risk_backtest", "--rule", "Nope", stdout=StringIO())
