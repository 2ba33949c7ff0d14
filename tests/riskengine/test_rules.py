"""Each rule type fires with its exact reason and values, and stays quiet when it should.

Velocity counters live in a Redis database shared by every test run on this machine and are never
flushed, so every test here uses identifiers of its own (uuid emails, devices, cards and IPv6
addresses in 2001:db8::/32) and cannot see another run's counts.
"""

import ipaddress
import json
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis

from catalog.models import FulfilmentKind, Product
from fulfillment.models import KeyStatus, LicenseKey
from orders.cart import CartLine
from orders.models import Order, OrderEvent, OrderStatus
from payments.models import Payment
from payments.providers import provider_for_channel
from payments.providers.base import PaymentSnapshot
from payments.providers.stripe_events import charge_signals
from riskengine import velocity
from riskengine.defaults import shipped_rules_install
from riskengine.models import (
    FraudLabel,
    ListEntry,
    ListKind,
    ReviewCase,
    ReviewStatus,
    RiskDecision,
    RiskRule,
    RiskSettings,
    RuleType,
)
from riskengine.rules import (
    rule_amount_vs_history,
    rule_blocklist,
    rule_country_mismatch,
    rule_disposable_email,
    rule_high_risk_product,
    rule_linked_fraud,
    rule_radar,
    rule_velocity,
)
from riskengine.services import risk_evaluate
from riskengine.signals import signals_for_order
from storefront.flow.checkout import checkout_create_order, payment_start_for_order
from storefront.flow.payment import PaymentSignals, order_mark_paid, payment_apply_snapshot
from tests.factories import ProductFactory, add_keys

PAYLOADS = Path(__file__).parent / "payloads"


# --- helpers shared by the risk engine tests --------------------------------------------------------------


@dataclass(frozen=True)
class Shopper:
    email: str
    ip: str
    device: str
    card: str


def new_shopper(**same_as) -> Shopper:
    """A shopper whose identifiers no other test (or test run) uses, except those given."""
    tag = uuid.uuid4()
    fresh = Shopper(
        email=f"test.shopper{tag.int % 10**12}@example.com",  # a person's kind of name: see rules.looks_made_up
        ip=str(ipaddress.IPv6Address((0x20010DB8 << 96) | (tag.int >> 32))),
        device=f"dev_{tag.hex[:20]}",
        card=f"fp{tag.hex[:14]}",
    )
    return replace(fresh, **same_as)


def place_order(product, shopper: Shopper, capture=None, *, quantity: int = 1) -> Order:
    """Check out as this shopper; with `capture`, the velocity counters are fed as after commit."""

    def checkout() -> Order:
        return checkout_create_order(
            lines=[CartLine(product=product, quantity=quantity)],
            email=shopper.email,
            shipping=None,
            locale="en",
            purchase_ip=shopper.ip,
            user_agent="pytest",
            device_id=shopper.device,
        )

    if capture is None:
        return checkout()
    with capture(execute=True):
        return checkout()


def pay(order: Order, capture=None, *, signals: PaymentSignals | None = None) -> Order:
    """Record the order's payment with what the provider said about the payer.

    With `capture`, on-commit work runs (velocity counters, delivery, refunds); without, it is dropped.
    """

    def mark_paid() -> Order:
        return order_mark_paid(
            order_id=order.pk,
            amount=order.total_amount,
            currency=order.currency,
            payment_ref=f"pi_{order.number}",
            actor="test",
            signals=signals,
        )

    if capture is None:
        mark_paid()
    else:
        with capture(execute=True):
            mark_paid()
    order.refresh_from_db()
    return order


def fail_payment(order: Order, capture, *, card: str = "") -> None:
    """One declined payment attempt for the order, applied like a payment_intent.payment_failed webhook."""
    ref = f"pi_fail_{uuid.uuid4().hex[:16]}"
    Payment.objects.create(
        order=order, provider="stripe", provider_ref=ref, amount=order.total_amount, currency=order.currency
    )
    snapshot = PaymentSnapshot(
        ref=ref,
        status="failed",
        amount=order.total_amount,
        amount_received=0,
        currency=order.currency,
        failure_message="Your card was declined.",
        card_fingerprint=card,
    )
    with capture(execute=True):
        payment_apply_snapshot(provider_name="stripe", snapshot=snapshot, actor="stripe:webhook")


def make_rule(type_: str, *, points: int = 30, name: str = "", **params) -> RiskRule:
    return RiskRule(name=name or f"test {type_}", type=type_, params=params, points=points)


