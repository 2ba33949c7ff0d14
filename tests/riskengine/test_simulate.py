"""The risk simulator: a labelled month generated from a seed and replayed through the real shop.

The population tests are pure. The replay tests share one module-wide run (two, in fact: the same seed
twice on a fresh database) because a replay of 300 orders takes a while; each test then reads what the run
left in the database, so a replay that skipped the shop's own code (checkout, the pre-payment screen,
signed webhooks, the paid-order assessment, delivery, reviews, feedback) would leave nothing to find.
"""

import importlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from devtools.simulate import (
    FRAUD_PATTERNS,
    PATTERNS,
    USER_AGENT,
    PopulationParams,
    SimulationError,
    population_generate,
    report_table,
    simulate_month,
)
from fulfillment.models import LicenseKey
from orders.models import Order, OrderStatus
from payments.models import Payment, PaymentChannel, WebhookEvent
from riskengine.models import FraudLabel, ListEntry, ReviewCase, RiskAssessment
from tests.riskengine.test_rules import new_shopper, place_order, service, use_shipped_rules

SEED = 20260302
ORDERS = 300
# More fraud than a real month (3%), so that every attack pattern has several orders in a small run.
PARAMS = PopulationParams(fraud_share=0.12)


# --- the population (no database) --------------------------------------------------------------------------


def test_same_seed_same_month_and_another_seed_another():
    first = population_generate(seed=SEED, orders=ORDERS, params=PARAMS)
    again = population_generate(seed=SEED, orders=ORDERS, params=PARAMS)
    other = population_generate(seed=SEED + 1, orders=ORDERS, params=PARAMS)

    assert first == again
    assert [o.email for o in first] != [o.email for o in other]


def test_the_month_has_every_pattern_its_size_and_a_realistic_fraud_share():
    month = population_generate(seed=SEED, orders=2000)

    patterns = Counter(o.pattern for o in month)
    assert len(month) == 2000
    assert set(patterns) == set(PATTERNS)
    assert 0.02 <= sum(o.fraud for o in month) / len(month) <= 0.04
    assert all(o.fraud == (o.pattern in FRAUD_PATTERNS) for o in month)
    assert [o.at for o in month] == sorted(o.at for o in month)
    assert [o.index for o in month] == list(range(len(month)))


def test_payments_labels_and_reviews_come_only_after_the_order():
    for order in population_generate(seed=SEED, orders=ORDERS, params=PARAMS):
        times = [attempt.at for attempt in order.attempts]
        assert order.at < times[0] and times == sorted(times)
        assert order.attempts[-1].succeeds and not any(a.succeeds for a in order.attempts[:-1])
        assert order.attempts[-1].card == order.card_fingerprint
        assert all(feedback.at > order.paid_at for feedback in order.feedback)
        assert order.review.delay.total_seconds() > 0
        assert order.fraud or not order.feedback  # honest orders are never reported


def test_each_order_carries_what_the_shop_and_stripe_will_see():
    month = population_generate(seed=SEED, orders=2000)

    order = month[0]
    assert order.amount > 0 and order.product and order.quantity >= 1
    assert order.ip_country and order.card_country and order.billing_country
    assert order.radar_level in ("normal", "elevated", "highest") and 0 <= order.radar_score <= 100
    # honest travellers buy from abroad; some good payments are "elevated" at Radar with a moderate score
    travellers = [o for o in month if o.pattern == "good_traveller"]
    assert travellers and all(o.ip_country != o.card_country for o in travellers)
    elevated = [o for o in month if o.pattern == "good_radar_elevated"]
    assert elevated and all(o.radar_level == "elevated" and 65 <= o.radar_score <= 74 for o in elevated)
    # one card behind many emails; a ring sharing devices across emails and cards
    by_card = Counter(o.card_fingerprint for o in month if o.pattern == "card_many_emails")
    assert max(by_card.values()) >= 3
    ring = [o for o in month if o.pattern == "fraud_ring"]
    assert any(len({o.email for o in ring if o.device_id == d}) >= 3 for d in {o.device_id for o in ring})
    # the same mailbox typed with capitals, a +tag or Gmail's dots, for the normalisation the engine may learn
    emails = [o.email for o in month]
    assert any(re.search(r"[A-Z]", e) for e in emails)
    assert any("+" in e.split("@")[0] for e in emails)
    assert any(e.endswith("@gmail.com") and e.split("@")[0].count(".") >= 2 for e in emails)
    # card testers: declined cards first, then one that works
    testers = [o for o in month if o.pattern == "card_testing"]
    assert max(len(o.attempts) for o in testers) >= 4


