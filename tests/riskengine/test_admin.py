"""Risk engine admin: rules with validated parameters, thresholds, block/allow lists, read-only records, backtest."""

import html
import json

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from riskengine.models import (
    FraudLabel,
    ListEntry,
    ReviewCase,
    RiskAssessment,
    RiskRule,
    RiskSettings,
    RuleMode,
    RuleType,
)
from tests.conftest import record_payment
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def merchant_client(client):
    user = get_user_model().objects.create_superuser("merchant", "m@example.com", "pw-merchant-1")
    client.force_login(user)
    return client


def page(response) -> str:
    return html.unescape(response.content.decode())


def rule_form(**overrides) -> dict:
    data = {
        "name": "Orders per email",
        "type": RuleType.VELOCITY,
        "params": json.dumps({"metric": "orders", "by": ["email"], "window_minutes": 60, "threshold": 5}),
        "points": "25",
        "enabled": "on",
        "mode": RuleMode.ACTIVE,
        "description": "",
    }
    return {**data, **overrides}


def test_rules_are_listed_one_row_each_with_type_points_enabled_and_mode(merchant_client):
    RiskRule.objects.all().delete()
    RiskRule.objects.create(name="Trial rule", type=RuleType.RADAR, points=15, enabled=False, mode=RuleMode.SHADOW)

    response = merchant_client.get(reverse("admin:riskengine_riskrule_changelist"))

    assert response.status_code == 200
    text = page(response)
    for column in ("Name", "Type", "Points", "Enabled", "Mode"):
        assert f">{column}</a>" in text
    assert "Trial rule" in text and "Stripe Radar outcome" in text and "Shadow (recorded, never decides)" in text


def test_a_rule_with_valid_parameters_is_saved(merchant_client):
    response = merchant_client.post(reverse("admin:riskengine_riskrule_add"), rule_form())

    assert response.status_code == 302
    rule = RiskRule.objects.get(name="Orders per email")
    assert (rule.type, rule.points, rule.mode, rule.enabled) == ("velocity", 25, "active", True)
    assert rule.params == {"metric": "orders", "by": ["email"], "window_minutes": 60, "threshold": 5}


@pytest.mark.parametrize(
    ("rule_type", "params", "error"),
    [
        ("velocity", {"metric": "logins"}, "Unknown metric 'logins': use one of orders, failed_payments"),
        ("velocity", {"by": ["email", "phone"]}, "Unknown by value(s) 'phone': use email, ip, device, card."),
        ("velocity", {"threshold": -1}, "threshold must not be negative (-1)."),
        ("velocity", {"window_minutes": 0}, "window_minutes must be at least 1 (0)."),
        ("velocity", {"threshold": "3"}, "threshold must be a whole number, not '3'."),
        ("velocity", ["orders"], "Parameters must be a JSON object"),
        ("amount_vs_history", {"multiple": -2}, "multiple must not be negative (-2)."),
        ("amount_vs_history", {"first_purchase_max": -100}, "first_purchase_max must not be negative (-100)."),
        ("country_mismatch", {"compare": ["ip"]}, "Unknown compare value(s) 'ip': use card, billing."),
        ("radar", {"levels": "elevated"}, "levels must be a non-empty list drawn from normal, elevated, highest."),
        ("linked_fraud", {"hops": 5}, "hops must be at least 1 and at most 3 (5)."),
        ("disposable_email", {"threshold": 3}, "Unknown parameter 'threshold' for a disposable_email rule"),
    ],
)
def test_a_rule_with_bad_parameters_is_refused_with_a_clear_error(merchant_client, rule_type, params, error):
    response = merchant_client.post(
        reverse("admin:riskengine_riskrule_add"),
        rule_form(name="Bad rule", type=rule_type, params=json.dumps(params)),
    )

    assert response.status_code == 200
    assert error in page(response)
    assert not RiskRule.objects.filter(name="Bad rule").exists()


@pytest.mark.parametrize("points", ["101", "-5"])
def test_rule_points_stay_within_the_0_to_100_score(merchant_client, points):
    response = merchant_client.post(reverse("admin:riskengine_riskrule_add"), rule_form(points=points))

    assert response.status_code == 200
    assert not RiskRule.objects.filter(name="Orders per email").exists()


