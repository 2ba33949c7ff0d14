"""Risk engine v2 signals: one card or device under many mailboxes, Radar's numeric score, an IP counted as the
weak evidence it is (offices, carriers), and the shipped defaults that say so."""

import importlib
import json

import pytest
from django.apps import apps as django_apps

from orders.services import PaymentSignals
from riskengine.defaults import SHIPPED_RULES
from riskengine.models import RiskDecision, RiskRule
from riskengine.signals import email_key
from tests.factories import ProductFactory, add_keys
from tests.riskengine.test_rules import (  # noqa: F401  (redis_down is a fixture)
    label_fraud,
    new_shopper,
    pay,
    place_order,
    redis_down,
    use_shipped_rules,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def product():
    use_shipped_rules()
    product = ProductFactory(price_amount=1999)
    add_keys(product, 20)
    return product


def paid(product, shopper, capture, **signals):
    """A shopper's order paid with their card (and what else the provider said), on-commit work run."""
    order = place_order(product, shopper, capture)
    return pay(order, capture, signals=PaymentSignals(card_fingerprint=shopper.card, **signals))


def decision(order) -> str:
    return order.risk_assessments.get(stage="paid").decision


def reasons(order) -> list[str]:
    return [reason["reason"] for reason in order.risk_assessments.get(stage="paid").reasons]


def test_the_shipped_defaults_are_what_the_migrations_leave_in_a_new_database():
    # Given an empty rule table, when the default-rule migrations run in order
    RiskRule.objects.all().delete()
    importlib.import_module("riskengine.migrations.0003_default_rules").create_defaults(django_apps, None)
    importlib.import_module("riskengine.migrations.0008_rules_v2").forwards(django_apps, None)

    # Then the rules are exactly riskengine.defaults (what tests, the simulator and the e2e shop install)
    made = {(r.name, r.type, json.dumps(r.params, sort_keys=True), r.points) for r in RiskRule.objects.all()}
    shipped = {
        (name, kind, json.dumps(params, sort_keys=True), points) for name, kind, params, points, _ in SHIPPED_RULES
    }
    assert made == shipped


@pytest.mark.parametrize(
    ("written", "mailbox"),
    [
        ("J.Doe+shop@GMail.com", "jdoe@gmail.com"),
        ("jdoe@googlemail.com", "jdoe@gmail.com"),
        ("john.smith+x@outlook.com", "john.smith@outlook.com"),
        ("john.smith+x@example.com", "john.smith+x@example.com"),
        ("  Ann@Example.COM ", "ann@example.com"),
        ("not-an-email", "not-an-email"),
    ],
)
def test_an_email_is_reduced_to_the_mailbox_its_provider_delivers_to(written, mailbox):
    assert email_key(written) == mailbox


def test_one_card_under_a_second_email_is_held_and_under_a_fourth_declined(product, django_capture_on_commit_callbacks):
    # Given a card paid once under one email
    first = new_shopper()
    assert decision(paid(product, first, django_capture_on_commit_callbacks)) == RiskDecision.APPROVE

    # When the same card pays under a second mailbox (from another IP and device)
    second = paid(product, new_shopper(card=first.card), django_capture_on_commit_callbacks)

    # Then that order is held for a person, saying why
    assert decision(second) == RiskDecision.REVIEW
    assert any("distinct emails by this card" in reason for reason in reasons(second))

    # And by the fourth mailbox the card is declined
    third = paid(product, new_shopper(card=first.card), django_capture_on_commit_callbacks)
    fourth = paid(product, new_shopper(card=first.card), django_capture_on_commit_callbacks)
    assert decision(third) == RiskDecision.REVIEW
    assert decision(fourth) == RiskDecision.DECLINE


def test_the_same_mailbox_written_differently_is_one_email_for_its_card(product, django_capture_on_commit_callbacks):
    # Given a shopper paying twice with one card, once as J.Doe+a@gmail.com and once as jdoe@gmail.com
    first = new_shopper(email="J.Doe+a@gmail.com")
    paid(product, first, django_capture_on_commit_callbacks)
    again = paid(product, new_shopper(email="jdoe@gmail.com", card=first.card), django_capture_on_commit_callbacks)

    # Then it is one mailbox: nothing about many emails
    assert not any("distinct emails" in reason for reason in reasons(again))


@pytest.mark.usefixtures("redis_down")
def test_one_card_under_many_emails_is_counted_from_the_database_when_redis_is_down(
    product, django_capture_on_commit_callbacks
):
    first = new_shopper()
    paid(product, first, django_capture_on_commit_callbacks)

    second = paid(product, new_shopper(card=first.card), django_capture_on_commit_callbacks)

    assert decision(second) == RiskDecision.REVIEW
    assert any("distinct emails by this card" in reason for reason in reasons(second))


def test_an_office_of_good_customers_behind_one_ip_is_not_declined(product, django_capture_on_commit_callbacks):
    # Given ten colleagues behind the office's one IP, each with their own email, device and card
    office = new_shopper().ip
    orders = [paid(product, new_shopper(ip=office), django_capture_on_commit_callbacks) for _ in range(10)]

    # Then none is declined (many cards behind one IP counts, but weakly)
    assert [decision(order) for order in orders].count(RiskDecision.DECLINE) == 0
    assert all(decision(order) == RiskDecision.APPROVE for order in orders[:8])


def test_a_link_to_fraud_through_a_shared_ip_alone_neither_declines_nor_holds(
    product, django_capture_on_commit_callbacks
):
    # Given a fraud order from a carrier's shared IP
    carrier = new_shopper().ip
    fraud = paid(product, new_shopper(ip=carrier), django_capture_on_commit_callbacks)
    label_fraud(fraud)

    # When a different person buys from the same IP
    order = paid(product, new_shopper(ip=carrier), django_capture_on_commit_callbacks)

    # Then the link is named but weighs little: the order is released
    assessment = order.risk_assessments.get(stage="paid")
    linked = [reason for reason in assessment.reasons if reason["type"] == "linked_fraud"]
    assert linked and linked[0]["points"] == 15
    assert assessment.decision == RiskDecision.APPROVE


def test_a_link_to_fraud_through_a_shared_device_weighs_in_full(product, django_capture_on_commit_callbacks):
    device_owner = new_shopper()
    fraud = paid(product, device_owner, django_capture_on_commit_callbacks)
    label_fraud(fraud)

    order = paid(product, new_shopper(device=device_owner.device), django_capture_on_commit_callbacks)

    linked = [r for r in order.risk_assessments.get(stage="paid").reasons if r["type"] == "linked_fraud"]
    assert linked and linked[0]["points"] == 50
    assert decision(order) == RiskDecision.REVIEW


@pytest.mark.parametrize(("score", "points"), [(30, 0), (40, 0), (65, 25), (90, 50), (99, 50)])
def test_radars_risk_score_counts_in_proportion(product, score, points, django_capture_on_commit_callbacks):
    order = paid(product, new_shopper(), django_capture_on_commit_callbacks, radar={"risk_score": score})

    scored = [r for r in order.risk_assessments.get(stage="paid").reasons if r["rule"] == "Radar risk score"]
    assert (scored[0]["points"] if scored else 0) == points


def test_radar_elevated_does_not_hold_a_customer_who_paid_before(product, django_capture_on_commit_callbacks):
    # Given a customer with a paid order
    regular = new_shopper()
    paid(product, regular, django_capture_on_commit_callbacks)

    # When their next payment is one Radar calls elevated, with a middling score
    elevated = {"risk_level": "elevated", "risk_score": 56}
    order = paid(product, regular, django_capture_on_commit_callbacks, radar=elevated)

    # Then it counts its points and is released, not held
    assert decision(order) == RiskDecision.APPROVE
    assert any("risk level elevated" in reason for reason in reasons(order))

    # While a first-time buyer with the same Radar verdict is held
    newcomer = paid(product, new_shopper(), django_capture_on_commit_callbacks, radar=elevated)
    assert decision(newcomer) == RiskDecision.REVIEW