def load_charge(name: str) -> dict:
    return json.loads((PAYLOADS / name).read_text())


def dead_redis() -> redis.Redis:
    """A client like the engine's own (riskengine.velocity._redis) for a port nobody listens on:
    every call fails at once with ConnectionError. (redis.Redis(host=...) would retry with backoff, ~4 s.)"""
    return redis.Redis.from_url(
        "redis://127.0.0.1:1/15", socket_connect_timeout=0.05, socket_timeout=0.05, health_check_interval=30
    )


@pytest.fixture
def redis_down(monkeypatch):
    """The velocity counters' Redis is unreachable for this test."""
    monkeypatch.setattr(velocity, "_client", dead_redis())


def use_shipped_rules() -> None:
    """Exactly the shipped rules and thresholds, whatever an earlier test changed or flushed."""
    shipped_rules_install()


def use_only_rules(*rules: RiskRule, review: int = 40, decline: int = 80) -> list[RiskRule]:
    """Replace every rule with these (the test's transaction is rolled back), and set the thresholds."""
    RiskRule.objects.all().delete()
    for rule in rules:
        rule.save()
    RiskSettings.objects.update_or_create(pk=1, defaults={"review_threshold": review, "decline_threshold": decline})
    return list(rules)


@pytest.fixture
def default_rules(db):
    use_shipped_rules()


def service(**fields) -> Product:
    """A product with no stock to run out of (a service), so any number of orders can be placed."""
    return ProductFactory(kind=FulfilmentKind.SERVICE, **fields)


@pytest.fixture
def product(db):
    return service(price_amount=2000)


# --- blocklist --------------------------------------------------------------------------------------------


BLOCKLIST_CASES = [
    # (kind, listed value, shopper overrides, expected match text)
    (ListKind.EMAIL, "Fraudster@Example.com", {"email": "fraudster@example.com"}, "email Fraudster@Example.com"),
    (ListKind.EMAIL_DOMAIN, "evil.example", {"email": "anyone@evil.example"}, "email_domain evil.example"),
    (ListKind.IP, "198.51.100.23", {"ip": "198.51.100.23"}, "ip 198.51.100.23"),
    (ListKind.IP, "198.51.100.0/24", {"ip": "198.51.100.200"}, "ip 198.51.100.0/24"),
    (ListKind.IP, "2001:db8:bad::/48", {"ip": "2001:db8:bad::7"}, "ip 2001:db8:bad::/48"),
    (ListKind.DEVICE, "dev_listed_device", {"device": "dev_listed_device"}, "device dev_listed_device"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "value", "overrides", "match"),
    BLOCKLIST_CASES,
    ids=["email", "domain", "ip", "cidr", "ipv6-cidr", "device"],
)
def test_blocklist_fires_on_a_listed_identifier(product, kind, value, overrides, match):
    # Given a blocklist entry and an order carrying that identifier
    ListEntry.objects.create(kind=kind, value=value, created_by="test")
    order = place_order(product, new_shopper(**overrides))

    # When the blocklist rule looks at it
    hit = rule_blocklist(make_rule(RuleType.BLOCKLIST, points=100, name="Blocklisted"), signals_for_order(order))

    # Then it fires, alone decisive, naming the entry
    assert hit is not None
    assert hit.reason == f"On the blocklist: {match}"
    assert hit.values == {"matches": [match]}
    assert hit.hard is True
    assert (hit.rule, hit.points) == ("Blocklisted", 100)


@pytest.mark.django_db
def test_blocklist_fires_on_a_listed_card_fingerprint(product):
    # Given a card fingerprint on the blocklist, and an order paid with that card
    ListEntry.objects.create(kind=ListKind.CARD, value="xt5ewllds7fjjr1c", created_by="review")
    order = pay(place_order(product, new_shopper()), signals=PaymentSignals(card_fingerprint="Xt5EWLLDS7FJjR1c"))

    # When the blocklist rule looks at it
    hit = rule_blocklist(make_rule(RuleType.BLOCKLIST), signals_for_order(order))

    # Then the card matches whatever its case
    assert hit is not None
    assert hit.reason == "On the blocklist: card xt5ewllds7fjjr1c"


