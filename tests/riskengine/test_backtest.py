"""The backtest replays orders in time order, each as of its own moment, and writes nothing: what the rules
read then (lists, labels, links, history, velocity), proposed configurations against the current one, and the
paid-order replay of old. The command and the page that run it: test_backtest_page.py.

Orders are placed at fixed moments in 2025 (time-machine, tests/riskengine/backtest_history.py), far from anything
another test leaves, and the backtest's window is given exactly, so each test sees its own orders only.
"""

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders.models import Order, OrderEvent
from riskengine import config, velocity
from riskengine.asof import as_of, as_of_now
from riskengine.backtest import backtest_compare, backtest_run, configuration_build, configuration_current
from riskengine.config import risk_config
from riskengine.models import (
    FraudLabel,
    ListEntry,
    ListKind,
    ReviewCase,
    RiskAssessment,
    RiskRule,
    RiskSettings,
    RuleMode,
    RuleType,
)
from riskengine.rules import rule_blocklist, rule_linked_fraud, rule_velocity
from riskengine.selectors import customer_average_paid
from riskengine.services import risk_check_before_payment
from riskengine.signals import signals_for_order
from tests.riskengine.backtest_history import (  # noqa: F401  (the fixtures)
    HOUR,
    T0,
    WINDOW,
    clock_fixture,
    dispute,
    history_fixture,
    paid_with,
    risky_month_fixture,
)
from tests.riskengine.test_rules import fail_payment, new_shopper, place_order, service, use_only_rules

# --- hindsight ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_orders_own_later_dispute_does_not_decline_it_in_the_backtest(clock):
    # Given an order approved when paid, disputed ten days later (which blocklisted its card), and a second
    # order with the same card after the dispute, declined by the blocklist when it was paid
    use_only_rules(RiskRule(name="Blocklisted", type=RuleType.BLOCKLIST, points=100))
    product, shopper = service(price_amount=2000), new_shopper()
    first = paid_with(place_order(product, shopper), shopper.card)
    clock(days=10)
    dispute(first)
    clock(days=11)
    second = paid_with(place_order(product, new_shopper(card=shopper.card)), shopper.card)
    assert [o.risk_assessments.get().decision for o in (first, second)] == ["approve", "decline"]
    assert ListEntry.objects.filter(kind=ListKind.CARD, value=shopper.card).exists()

    # When the month is backtested with the current configuration
    clock(days=20)
    comparison = backtest_compare(configurations=[configuration_current()], **WINDOW)

    # Then the first order is approved as it was (the entry came after it), the second declined as it was
    current = comparison.figures("current")
    assert comparison.changed == []
    assert current.overall.confusion["fraud"]["approve"] == 1  # the first: labelled fraud, not caught
    assert current.overall.confusion["good"]["decline"] == 1  # the second: no label of its own
    assert [(r.name, r.fraud_hits, r.good_hits) for r in current.rules] == [("Blocklisted", 0, 1)]
    # (whereas the rule reading the lists as they are now would decline the first order too)
    blocklist = RiskRule.objects.get(name="Blocklisted")
    assert rule_blocklist(blocklist, signals_for_order(first)) is not None


@pytest.mark.django_db
@pytest.mark.parametrize("lists_held", [True, False], ids=["lists-in-memory", "lists-queried"])
def test_lists_labels_links_and_history_are_read_as_of_the_moment_and_unchanged_without_one(
    clock, monkeypatch, lists_held
):
    # Given lists short enough to hold in memory (or not), an order paid at T0 and, after it: its email
    # blocklisted, another order sharing its device paid and labelled fraud, and a bigger paid order under its email
    if not lists_held:
        monkeypatch.setattr(config, "LIST_MEMORY_MAX", 0)
    product, shopper = service(price_amount=2000), new_shopper()
    order = paid_with(place_order(product, shopper), shopper.card)
    moment = order.paid_at
    clock(hours=1)
    ListEntry.objects.create(kind=ListKind.EMAIL, value=shopper.email, created_by="test")
    linked = paid_with(place_order(product, new_shopper(device=shopper.device)), "fp" + uuid.uuid4().hex[:14])
    FraudLabel.objects.create(order=linked, source="dispute", is_fraud=True)
    paid_with(place_order(service(price_amount=90000), new_shopper(email=shopper.email)), shopper.card)
    block = RiskRule(name="b", type=RuleType.BLOCKLIST, points=100)
    link = RiskRule(name="l", type=RuleType.LINKED_FRAUD, points=50, params={"hops": 2})

    def fired() -> dict:
        signals = signals_for_order(order)
        return {
            "block": rule_blocklist(block, signals) is not None,
            "link": rule_linked_fraud(link, signals) is not None,
            "history": customer_average_paid(email=shopper.email, currency=order.currency, excluding_order_id=order.pk),
        }

    # When the rules read now, and as of the order's payment
    now = fired()
    with as_of(moment):
        then = fired()
        inside = as_of_now()

    # Then now they see everything learnt since (production, unchanged: no moment, the in-memory lists);
    # then, nothing of it: no entry, no fraud label, no paid history (the 900.00 order came after)
    assert now == {"block": True, "link": True, "history": 90000.0}
    assert then == {"block": False, "link": False, "history": None}
    assert (inside, as_of_now()) == (moment, None)
    assert (risk_config().exact_lists is not None) is lists_held


