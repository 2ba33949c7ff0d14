"""The engine's per-process snapshot of rules, lists and fraud identifiers: fast, and never stale.

Each test warms the snapshot first (an assessment), then changes something the way staff or the
shop would, and checks that the very next assessment sees the change.
"""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from riskengine import config
from riskengine.config import IpIndex, risk_config
from riskengine.models import (
    FraudLabel,
    ListEntry,
    ListKind,
    RiskConfigVersion,
    RiskDecision,
    RiskRule,
    RiskSettings,
    RuleType,
)
from riskengine.services import risk_assess_order
from tests.riskengine.test_rules import new_shopper, pay, place_order, service, use_only_rules


def blocklist_rule() -> RiskRule:
    return RiskRule(name="Blocklist", type=RuleType.BLOCKLIST, points=100)


@pytest.fixture
def product(db):
    return service(price_amount=2000)


@pytest.mark.django_db
def test_nothing_changed_costs_one_query(product):
    # Given a warm snapshot
    use_only_rules(blocklist_rule())
    risk_config()

    # When it is asked for again
    with CaptureQueriesContext(connection) as queries:
        snapshot = risk_config()

    # Then one query checked it, and it holds the rule
    assert len(queries) == 1
    assert [rule.name for rule in snapshot.rules] == ["Blocklist"]


@pytest.mark.django_db
def test_a_rule_disabled_after_warming_stops_counting_at_once(product):
    # Given a high-risk rule that holds orders, and an assessment that warmed the snapshot
    use_only_rules(RiskRule(name="High risk", type=RuleType.HIGH_RISK_PRODUCT, points=50))
    risky = service(price_amount=1000, high_risk=True)
    assert risk_assess_order(order=place_order(risky, new_shopper())).decision == RiskDecision.REVIEW

    # When staff disable it (a plain save, as admin does)
    rule = RiskRule.objects.get(name="High risk")
    rule.enabled = False
    rule.save()

    # Then the next order is approved
    assert risk_assess_order(order=place_order(risky, new_shopper())).decision == RiskDecision.APPROVE


@pytest.mark.django_db
def test_a_rule_changed_by_a_bulk_update_is_seen(product):
    # Given a warm snapshot with a rule worth 10
    use_only_rules(RiskRule(name="High risk", type=RuleType.HIGH_RISK_PRODUCT, points=10))
    risky = service(price_amount=1000, high_risk=True)
    assert risk_assess_order(order=place_order(risky, new_shopper())).score == 10

    # When its points change through a queryset update (no save(), no updated_at)
    RiskRule.objects.filter(name="High risk").update(points=90)

    # Then the next assessment scores with the new points
    assert risk_assess_order(order=place_order(risky, new_shopper())).score == 90


@pytest.mark.django_db
def test_thresholds_are_read_fresh_every_time(product):
    use_only_rules(RiskRule(name="High risk", type=RuleType.HIGH_RISK_PRODUCT, points=50))
    risky = service(price_amount=1000, high_risk=True)
    assert risk_assess_order(order=place_order(risky, new_shopper())).decision == RiskDecision.REVIEW

    RiskSettings.objects.filter(pk=1).update(review_threshold=60)

    assert risk_assess_order(order=place_order(risky, new_shopper())).decision == RiskDecision.APPROVE


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["create", "bulk_create", "raw_sql"])
def test_a_blocklist_entry_added_any_way_is_seen_by_the_next_assessment(product, how):
    # Given a warm snapshot that lets this shopper through
    use_only_rules(blocklist_rule())
    shopper = new_shopper()
    assert risk_assess_order(order=place_order(product, shopper)).decision == RiskDecision.APPROVE

    # When the shopper's email is blocklisted, however it is written
    if how == "create":
        ListEntry.objects.create(kind=ListKind.EMAIL, value=shopper.email, created_by="test")
    elif how == "bulk_create":
        ListEntry.objects.bulk_create([ListEntry(kind=ListKind.EMAIL, value=shopper.email, created_by="test")])
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO riskengine_listentry (allow, kind, value, reason, created_by, created_at)"
                " VALUES (false, 'email', %s, '', 'sql', now())",
                [shopper.email],
            )

    # Then their next order is declined on it
    assessment = risk_assess_order(order=place_order(product, shopper))
    assert assessment.decision == RiskDecision.DECLINE
    assert assessment.reasons[0]["reason"] == f"On the blocklist: email {shopper.email}"