def test_editing_a_rule_validates_against_its_new_type(merchant_client):
    rule = RiskRule.objects.create(name="Radar elevated (ops)", type=RuleType.RADAR, params={"levels": ["elevated"]})

    response = merchant_client.post(
        reverse("admin:riskengine_riskrule_change", args=[rule.pk]),
        rule_form(name=rule.name, type=RuleType.VELOCITY, params=json.dumps({"levels": ["elevated"]})),
    )

    assert response.status_code == 200
    assert "Unknown parameter 'levels' for a velocity rule" in page(response)
    rule.refresh_from_db()
    assert rule.type == RuleType.RADAR


@pytest.mark.parametrize(("review", "decline"), [(80, 40), (50, 50), (0, 80), (40, 101)])
def test_thresholds_must_satisfy_0_below_review_below_decline_up_to_100(merchant_client, review, decline):
    settings_row = RiskSettings.current()
    before = (settings_row.review_threshold, settings_row.decline_threshold)

    response = merchant_client.post(
        reverse("admin:riskengine_risksettings_change", args=[settings_row.pk]),
        {"review_threshold": review, "decline_threshold": decline, "review_deadline_hours": 24},
    )

    assert response.status_code == 200
    assert "Thresholds must satisfy 0 < review < decline ≤ 100" in page(response)
    settings_row.refresh_from_db()
    assert (settings_row.review_threshold, settings_row.decline_threshold) == before


def test_valid_thresholds_are_saved_on_the_single_settings_row(merchant_client):
    settings_row = RiskSettings.current()

    listed = merchant_client.get(reverse("admin:riskengine_risksettings_changelist"))
    saved = merchant_client.post(
        reverse("admin:riskengine_risksettings_change", args=[settings_row.pk]),
        {"review_threshold": 30, "decline_threshold": 100, "review_deadline_hours": 12},
    )

    assert listed.status_code == 302
    assert listed["Location"] == reverse("admin:riskengine_risksettings_change", args=[settings_row.pk])
    assert saved.status_code == 302
    current = RiskSettings.current()
    assert (current.review_threshold, current.decline_threshold, current.review_deadline_hours) == (30, 100, 12)
    assert RiskSettings.objects.count() == 1
    assert merchant_client.get(reverse("admin:riskengine_risksettings_add")).status_code == 403


@pytest.mark.parametrize(
    ("kind", "value", "error"),
    [
        ("ip", "10.0.0.300", "Not an IP address or CIDR range"),
        ("ip", "10.0.0.1/8", "Did you mean 10.0.0.0/8?"),
        ("ip", "example.com", "Not an IP address or CIDR range"),
        ("email", "not-an-email", "Enter a valid email address."),
        ("email_domain", "someone@example.com", "Give a domain such as example.com."),
    ],
)
def test_list_entries_with_bad_values_are_refused(merchant_client, kind, value, error):
    response = merchant_client.post(
        reverse("admin:riskengine_listentry_add"), {"kind": kind, "value": value, "reason": "test"}
    )

    assert response.status_code == 200
    assert error in page(response)
    assert not ListEntry.objects.exists()


@pytest.mark.parametrize(
    ("kind", "value", "stored"),
    [
        ("ip", "10.0.0.0/8", "10.0.0.0/8"),
        ("ip", " 203.0.113.7 ", "203.0.113.7"),
        ("ip", "2001:DB8::/32", "2001:db8::/32"),
        ("email", "Fraudster@Example.COM", "fraudster@example.com"),
        ("email_domain", "@Mailinator.com", "mailinator.com"),
    ],
)
def test_list_entries_are_stored_normalised_with_who_added_them(merchant_client, kind, value, stored):
    response = merchant_client.post(
        reverse("admin:riskengine_listentry_add"), {"kind": kind, "value": value, "reason": "chargeback"}
    )

    assert response.status_code == 302
    entry = ListEntry.objects.get()
    assert (entry.allow, entry.kind, entry.value, entry.created_by) == (False, kind, stored, "staff:merchant")