# --- velocity ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_velocity_counts_the_orders_placed_by_the_moment_not_those_after_nor_what_redis_says(clock):
    # Given five orders under one email in an hour, the fourth paid; none recorded in Redis (no on-commit)
    product, shopper = service(price_amount=1000), new_shopper()
    placed = []
    for minute in (0, 2, 4, 6):
        clock(minutes=minute)
        placed.append(place_order(product, shopper))
    clock(minutes=7)
    paid = paid_with(placed[3], shopper.card)
    clock(minutes=20)
    later = [place_order(product, shopper) for _ in range(5)]
    ids = {"email": shopper.email}

    # When the orders are counted as of the payment, as of the first order, and now
    with as_of(paid.paid_at):
        at_payment = velocity.velocity_counts(metric="orders", ids=ids, window_seconds=HOUR)
    with as_of(placed[0].created_at):
        at_first = velocity.velocity_counts(metric="orders", ids=ids, window_seconds=HOUR)
    now = velocity.velocity_counts(metric="orders", ids=ids, window_seconds=HOUR)

    # Then as of the payment the four placed by then count, as of the first order only itself, from the
    # database; now (production) Redis answers, and it recorded none of them
    assert at_payment == ({"email": 4}, "database")
    assert at_first == ({"email": 1}, "database")
    assert now == ({"email": 0}, "redis")
    assert len(later) == 5
    # And a velocity rule replayed as of the payment fires on those four
    rule = RiskRule(
        name="v", type=RuleType.VELOCITY, points=30, params={"metric": "orders", "by": ["email"], "threshold": 3}
    )
    with as_of(paid.paid_at):
        assert rule_velocity(rule, signals_for_order(paid)).reason == "4 orders by this email in 60 min (limit 3)"
    assert rule_velocity(rule, signals_for_order(paid)) is None


@pytest.mark.django_db
def test_a_card_counts_from_its_payment_and_a_failed_attempt_only_after_it_happened(
    clock, django_capture_on_commit_callbacks
):
    # Given an order placed at T0, a card declined at +5 min, and the order paid with another card at +30 min
    product, shopper = service(price_amount=1000), new_shopper()
    order = place_order(product, shopper)
    declined_at = clock(minutes=5)
    fail_payment(order, django_capture_on_commit_callbacks, card="fpdeclined" + uuid.uuid4().hex[:6])
    clock(minutes=30)
    order = paid_with(order, shopper.card)
    by_email, by_card = {"email": shopper.email}, {"card": shopper.card}

    def counts() -> dict[str, int]:
        return {
            "failed": velocity.velocity_counts(metric="failed_payments", ids=by_email, window_seconds=HOUR)[0]["email"],
            "cards": velocity.velocity_counts(metric="distinct_cards", ids=by_email, window_seconds=HOUR)[0]["email"],
            "card_orders": velocity.velocity_counts(metric="orders", ids=by_card, window_seconds=HOUR)[0]["card"],
            "card_emails": velocity.velocity_counts(metric="distinct_emails", ids=by_card, window_seconds=HOUR)[0][
                "card"
            ],
        }

    # When counted as of the decline itself, just after it, and as of the payment
    with as_of(declined_at):
        at_decline = counts()
    with as_of(declined_at + timedelta(seconds=1)):
        after_decline = counts()
    with as_of(order.paid_at):
        at_payment = counts()

    # Then the decline counts only after it happened (the screen at its moment ran before it), and the card
    # that paid only from the payment that wrote it on the order
    assert at_decline == {"failed": 0, "cards": 0, "card_orders": 0, "card_emails": 0}
    assert after_decline == {"failed": 1, "cards": 1, "card_orders": 0, "card_emails": 0}
    assert at_payment == {"failed": 1, "cards": 2, "card_orders": 1, "card_emails": 1}