@pytest.mark.django_db
def test_blocklist_stays_quiet_for_near_misses_and_allowlist_entries(product):
    # Given entries that look like the order's identifiers but are not, and an allowlist entry that is
    shopper = new_shopper(email="buyer@good.example", ip="198.51.101.9")
    ListEntry.objects.create(kind=ListKind.EMAIL, value="buyer@good.example.com", created_by="test")
    ListEntry.objects.create(kind=ListKind.EMAIL_DOMAIN, value="example", created_by="test")
    ListEntry.objects.create(kind=ListKind.IP, value="198.51.100.0/24", created_by="test")
    ListEntry.objects.create(kind=ListKind.IP, value="not-an-ip", created_by="test")
    ListEntry.objects.create(kind=ListKind.DEVICE, value=shopper.device, allow=True, created_by="test")
    order = place_order(product, shopper)

    # When the blocklist rule looks at the order
    hit = rule_blocklist(make_rule(RuleType.BLOCKLIST), signals_for_order(order))

    # Then nothing matches
    assert hit is None


# --- velocity ---------------------------------------------------------------------------------------------

FIELD_FOR = {"email": "email", "ip": "ip", "device": "device", "card": "card"}
WORDS = {"orders": "orders", "failed_payments": "failed payments", "distinct_cards": "distinct cards"}
# Distinct cards per card is always one card, so that pair is not a case.
VELOCITY_CASES = [(metric, by) for metric in WORDS for by in ("email", "ip", "device")] + [
    ("orders", "card"),
    ("failed_payments", "card"),
]


def velocity_history(metric: str, by: str, events: int, product, capture) -> Order:
    """`events` events of `metric` by orders sharing only the `by` identifier; returns the order to assess.

    A card is known only once it is used: distinct cards and orders by card come from paid orders, failed
    payments carry the declined card's fingerprint (as Stripe reports it), and for failed payments by card
    the order assessed is a later one paid with that card.
    """
    shared = new_shopper()
    order = None
    for _ in range(events):
        shopper = new_shopper(**{FIELD_FOR[by]: getattr(shared, FIELD_FOR[by])})
        order = place_order(product, shopper, capture)
        if metric == "failed_payments":
            fail_payment(order, capture, card=shopper.card)
        if metric == "distinct_cards" or (metric == "orders" and by == "card"):
            order = pay(order, capture, signals=PaymentSignals(card_fingerprint=shopper.card))
    if metric == "failed_payments" and by == "card":
        order = place_order(product, new_shopper(), capture)
        order = pay(order, capture, signals=PaymentSignals(card_fingerprint=shared.card))
    return order


def velocity_rule(metric: str, by: str, threshold: int = 2) -> RiskRule:
    return make_rule(
        RuleType.VELOCITY, points=40, name=f"{metric} by {by}", metric=metric, by=[by], window_minutes=60,
        threshold=threshold,
    )  # fmt: skip


def verdicts_with_and_without_redis(rule: RiskRule, order: Order, monkeypatch):
    """The rule's hit and the decision it leads to, with Redis answering and then with Redis unreachable."""
    signals = signals_for_order(order)
    thresholds = RiskSettings(review_threshold=40, decline_threshold=80)

    def verdict():
        return rule_velocity(rule, signals), risk_evaluate(signals, rules=[rule], thresholds=thresholds).decision

    with_redis = verdict()
    with monkeypatch.context() as patch:
        patch.setattr(velocity, "_client", dead_redis())
        without_redis = verdict()
    return with_redis, without_redis


@pytest.mark.django_db
@pytest.mark.parametrize(("metric", "by"), VELOCITY_CASES)
def test_velocity_fires_over_the_threshold_from_redis_and_from_the_database(
    metric, by, product, monkeypatch, django_capture_on_commit_callbacks
):
    # Given three events by one identifier, and a rule allowing two an hour
    order = velocity_history(metric, by, 3, product, django_capture_on_commit_callbacks)
    rule = velocity_rule(metric, by)

    # When the rule runs with Redis up, and again with Redis unreachable
    (redis_hit, redis_decision), (db_hit, db_decision) = verdicts_with_and_without_redis(rule, order, monkeypatch)

    # Then both fire with the same reason, counts and decision; each says where its count came from
    expected_reason = f"3 {WORDS[metric]} by this {by} in 60 min (limit 2)"
    assert redis_hit is not None and db_hit is not None
    assert redis_hit.reason == expected_reason
    assert redis_hit.values == {"counts": {by: 3}, "source": "redis"}
    assert db_hit.reason == expected_reason
    assert db_hit.values == {"counts": {by: 3}, "source": "database"}
    assert redis_decision == db_decision == RiskDecision.REVIEW