# --- the command --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_command_refuses_a_database_that_holds_orders():
    _fresh_database()
    place_order(service(price_amount=1500), new_shopper())

    with pytest.raises(CommandError, match="holds 1 order"):
        call_command("risk_simulate", "--orders", "20")

    assert Order.objects.count() == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_command_reports_json_on_an_empty_database():
    _fresh_database()
    out = StringIO()

    call_command("risk_simulate", "--orders", "40", "--seed", "3", "--json", stdout=out)

    report = json.loads(out.getvalue())
    assert report["orders"] == 40 and report["seed"] == 3
    assert report["overall"]["good"]["orders"] + report["overall"].get("fraud", {}).get("orders", 0) == 40
    assert {"rules", "thresholds", "patterns", "confusion", "latency", "timing"} <= set(report)


@pytest.mark.django_db
def test_the_replay_refuses_to_run_inside_a_transaction():
    assert connection.in_atomic_block

    with pytest.raises(SimulationError, match="outside a transaction"):
        simulate_month(seed=1, orders=5, params=PARAMS)


def _fresh_database() -> None:
    """Empty, with what the migrations put there that the shop needs: the payment channels, the shipped rules."""
    call_command("flush", interactive=False, verbosity=0)
    for fields in importlib.import_module("payments.migrations.0003_default_channels").CHANNELS:
        PaymentChannel.objects.get_or_create(code=fields["code"], defaults=fields)
    use_shipped_rules()


# --- the replay (one run of the same seed twice, read by the tests below) -----------------------------------


@dataclass(frozen=True)
class Run:
    """One replay and what it left in the database, read before the database is emptied again (the module's
    tests run among other modules' tests, which must not see a simulated month)."""

    report: dict
    traces: list
    outcomes: list
    orders: dict  # order id -> (email, ip, device, card fingerprint, card country, billing country, user agent)
    stages: dict  # order id -> Counter of assessment stages
    payments: Counter  # order id -> payments
    webhooks: Counter  # event type -> events received
    webhook_outcomes: set
    labels: list  # (source, is_fraud, created_at, order created_at, order paid_at, order user agent)
    review_cases: int
    revoked_fraud_keys: int
    blocked_by: set


def _read_run(simulation) -> Run:
    orders = {
        o.pk: (o.email, o.purchase_ip, o.device_id, o.card_fingerprint, o.card_country, o.billing_country, o.user_agent)
        for o in Order.objects.all()
    }
    stages: dict[int, Counter] = {}
    for order_id, stage in RiskAssessment.objects.values_list("order_id", "stage"):
        stages.setdefault(order_id, Counter())[stage] += 1
    labels = [
        (label.source, label.is_fraud, label.created_at, label.order.created_at, label.order.paid_at,
         label.order.user_agent)
        for label in FraudLabel.objects.select_related("order")
    ]  # fmt: skip
    return Run(
        report=simulation.report,
        traces=simulation.traces,
        outcomes=simulation.outcomes,
        orders=orders,
        stages=stages,
        payments=Counter(Payment.objects.values_list("order_id", flat=True)),
        webhooks=Counter(WebhookEvent.objects.values_list("event_type", flat=True)),
        webhook_outcomes=set(WebhookEvent.objects.values_list("outcome", flat=True)),
        labels=labels,
        review_cases=ReviewCase.objects.count(),
        revoked_fraud_keys=LicenseKey.objects.filter(
            status="revoked", order_line__order__fraud_labels__is_fraud=True
        ).count(),
        blocked_by=set(ListEntry.objects.filter(allow=False).values_list("created_by", flat=True)),
    )


@pytest.fixture(scope="module")
def runs(django_db_setup, django_db_blocker):
    """The same seed replayed twice, each on a fresh database, read back, and the database emptied after."""
    with django_db_blocker.unblock():
        try:
            _fresh_database()
            first = _read_run(simulate_month(seed=SEED, orders=ORDERS, params=PARAMS))
            _fresh_database()
            second = _read_run(simulate_month(seed=SEED, orders=ORDERS, params=PARAMS))
        finally:
            _fresh_database()
    return first, second


@pytest.fixture
def run(runs):
    return runs[1]


def _without_timing(report: dict) -> dict:
    return {key: value for key, value in report.items() if key != "timing"}


def _fates(simulation) -> list[tuple]:
    return [(o.pattern, o.engine, o.delivered, o.keys, o.status, o.review, o.labels) for o in simulation.outcomes]