@pytest.mark.django_db
def test_the_backtests_timeline_in_memory_counts_as_the_database_does(clock, django_capture_on_commit_callbacks):
    # Given an hour of shoppers sharing an IP, a device and a card, placing, failing and paying
    product, office = service(price_amount=1000), new_shopper()
    shoppers = [new_shopper(ip=office.ip), new_shopper(ip=office.ip, device=office.device), office]
    stolen, moments = office.card, []
    for step, shopper in enumerate(shoppers * 2):
        moments.append(clock(minutes=5 * step))
        order = place_order(product, shopper)
        moments.append(clock(minutes=5 * step + 1))
        fail_payment(order, django_capture_on_commit_callbacks, card=f"fpdecl{step % 3}{office.card[-6:]}")
        moments.append(clock(minutes=5 * step + 2))
        paid_with(order, stolen if step % 2 else shopper.card)
    identifiers = {"email": office.email, "ip": office.ip, "device": office.device, "card": stolen}
    requests = [
        (metric, kind, value, window)
        for metric in velocity.METRICS
        for kind, value in identifiers.items()
        for window in (10 * 60, HOUR, 24 * HOUR)
    ]
    timeline = velocity.VelocityTimeline(start=T0, end=T0 + timedelta(hours=1))

    # When both count as of every moment something happened, and a second after each
    instants = [m + timedelta(seconds=s) for m in moments for s in (0, 1)]
    in_memory = [timeline.counts(requests, m) for m in instants]
    queried = [velocity._database_counts_many(requests, until=m) for m in instants]

    # Then they agree everywhere, on counts that are not all zero
    assert in_memory == queried
    assert {n for counts in queried for n in counts.values()} >= {0, 1, 2, 3}
    assert timeline.counts(requests, T0 + timedelta(hours=2)) is None  # outside what it holds: ask the database


# --- configurations ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_proposal_with_a_lower_review_threshold_holds_more(risky_month):
    current = configuration_current()
    proposed = configuration_build(
        name="proposed", rules=list(current.rules), review_threshold=30, decline_threshold=80
    )

    comparison = backtest_compare(configurations=[current, proposed], **WINDOW)

    now, then = comparison.figures("current").overall, comparison.figures("proposed").overall
    assert (now.decisions["approve"], now.decisions["review"]) == (5, 0)
    assert (then.decisions["approve"], then.decisions["review"]) == (2, 3)
    assert (now.caught, then.caught, now.good_held, then.good_held) == (0, 1, 0, 2)
    assert then.confusion == {
        "fraud": {"approve": 0, "review": 1, "decline": 0, "blocked": 0, "unpaid": 0},
        "good": {"approve": 2, "review": 2, "decline": 0, "blocked": 0, "unpaid": 0},
    }
    assert comparison.changed_count == 3
    assert comparison.recorded.overall.decisions == now.decisions


@pytest.mark.django_db
def test_the_screens_are_replayed_and_a_proposed_rule_can_block_before_payment(
    clock, django_capture_on_commit_callbacks
):
    # Given an order screened before each of four attempts, three cards declined, then paid: approved
    use_only_rules(
        RiskRule(
            name="Failed payments",
            type=RuleType.VELOCITY,
            points=100,
            params={"metric": "failed_payments", "by": ["email"], "threshold": 5},
        )
    )
    shopper = new_shopper()
    order = place_order(service(price_amount=500), shopper)
    for minute in (1, 2, 3):
        clock(minutes=minute)
        assert risk_check_before_payment(order=order).decision == "approve"
        fail_payment(order, django_capture_on_commit_callbacks, card=f"fpt{minute}{uuid.uuid4().hex[:8]}")
    clock(minutes=4)
    risk_check_before_payment(order=order)
    order = paid_with(order, shopper.card)

    # When a proposal lowers the rule's threshold to 2 (fires at three failures)
    current = configuration_current()
    stricter = RiskRule(**{**_fields(current.rules[0]), "params": {**current.rules[0].params, "threshold": 2}})
    proposed = configuration_build(name="proposed", rules=[stricter], review_threshold=40, decline_threshold=80)
    comparison = backtest_compare(configurations=[current, proposed], **WINDOW)

    # Then the proposal blocks the order at its fourth screen, and its rule row shows the hit
    assert comparison.changed == [(order.number, "approve", {"current": "approve", "proposed": "blocked"})]
    assert comparison.figures("proposed").overall.good_declined == 1
    assert [(r.name, r.good_hits) for r in comparison.figures("proposed").rules] == [("Failed payments", 1)]