@pytest.mark.django_db
@pytest.mark.parametrize(("metric", "by"), VELOCITY_CASES)
def test_velocity_stays_quiet_at_the_threshold_from_redis_and_from_the_database(
    metric, by, product, monkeypatch, django_capture_on_commit_callbacks
):
    # Given exactly as many events as the rule allows
    order = velocity_history(metric, by, 2, product, django_capture_on_commit_callbacks)

    # When the rule runs with Redis up, and again with Redis unreachable
    (redis_hit, redis_decision), (db_hit, db_decision) = verdicts_with_and_without_redis(
        velocity_rule(metric, by), order, monkeypatch
    )

    # Then neither fires: the limit is "more than threshold"
    assert redis_hit is None and db_hit is None
    assert redis_decision == db_decision == RiskDecision.APPROVE


@pytest.mark.django_db
def test_velocity_counts_only_the_identifiers_the_rule_is_by(product, django_capture_on_commit_callbacks):
    # Given three orders from one email but each from its own device
    order = velocity_history("orders", "email", 3, product, django_capture_on_commit_callbacks)

    # When a per-device rule looks at the last one
    hit = rule_velocity(velocity_rule("orders", "device"), signals_for_order(order))

    # Then the shared email does not count against the device
    assert hit is None


@pytest.mark.django_db
def test_velocity_in_redis_counts_only_inside_the_window(product, django_capture_on_commit_callbacks):
    # Given one failed payment from an IP now, and two recorded two hours ago
    order = velocity_history("failed_payments", "ip", 1, product, django_capture_on_commit_callbacks)
    ids = {"ip": order.purchase_ip}
    two_hours_ago = time.time() - 2 * 3600
    velocity.velocity_record(metric="failed_payments", ids=ids, member="old-1", at=two_hours_ago)
    velocity.velocity_record(metric="failed_payments", ids=ids, member="old-2", at=two_hours_ago)

    # When counting over the last hour and over the last three hours
    hour, source = velocity.velocity_counts(metric="failed_payments", ids=ids, window_seconds=3600)
    three_hours, _ = velocity.velocity_counts(metric="failed_payments", ids=ids, window_seconds=3 * 3600)

    # Then only the recent one is in the hour
    assert (hour, three_hours, source) == ({"ip": 1}, {"ip": 3}, "redis")


@pytest.mark.django_db
@pytest.mark.parametrize("redis_up", [True, False], ids=["redis", "database"])
def test_distinct_cards_counted_at_payment_include_the_card_being_paid_with(
    redis_up, product, monkeypatch, django_capture_on_commit_callbacks
):
    # Given a rule allowing two distinct cards per email a day
    if not redis_up:
        monkeypatch.setattr(velocity, "_client", dead_redis())
    use_only_rules(
        RiskRule(
            name="Distinct cards per email",
            type=RuleType.VELOCITY,
            points=40,
            params={"metric": "distinct_cards", "by": ["email"], "window_minutes": 1440, "threshold": 2},
        )
    )

    # When a shopper pays three orders with three different cards
    shopper, capture = new_shopper(), django_capture_on_commit_callbacks
    for card in ("fp_first", "fp_second", "fp_third"):
        order = pay(place_order(product, shopper, capture), capture, signals=PaymentSignals(card_fingerprint=card))

    # Then the third payment's assessment counts its own card, with Redis as from the database
    assessment = order.risk_assessments.get(stage="paid")
    assert assessment.decision == RiskDecision.REVIEW
    assert assessment.reasons[0]["reason"] == "3 distinct cards by this email in 1440 min (limit 2)"
    assert assessment.reasons[0]["values"]["source"] == ("redis" if redis_up else "database")


@pytest.mark.django_db
def test_declined_cards_count_as_distinct_cards(product, monkeypatch, django_capture_on_commit_callbacks):
    # Given one shopper's order on which three different cards are declined
    capture = django_capture_on_commit_callbacks
    order = place_order(product, new_shopper(), capture)
    for card in ("fp_declined_1", "fp_declined_2", "fp_declined_3"):
        fail_payment(order, capture, card=card)

    # When a 'distinct cards by email' rule runs with Redis up and with Redis down
    (redis_hit, _), (db_hit, _) = verdicts_with_and_without_redis(
        velocity_rule("distinct_cards", "email"), order, monkeypatch
    )

    # Then both count the three cards tried
    assert redis_hit is not None and db_hit is not None
    assert redis_hit.values["counts"] == db_hit.values["counts"] == {"email": 3}