@pytest.mark.django_db
def test_a_deleted_entry_stops_matching(product):
    use_only_rules(blocklist_rule())
    shopper = new_shopper()
    entry = ListEntry.objects.create(kind=ListKind.DEVICE, value=shopper.device, created_by="test")
    assert risk_assess_order(order=place_order(product, shopper)).decision == RiskDecision.DECLINE

    entry.delete()

    assert risk_assess_order(order=place_order(product, shopper)).decision == RiskDecision.APPROVE


@pytest.mark.django_db
def test_an_entry_seen_inside_a_rolled_back_transaction_does_not_linger(product):
    # Given a blocklist entry written and assessed against inside a transaction that then rolls back
    use_only_rules(blocklist_rule())
    shopper = new_shopper()
    order = place_order(product, shopper)
    with pytest.raises(RuntimeError), transaction.atomic():
        ListEntry.objects.create(kind=ListKind.EMAIL, value=shopper.email, created_by="test")
        assert risk_assess_order(order=order).decision == RiskDecision.DECLINE
        raise RuntimeError("roll back")

    # When another entry is then written for real, and the shopper is assessed
    ListEntry.objects.create(kind=ListKind.EMAIL, value="someone-else@example.net", created_by="test")
    assessment = risk_assess_order(order=place_order(product, shopper))

    # Then the entry that never committed does not block them (its stamp is never handed out again)
    assert assessment.decision == RiskDecision.APPROVE


@pytest.mark.django_db
def test_a_fraud_label_is_seen_by_the_next_linked_order(product):
    # Given a warm snapshot and a shopper whose earlier order is then labelled fraud
    use_only_rules(RiskRule(name="Linked", type=RuleType.LINKED_FRAUD, points=50, params={"hops": 2}))
    shopper = new_shopper()
    first = pay(place_order(product, shopper))
    assert risk_assess_order(order=place_order(product, new_shopper())).decision == RiskDecision.APPROVE
    FraudLabel.objects.create(order=first, source="dispute", is_fraud=True)

    # When another order from the same device comes in
    assessment = risk_assess_order(order=place_order(product, new_shopper(device=shopper.device)))

    # Then it is linked at once
    assert assessment.decision == RiskDecision.REVIEW
    assert assessment.reasons[0]["reason"].endswith(f"e.g. {first.number} via device")


@pytest.mark.django_db
def test_stamps_flushed_away_are_recreated_and_nothing_is_cached_meanwhile(product):
    # Given the stamp rows are gone (a flushed test database)
    use_only_rules(blocklist_rule())
    RiskConfigVersion.objects.all().delete()
    shopper = new_shopper()

    # When the engine assesses, and a list entry appears right after
    assert risk_assess_order(order=place_order(product, shopper)).decision == RiskDecision.APPROVE
    ListEntry.objects.create(kind=ListKind.EMAIL, value=shopper.email, created_by="test")

    # Then the stamps exist again and the entry is seen
    assert RiskConfigVersion.objects.count() == len(config.PARTS)
    assert risk_assess_order(order=place_order(product, shopper)).decision == RiskDecision.DECLINE


@pytest.mark.django_db
def test_lists_too_long_to_hold_are_queried_per_order(product, monkeypatch):
    # Given the exact-match lists are over the in-memory limit
    monkeypatch.setattr(config, "LIST_MEMORY_MAX", 0)
    use_only_rules(blocklist_rule())
    shopper = new_shopper()
    ListEntry.objects.create(kind=ListKind.EMAIL, value=shopper.email.upper(), created_by="test")
    ListEntry.objects.create(kind=ListKind.IP, value=f"{shopper.ip}/128", allow=False, created_by="test")

    # When the shopper is assessed
    assert risk_config().exact_lists is None
    assessment = risk_assess_order(order=place_order(product, shopper))

    # Then both entries match, the email case-insensitively from the database
    assert assessment.decision == RiskDecision.DECLINE
    assert sorted(assessment.reasons[0]["values"]["matches"]) == sorted(
        [f"email {shopper.email.upper()}", f"ip {shopper.ip}/128"]
    )


def test_ip_index_matches_every_listed_range_holding_the_address():
    index = IpIndex()
    for text in ("198.51.100.7", "198.51.100.0/24", "198.51.0.0/16", "10.0.0.0/8", "2001:db8::/32", "nonsense"):
        index.add(text)

    assert sorted(index.matches("198.51.100.7")) == ["198.51.0.0/16", "198.51.100.0/24", "198.51.100.7"]
    assert index.matches("198.51.101.1") == ["198.51.0.0/16"]
    assert index.matches("2001:db8:1::5") == ["2001:db8::/32"]
    assert index.matches("192.0.2.1") == []
    assert index.matches("not-an-ip") == []