@pytest.mark.django_db
def test_an_order_refused_by_the_screen_is_never_labelled_and_left_unpaid_when_a_proposal_lets_it_through(clock):
    # Given a blocklisted device, and an order from it refused by the screen (so never paid)
    use_only_rules(RiskRule(name="Blocklisted", type=RuleType.BLOCKLIST, points=100))
    shopper = new_shopper()
    ListEntry.objects.create(kind=ListKind.DEVICE, value=shopper.device, created_by="test")
    clock(minutes=1)
    order = place_order(service(price_amount=500), shopper)
    assert risk_check_before_payment(order=order).decision == "decline"

    # When the current rules and a proposal without the blocklist are compared
    current = configuration_current()
    proposed = configuration_build(name="proposed", rules=[], review_threshold=40, decline_threshold=80)
    comparison = backtest_compare(configurations=[current, proposed], **WINDOW)

    # Then it is blocked now as then, and the proposal lets it through to a payment that never happened;
    # it has no label and can have none: counted apart from the fraud and the good orders
    assert comparison.changed == [(order.number, "blocked", {"current": "blocked", "proposed": "unpaid"})]
    figures = comparison.figures("current").overall
    assert (figures.orders, figures.fraud, figures.good, figures.unlabelled) == (1, 0, 0, 1)
    assert figures.confusion["unlabelled"]["blocked"] == 1 and figures.good_declined == 0
    assert [(r.name, r.unlabelled_hits) for r in comparison.figures("current").rules] == [("Blocklisted", 1)]


def _fields(rule: RiskRule) -> dict:
    return {f.attname: getattr(rule, f.attname) for f in RiskRule._meta.concrete_fields if f.attname != "id"}


# --- the paid-order replay of old (the admin's action, the command) ----------------------------------------


@pytest.mark.django_db
def test_shadow_rule_that_would_flip_an_order_shows_in_changed(history):
    report = backtest_run(days=30)

    assert report.orders == 2
    assert report.changed == [(history["flips"].number, "approve", "review", 10, 50)]
    assert report.counts_before == {"approve": 2, "review": 0, "decline": 0}
    assert report.counts_after == {"approve": 1, "review": 1, "decline": 0}


@pytest.mark.django_db
def test_shadow_rules_stay_shadow_when_asked_and_given_rules_are_used_exactly(history):
    assert backtest_run(days=30, treat_shadow_as_active=False).changed == []

    report = backtest_run(days=60, rules=[RiskRule.objects.get(name="Disposable (trial)")])

    assert report.orders == 3
    assert sorted(report.changed) == sorted(
        [(history[name].number, "approve", "review", 10, 40) for name in ("flips", "old")]
    )


@pytest.mark.django_db
def test_backtest_writes_nothing(history):
    RiskSettings.objects.all().delete()  # RiskSettings.current() would create the row
    models = [Order, OrderEvent, RiskAssessment, ReviewCase, RiskRule, RiskSettings, ListEntry, FraudLabel]
    rows_before = {model.__name__: model.objects.count() for model in models}
    ids = {"email": history["flips"].email, "ip": history["flips"].purchase_ip}
    counters_before = {m: velocity.velocity_counts(metric=m, ids=ids, window_seconds=HOUR)[0] for m in velocity.METRICS}

    with CaptureQueriesContext(connection) as queries:
        report = backtest_run(days=30)
        comparison = backtest_compare(configurations=[configuration_current(shadow_as_active=True)], days=60)

    assert report.changed and comparison.changed_count == 2
    writes = [q["sql"] for q in queries if q["sql"].lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []
    assert {model.__name__: model.objects.count() for model in models} == rows_before
    assert RiskRule.objects.get(name="Disposable (trial)").mode == RuleMode.SHADOW
    counters_after = {m: velocity.velocity_counts(metric=m, ids=ids, window_seconds=HOUR)[0] for m in velocity.METRICS}
    assert counters_after == counters_before