# --- disposable email -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_disposable_email_fires_for_mailinator(product):
    order = place_order(product, new_shopper(email=f"{uuid.uuid4().hex[:10]}@mailinator.com"))

    hit = rule_disposable_email(make_rule(RuleType.DISPOSABLE_EMAIL, points=20), signals_for_order(order))

    assert hit is not None
    assert hit.reason == "Disposable email domain mailinator.com"
    assert hit.values == {"domain": "mailinator.com"}
    assert hit.points == 20


@pytest.mark.django_db
def test_disposable_email_stays_quiet_for_example_com(product):
    order = place_order(product, new_shopper())

    assert rule_disposable_email(make_rule(RuleType.DISPOSABLE_EMAIL), signals_for_order(order)) is None


# --- country mismatch -------------------------------------------------------------------------------------


def order_from(product, ip: str, *, card_country: str, billing_country: str) -> Order:
    """An order placed from `ip` and paid with a card from `card_country`, billed to `billing_country`."""
    order = place_order(product, new_shopper(ip=ip))
    return pay(order, signals=PaymentSignals(card_country=card_country, billing_country=billing_country))


@pytest.mark.django_db
def test_country_mismatch_fires_when_the_ip_country_differs_from_card_and_billing(product):
    # Given an order from a US address (8.8.8.8) paid with a British card billed to Germany
    order = order_from(product, "8.8.8.8", card_country="GB", billing_country="DE")

    # When the rule compares them
    hit = rule_country_mismatch(
        make_rule(RuleType.COUNTRY_MISMATCH, points=15, compare=["card", "billing"]), signals_for_order(order)
    )

    # Then both differences are named
    assert hit is not None
    assert hit.reason == "IP country US differs from card country GB, billing country DE"
    assert hit.values == {"ip_country": "US", "card": "GB", "billing": "DE"}


@pytest.mark.django_db
def test_country_mismatch_compares_only_what_the_rule_asks_for(product):
    # Given a US IP, a US card and a German billing address
    order = order_from(product, "8.8.8.8", card_country="US", billing_country="DE")
    signals = signals_for_order(order)

    # When one rule compares the card only and another the billing country only
    card_only = rule_country_mismatch(make_rule(RuleType.COUNTRY_MISMATCH, compare=["card"]), signals)
    billing_only = rule_country_mismatch(make_rule(RuleType.COUNTRY_MISMATCH, compare=["billing"]), signals)

    # Then only the billing comparison fires
    assert card_only is None
    assert billing_only is not None
    assert billing_only.reason == "IP country US differs from billing country DE"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("ip", "card_country", "billing_country"),
    [
        ("8.8.8.8", "US", "US"),  # all agree
        ("203.0.113.7", "GB", "DE"),  # documentation range: the IP has no country, nothing to compare
        ("8.8.8.8", "", ""),  # not paid by card yet: nothing known
    ],
)
def test_country_mismatch_stays_quiet_when_countries_agree_or_are_unknown(product, ip, card_country, billing_country):
    order = order_from(product, ip, card_country=card_country, billing_country=billing_country)

    assert rule_country_mismatch(make_rule(RuleType.COUNTRY_MISMATCH), signals_for_order(order)) is None


# --- amount against history -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_first_purchase_over_the_maximum_fires():
    # Given a first-time shopper buying for 200.01
    order = place_order(service(price_amount=20001), new_shopper())

    hit = rule_amount_vs_history(
        make_rule(RuleType.AMOUNT_VS_HISTORY, multiple=3, first_purchase_max=20000), signals_for_order(order)
    )

    assert hit is not None
    assert hit.reason == "First purchase of 20001 is over 20000 (USD)"
    assert hit.values == {"amount": 20001, "first_purchase_max": 20000}


@pytest.mark.django_db
def test_first_purchase_at_the_maximum_is_fine():
    order = place_order(service(price_amount=20000), new_shopper())

    hit = rule_amount_vs_history(
        make_rule(RuleType.AMOUNT_VS_HISTORY, multiple=3, first_purchase_max=20000), signals_for_order(order)
    )

    assert hit is None