def test_assessments_and_review_cases_are_read_only(merchant_client, make_order, django_capture_on_commit_callbacks):
    # Given a held order with its assessment and review case
    RiskRule.objects.all().delete()
    RiskRule.objects.create(name="High-risk product", type=RuleType.HIGH_RISK_PRODUCT, points=50)
    product = ProductFactory(high_risk=True)
    add_keys(product, 1)
    order = record_payment(make_order((product, 1)), django_capture_on_commit_callbacks)
    case = ReviewCase.objects.get(order=order)
    assessment = case.assessment

    # When staff open them, try to add one, or post a change
    pages = [
        merchant_client.get(reverse("admin:riskengine_riskassessment_changelist")),
        merchant_client.get(reverse("admin:riskengine_riskassessment_change", args=[assessment.pk])),
        merchant_client.get(reverse("admin:riskengine_reviewcase_changelist")),
        merchant_client.get(reverse("admin:riskengine_reviewcase_change", args=[case.pk])),
        merchant_client.get(reverse("admin:riskengine_fraudlabel_changelist")),
    ]
    refused = [
        merchant_client.get(reverse("admin:riskengine_riskassessment_add")),
        merchant_client.get(reverse("admin:riskengine_reviewcase_add")),
        merchant_client.post(
            reverse("admin:riskengine_riskassessment_change", args=[assessment.pk]),
            {"decision": "approve", "score": 0},
        ),
        merchant_client.post(reverse("admin:riskengine_reviewcase_change", args=[case.pk]), {"status": "approved"}),
    ]

    # Then they can be read, with every reason, but neither added nor changed
    assert [p.status_code for p in pages] == [200] * 5
    assert "High-risk product: " in page(pages[1])
    assert [r.status_code for r in refused] == [403] * 4
    assessment.refresh_from_db()
    case.refresh_from_db()
    assert (assessment.decision, assessment.score, case.status) == ("review", 50, "open")


def test_staff_can_label_an_order_by_hand(merchant_client, make_order):
    product = ProductFactory()
    add_keys(product, 1)
    order = make_order((product, 1))

    response = merchant_client.post(
        reverse("admin:riskengine_fraudlabel_add"), {"order": order.pk, "source": "chargeback", "is_fraud": "on"}
    )

    assert response.status_code == 302
    assert list(FraudLabel.objects.values_list("order", "source", "is_fraud")) == [(order.pk, "chargeback", True)]


def test_backtest_action_shows_which_decisions_the_selected_rules_would_change(
    merchant_client, make_order, django_capture_on_commit_callbacks
):
    pytest.importorskip("riskengine.backtest")
    # Given an order approved with no rule firing, and a shadow rule that would have held it
    RiskRule.objects.all().delete()
    product = ProductFactory(high_risk=True)
    add_keys(product, 1)
    order = record_payment(make_order((product, 1)), django_capture_on_commit_callbacks)
    assert RiskAssessment.objects.get(order=order, stage="paid").decision == "approve"
    rule = RiskRule.objects.create(
        name="High-risk (trial)", type=RuleType.HIGH_RISK_PRODUCT, points=50, mode=RuleMode.SHADOW
    )

    # When staff backtest it as active
    response = merchant_client.post(
        reverse("admin:riskengine_riskrule_changelist"),
        {"action": "backtest_as_active", "_selected_action": [rule.pk]},
    )

    # Then the page shows the order moving from approve to review, and nothing was changed for real
    assert response.status_code == 200
    text = page(response)
    assert "<strong>High-risk (trial)</strong> (now shadow)" in text
    assert f"<tr><td>{order.number}</td><td>approve</td><td>review</td><td>0</td><td>50</td></tr>" in text
    rule.refresh_from_db()
    assert rule.mode == RuleMode.SHADOW
    assert RiskAssessment.objects.get(order=order, stage="paid").decision == "approve"


def test_every_shipped_rule_can_be_saved_again_in_admin_as_it_ships():
    # Every rule a new shop starts with passes the admin's parameter check, so a merchant can edit its points
    from riskengine.defaults import SHIPPED_RULES
    from storefront.admin.riskengine import rule_params_errors

    refused = {name: rule_params_errors(type_, params) for name, type_, params, _, _ in SHIPPED_RULES}
    assert {name: errors for name, errors in refused.items() if errors} == {}