@pytest.mark.slow
def test_same_seed_same_figures(runs):
    first, second = runs

    assert _without_timing(first.report) == _without_timing(second.report)
    assert _fates(first) == _fates(second)


@pytest.mark.slow
def test_every_pattern_is_replayed_and_reported_without_anomalies(run):
    report = run.report

    assert set(report["patterns"]) == set(PATTERNS)
    assert report["orders"] == ORDERS == sum(1 for o in run.orders.values() if o[6] == USER_AGENT)
    assert report["anomalies"] == []
    assert sum(report["confusion"]["fraud"].values()) == report["overall"]["fraud"]["orders"]
    table = report_table(report)
    assert "card_testing" in table and "good_repeat" in table and "confusion" in table


@pytest.mark.slow
def test_card_testing_is_caught_before_any_key_leaves(run):
    testers = [o for o in run.outcomes if o.pattern == "card_testing"]
    figures = run.report["patterns"]["card_testing"]["fraud"]

    assert len(testers) >= 5
    assert figures["caught_rate"] >= 0.8
    assert all(o.keys == 0 and not o.delivered for o in testers if o.caught)
    # stopped by the screen before the provider was asked again, or declined once paid
    assert Counter(o.engine for o in testers)["blocked"] >= 3


@pytest.mark.slow
def test_honest_repeat_customers_are_mostly_released_at_once(run):
    regulars = [o for o in run.outcomes if o.pattern == "good_repeat"]

    released = [o for o in regulars if o.engine == "approve"]
    assert len(released) >= 0.9 * len(regulars)
    assert all(o.delivered and o.keys >= 1 and o.status == OrderStatus.FULFILLED for o in released)


@pytest.mark.slow
def test_every_order_went_through_checkout_the_screen_and_the_paid_assessment(run):
    for trace in run.traces:
        email, ip, device, *card = run.orders[trace.order_id][:6]
        assert (email, ip, device) == (trace.sim.email.strip().lower(), trace.sim.ip, trace.sim.device_id)
        stages = run.stages.get(trace.order_id, Counter())
        assert stages["pre_payment"] == trace.payments + trace.blocked
        assert stages["paid"] == (1 if trace.intent else 0)
        assert run.payments[trace.order_id] == trace.payments
        if trace.intent:  # what Stripe said about the card reached the order through the webhook
            assert tuple(card) == (
                trace.sim.card_fingerprint,
                trace.sim.card_country,
                trace.sim.billing_country,
            )


@pytest.mark.slow
def test_payments_and_feedback_arrived_as_signed_webhooks_after_the_order(run):
    sent = Counter(item.split(":")[0] for trace in run.traces for item in trace.feedback_sent)
    received = run.webhooks

    paid = sum(1 for trace in run.traces if trace.intent)
    assert received["payment_intent.succeeded"] == paid
    assert received["payment_intent.payment_failed"] == sum(t.payments for t in run.traces) - paid
    assert received["radar.early_fraud_warning.created"] == sent["early_fraud_warning"] > 0
    assert received["charge.dispute.created"] == sent["dispute"] > 0
    assert run.webhook_outcomes == {"applied", "labelled"}
    assert run.labels
    for source, is_fraud, created_at, order_created_at, order_paid_at, user_agent in run.labels:
        assert created_at > order_created_at
        if source in ("early_fraud_warning", "dispute"):
            assert order_paid_at is not None and created_at > order_paid_at
        assert is_fraud or source != "dispute" or user_agent != USER_AGENT


@pytest.mark.slow
def test_held_orders_were_decided_by_the_reviewer_through_the_queue(run):
    held = [o for o in run.outcomes if o.engine == "review"]

    assert held
    for outcome in held:
        assert outcome.review in ("approved", "rejected", "expired")
        assert outcome.held_hours is not None and outcome.held_hours > 0
        assert outcome.delivered == (outcome.review == "approved")
    assert run.review_cases == len(held)


@pytest.mark.slow
def test_feedback_labels_and_blocks_what_it_points_at(run):
    labelled = [o for o in run.outcomes if o.labels]

    # only fraud is reported by the card networks; an honest order is labelled fraud only by a reviewer's mistake
    assert labelled and all(o.fraud or o.labels == ("review",) for o in labelled)
    # a warning or dispute on a delivered order takes its keys back and blocks the card, device and email
    assert run.revoked_fraud_keys > 0
    assert {"stripe:early_fraud_warning", "stripe:dispute"} <= run.blocked_by