@pytest.mark.django_db
@pytest.mark.parametrize(("price", "fires"), [(6001, True), (6000, False)])
def test_amount_over_a_multiple_of_the_shoppers_average(price, fires):
    # Given a shopper with two paid orders of 10.00 and 30.00 (average 20.00) and one unpaid order of 500.00
    shopper = new_shopper()
    for earlier in (1000, 3000):
        pay(place_order(service(price_amount=earlier), shopper))
    place_order(service(price_amount=50000), shopper)

    # When they order for just over (or exactly) three times the average
    order = place_order(service(price_amount=price), shopper)
    hit = rule_amount_vs_history(
        make_rule(RuleType.AMOUNT_VS_HISTORY, multiple=3, first_purchase_max=100), signals_for_order(order)
    )

    # Then the rule fires only when over, with the average it compared against (unpaid orders do not count)
    if fires:
        assert hit is not None
        assert hit.reason == "Amount 6001 is over 3x this customer's average 2000"
        assert hit.values == {"amount": 6001, "average": 2000, "multiple": 3.0}
    else:
        assert hit is None


# --- high-risk product ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_high_risk_product_fires_naming_the_product():
    gift_card = service(name="Gift card 100", high_risk=True)
    order = place_order(gift_card, new_shopper())

    hit = rule_high_risk_product(make_rule(RuleType.HIGH_RISK_PRODUCT, points=10), signals_for_order(order))

    assert hit is not None
    assert hit.reason == "High-risk product: Gift card 100"
    assert hit.values == {"products": ["Gift card 100"]}


@pytest.mark.django_db
def test_high_risk_product_stays_quiet_for_ordinary_products(product):
    order = place_order(product, new_shopper())

    assert rule_high_risk_product(make_rule(RuleType.HIGH_RISK_PRODUCT), signals_for_order(order)) is None


# --- linked fraud -----------------------------------------------------------------------------------------


def label_fraud(order: Order) -> None:
    FraudLabel.objects.create(order=order, source="dispute", is_fraud=True)


@pytest.fixture
def chain(product):
    """Orders A, B, C, D with their own emails and IPs: A and B share a device, B and C a card,
    C and D an email."""
    a_shopper = new_shopper()
    b_shopper = new_shopper(device=a_shopper.device)
    c_shopper = new_shopper(card=b_shopper.card)
    d_shopper = new_shopper(email=c_shopper.email)
    orders = {}
    for name, shopper in zip("ABCD", (a_shopper, b_shopper, c_shopper, d_shopper), strict=True):
        orders[name] = pay(place_order(product, shopper), signals=PaymentSignals(card_fingerprint=shopper.card))
    return orders


@pytest.mark.django_db
def test_linked_fraud_one_hop(chain):
    label_fraud(chain["B"])

    hit = rule_linked_fraud(make_rule(RuleType.LINKED_FRAUD, points=50, hops=2), signals_for_order(chain["A"]))

    assert hit is not None
    assert hit.reason == f"Linked to 1 fraud/disputed order(s), e.g. {chain['B'].number} via device"
    assert hit.values == {"orders": [chain["B"].number]}


@pytest.mark.django_db
def test_linked_fraud_two_hops_names_the_path(chain):
    # Given C, two hops from A (A -device- B -card- C), later found to be fraud
    label_fraud(chain["C"])

    # When A is assessed
    hit = rule_linked_fraud(make_rule(RuleType.LINKED_FRAUD, points=50, hops=2), signals_for_order(chain["A"]))

    # Then the link is found with the path it took
    assert hit is not None
    assert hit.reason == f"Linked to 1 fraud/disputed order(s), e.g. {chain['C'].number} via device -> card"


@pytest.mark.django_db
def test_linked_fraud_three_hops_is_out_of_reach_of_two(chain):
    # Given only D, three hops from A, is fraud
    label_fraud(chain["D"])
    signals = signals_for_order(chain["A"])

    # When A is assessed two hops deep, and then three
    two = rule_linked_fraud(make_rule(RuleType.LINKED_FRAUD, hops=2), signals)
    three = rule_linked_fraud(make_rule(RuleType.LINKED_FRAUD, hops=3), signals)

    # Then two hops do not reach it; three do, via device -> card -> email
    assert two is None
    assert three is not None
    assert three.reason.endswith(f"e.g. {chain['D'].number} via device -> card -> email")


@pytest.mark.django_db
def test_linked_fraud_ignores_links_cleared_as_legitimate(chain):
    FraudLabel.objects.create(order=chain["B"], source="review", is_fraud=False)

    assert rule_linked_fraud(make_rule(RuleType.LINKED_FRAUD, hops=2), signals_for_order(chain["A"])) is None


# --- Radar level rule -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_radar_rule_fires_on_a_listed_level(product):
    signals = signals_for_order(place_order(product, new_shopper()), radar={"risk_level": "elevated", "risk_score": 67})

    hit = rule_radar(make_rule(RuleType.RADAR, points=20, levels=["elevated"]), signals)

    assert hit is not None
    assert hit.reason == "Stripe Radar risk level elevated"
    assert hit.values == {"risk_level": "elevated", "risk_score": 67}


@pytest.mark.django_db
@pytest.mark.parametrize("radar", [{"risk_level": "normal", "risk_score": 12}, {"risk_level": "not_assessed"}, {}])
def test_radar_rule_stays_quiet_for_other_levels_and_when_not_assessed(product, radar):
    signals = signals_for_order(place_order(product, new_shopper()), radar=radar)

    assert rule_radar(make_rule(RuleType.RADAR, levels=["elevated"]), signals) is None


# --- Radar outcomes from recorded Stripe charges ----------------------------------------------------------


def test_charge_signals_read_card_billing_radar_and_3ds_from_a_recorded_charge():
    signals = charge_signals(load_charge("charge_radar_normal.json"))

    assert signals == {
        "card_fingerprint": "Xt5EWLLDS7FJjR1c",
        "card_country": "US",
        "billing_country": "US",
        "radar": {
            "outcome_type": "authorized",
            "risk_level": "normal",
            "risk_score": 12,
            "rule": "",
            "seller_message": "Payment complete.",
            "three_d_secure": {"result": "authenticated", "liability_shift": True},
        },
    }


@pytest.mark.parametrize(
    ("payload", "outcome_type", "level", "rule"),
    [
        ("charge_radar_elevated.json", "authorized", "elevated", ""),
        ("charge_radar_manual_review.json", "manual_review", "normal", "rule_1PmR2cLk8v4bHc1DwX3yZ9aQ"),
        ("charge_radar_highest.json", "authorized", "highest", ""),
        ("charge_radar_blocked.json", "blocked", "highest", ""),
    ],
)
def test_charge_signals_read_each_radar_outcome(payload, outcome_type, level, rule):
    radar = charge_signals(load_charge(payload))["radar"]

    assert (radar["outcome_type"], radar["risk_level"], radar["rule"]) == (outcome_type, level, rule)
    assert "three_d_secure" not in radar


def test_charge_signals_from_localstripe_mean_not_assessed():
    # Given a charge as localstripe records it: no outcome, no payment_method_details
    signals = charge_signals(load_charge("charge_localstripe_no_outcome.json"))

    assert signals == {"card_fingerprint": "", "card_country": "", "billing_country": "", "radar": {}}


def test_charge_signals_from_a_non_card_payment_carry_no_card_and_radar_not_assessed():
    signals = charge_signals(load_charge("charge_sepa_not_assessed.json"))

    assert (signals["card_fingerprint"], signals["card_country"], signals["billing_country"]) == ("", "", "DE")
    assert signals["radar"]["risk_level"] == "not_assessed"


def pay_with_charge(product, payload: str, capture) -> Order:
    """A fresh shopper's order paid with the recorded Stripe charge, on-commit work run."""
    order = place_order(product, new_shopper(), capture)
    return pay(order, capture, signals=PaymentSignals(**charge_signals(load_charge(payload))))


@pytest.fixture
def stocked(default_rules):
    """A product with keys, sold under the shipped rules."""
    product = ProductFactory(price_amount=1999)
    add_keys(product, 3)
    return product


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload", ["charge_radar_normal.json", "charge_localstripe_no_outcome.json", "charge_sepa_not_assessed.json"]
)
def test_radar_normal_or_not_assessed_is_approved_and_delivered(stocked, payload, django_capture_on_commit_callbacks):
    # When a fresh shopper's order is paid with that charge
    order = pay_with_charge(stocked, payload, django_capture_on_commit_callbacks)

    # Then it is approved and its key delivered, with no Radar reason
    assessment = order.risk_assessments.get(stage="paid")
    assert assessment.decision == RiskDecision.APPROVE
    assert not [r for r in assessment.reasons if "Radar" in r["reason"]]
    assert order.status == OrderStatus.FULFILLED
    assert LicenseKey.objects.filter(order_line__order=order, status=KeyStatus.SOLD).count() == 1
    assert not ReviewCase.objects.filter(order=order).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "radar_reasons"),
    [
        (
            "charge_radar_manual_review.json",
            [
                "Stripe Radar risk score 41 (counts from 25, in full at 90)",
                "Stripe Radar manual review: held for review",
            ],
        ),
    ],
    ids=["manual_review"],
)
def test_radar_manual_review_holds_the_order_for_a_person(
    stocked, payload, radar_reasons, django_capture_on_commit_callbacks
):
    # When a fresh shopper's order is paid with a charge Radar sent to manual review
    order = pay_with_charge(stocked, payload, django_capture_on_commit_callbacks)

    # Then it is held, nothing is delivered, and a review case is open saying what Radar said
    assert order.status == OrderStatus.ON_HOLD
    assert not LicenseKey.objects.filter(order_line__order=order, status=KeyStatus.SOLD).exists()
    case = ReviewCase.objects.get(order=order)
    assert case.status == ReviewStatus.OPEN
    assert case.assessment.decision == RiskDecision.REVIEW
    assert [r["reason"] for r in case.assessment.reasons if "Radar" in r["reason"]] == radar_reasons
    assert case.assessment.radar["risk_level"] == load_charge(payload)["outcome"]["risk_level"]
    hold = OrderEvent.objects.get(order=order, to_status=OrderStatus.ON_HOLD)
    assert "Radar" in hold.note
    assert "authorized" not in hold.note


@pytest.mark.django_db
def test_radar_elevated_alone_counts_its_score_and_releases(stocked, django_capture_on_commit_callbacks):
    # When a fresh shopper's order is paid with a charge Radar calls elevated (score 67), nothing else against it
    order = pay_with_charge(stocked, "charge_radar_elevated.json", django_capture_on_commit_callbacks)

    # Then the score counts in proportion and the key is delivered
    assessment = order.risk_assessments.get(stage="paid")
    assert [r["reason"] for r in assessment.reasons if "Radar" in r["reason"]] == [
        "Stripe Radar risk score 67 (counts from 25, in full at 90)"
    ]
    assert assessment.decision == RiskDecision.APPROVE
    assert order.status == OrderStatus.FULFILLED


@pytest.mark.django_db
def test_radar_highest_declines_and_the_order_is_refunded(stocked, django_capture_on_commit_callbacks):
    # When a fresh shopper's order is paid with a charge Radar scored highest (and let through)
    order = pay_with_charge(stocked, "charge_radar_highest.json", django_capture_on_commit_callbacks)

    # Then it is declined without review: held, then refunded by the decline task run after commit.
    # There is no Payment row here, so refund_issue has nothing to send to a provider and only settles.
    assessment = order.risk_assessments.get(stage="paid")
    assert assessment.decision == RiskDecision.DECLINE
    highest = [r for r in assessment.reasons if r["reason"] == "Stripe Radar risk level highest"]
    assert highest and highest[0]["hard"] is True
    assert order.status == OrderStatus.REFUNDED
    path = list(OrderEvent.objects.filter(order=order, type="status_changed").values_list("to_status", flat=True))
    assert path == [OrderStatus.PAID, OrderStatus.ON_HOLD, OrderStatus.REFUNDED]
    assert not LicenseKey.objects.filter(order_line__order=order, status=KeyStatus.SOLD).exists()
    assert not ReviewCase.objects.filter(order=order).exists()


@pytest.mark.django_db
def test_radar_highest_refunds_the_payment_at_stripe(
    stocked, localstripe, stripe_client, django_capture_on_commit_callbacks
):
    # Given an order paid by card at localstripe
    order = place_order(stocked, new_shopper(), django_capture_on_commit_callbacks)
    payment = payment_start_for_order(order=order)
    token = stripe_client.v1.tokens.create(
        params={"card": {"number": "4242424242424242", "exp_month": "12", "exp_year": "2031", "cvc": "123"}}
    )
    stripe_client.v1.payment_intents.update(payment.provider_ref, params={"payment_method": token.card.id})
    stripe_client.v1.payment_intents.confirm(payment.provider_ref)

    # When its success is applied with the Radar facts of a 'highest' charge (localstripe has no Radar)
    fetched = provider_for_channel(payment.channel).fetch_payment(ref=payment.provider_ref)
    radar = charge_signals(load_charge("charge_radar_highest.json"))["radar"]
    with django_capture_on_commit_callbacks(execute=True):
        payment_apply_snapshot(provider_name="stripe", snapshot=replace(fetched, radar=radar), actor="stripe:webhook")

    # Then the order is refunded, at Stripe too
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    charge = stripe_client.v1.payment_intents.retrieve(payment.provider_ref, params={"expand": ["latest_charge"]})
    assert charge.latest_charge.amount_refunded == 1999
