"""Risk metrics: decision rates per day, rule hits and precision, dispute ratio against the card networks."""

import importlib
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from orders.models import Order
from riskengine.metrics import (
    MonthDisputes,
    decisions_per_day,
    decisions_total,
    dispute_ratio_by_month,
    rule_hit_stats,
)
from riskengine.models import FraudLabel, RiskAssessment, RiskRule, RuleMode, RuleType
from riskengine.rules import Hit

pytestmark = pytest.mark.django_db

TODAY = date(2026, 3, 15)


def at(day: date, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def orders(count: int, *, paid_at: datetime | None = None) -> list[Order]:
    made = Order.objects.bulk_create(
        Order(email=f"m{i}@example.com", currency="USD", subtotal_amount=1000, total_amount=1000, paid_at=paid_at)
        for i in range(count)
    )
    return list(Order.objects.filter(pk__in=[o.pk for o in made]).order_by("pk"))


def assessed(order: Order, when: datetime, decision: str = "approve", *, stage="paid", hits=(), shadow=()) -> None:
    assessment = RiskAssessment.objects.create(
        order=order,
        stage=stage,
        decision=decision,
        reasons=[h.as_dict() for h in hits],
        shadow_reasons=[h.as_dict() for h in shadow],
    )
    RiskAssessment.objects.filter(pk=assessment.pk).update(created_at=when)


def labelled(order: Order, source: str, is_fraud: bool, when: datetime | None = None) -> None:
    label = FraudLabel.objects.create(order=order, source=source, is_fraud=is_fraud)
    if when:
        FraudLabel.objects.filter(pk=label.pk).update(created_at=when)


def test_decisions_per_day_counts_paid_assessments_per_day_with_rates_and_empty_days():
    # Given paid-stage decisions over three days, one day without any, and some that must not count
    order = orders(1)[0]
    first, second, third = TODAY - timedelta(days=2), TODAY - timedelta(days=1), TODAY
    assessed(order, at(first, 0, 0, 0))  # the first second of the window
    assessed(order, at(first))
    assessed(order, at(first, 23, 59, 59))
    assessed(order, at(first), "review")
    assessed(order, at(third), "decline")
    assessed(order, at(third))
    assessed(order, at(third), "decline", stage="pre_payment")  # the screen before payment: not a paid decision
    assessed(order, at(first - timedelta(days=1), 23, 59, 59))  # just before the window
    assessed(order, at(third + timedelta(days=1), 0, 0, 0))  # tomorrow

    # When the last three days are counted
    per_day = decisions_per_day(days=3, today=TODAY)

    # Then each day has its counts, oldest first, and the rates follow
    assert [(d.day, d.approve, d.review, d.decline) for d in per_day] == [
        (first, 3, 1, 0),
        (second, 0, 0, 0),
        (third, 1, 0, 1),
    ]
    assert (per_day[0].approve_rate, per_day[0].review_rate, per_day[0].decline_rate) == (0.75, 0.25, 0.0)
    assert per_day[1].approve_rate is None
    totals = decisions_total(per_day)
    assert (totals.approve, totals.review, totals.decline, totals.total) == (4, 1, 1, 6)
    assert totals.decline_rate == 1 / 6


def test_rule_hits_count_orders_once_and_precision_is_fraud_among_labelled_hits():
    # Given three rules, one of them in shadow mode and one that never fired
    RiskRule.objects.all().delete()
    velocity = RiskRule.objects.create(name="Velocity A", type=RuleType.VELOCITY, points=25)
    disposable = RiskRule.objects.create(
        name="Disposable", type=RuleType.DISPOSABLE_EMAIL, points=20, mode=RuleMode.SHADOW
    )
    RiskRule.objects.create(name="Never fires", type=RuleType.RADAR, points=20)
    v_hit = Hit(velocity.name, velocity.type, 25, "6 orders by this email in 60 min (limit 5)")
    d_hit = Hit(disposable.name, disposable.type, 20, "Disposable email domain mailinator.com")
    now = at(TODAY)
    fraud, legit, unlabelled, relabelled, too_old = orders(5)
    # fraud: both rules fired, later disputed
    assessed(fraud, now - timedelta(days=3), "review", hits=[v_hit], shadow=[d_hit])
    labelled(fraud, "dispute", True)
    # legit: velocity fired, review found it fine
    assessed(legit, now - timedelta(days=2), "review", hits=[v_hit])
    labelled(legit, "review", False)
    # unlabelled: velocity fired in the screen and again once paid (one hit), never labelled
    assessed(unlabelled, now - timedelta(days=1), "approve", stage="pre_payment", hits=[v_hit])
    assessed(unlabelled, now - timedelta(days=1), "review", hits=[v_hit])
    # relabelled: shadow rule fired; review said fine, a dispute later said fraud (any fraud label wins)
    assessed(relabelled, now - timedelta(days=1), "approve", shadow=[d_hit])
    labelled(relabelled, "review", False)
    labelled(relabelled, "dispute", True)
    # too_old: velocity fired 91 days ago, outside the window
    assessed(too_old, now - timedelta(days=91), "review", hits=[v_hit])
    labelled(too_old, "dispute", True)

    # When the rules' records over 90 days are computed
    stats = rule_hit_stats(days=90, now=now)

    # Then hits are orders, labelled and fraud counted among them, most hits first
    assert [(s.rule, s.type, s.mode, s.hits, s.labelled, s.fraud) for s in stats] == [
        ("Velocity A", "velocity", "active", 3, 2, 1),
        ("Disposable", "disposable_email", "shadow", 2, 2, 2),
        ("Never fires", "radar", "active", 0, 0, 0),
    ]
    assert [s.precision for s in stats] == [0.5, 1.0, None]


def test_dispute_ratio_per_month_against_visa_and_mastercard_early_warning():
    # Given January: 100 paid orders, one disputed (twice over, still one order), and a December dispute
    january = orders(100, paid_at=at(date(2026, 1, 20)))
    labelled(january[0], "dispute", True, at(date(2026, 1, 25)))
    labelled(january[0], "dispute", True, at(date(2026, 1, 26)))
    labelled(january[1], "dispute", True, at(date(2025, 12, 31), 23, 59, 59))
    # And February: 111 paid orders (the first at midnight on the 1st), one disputed
    february = orders(110, paid_at=at(date(2026, 2, 10)))
    orders(1, paid_at=at(date(2026, 2, 1), 0, 0, 0))
    labelled(february[0], "dispute", True, at(date(2026, 2, 28), 23, 59, 59))
    # And March: 200 paid orders, unpaid ones, a dispute on a January order, and an early fraud warning
    orders(200, paid_at=at(date(2026, 3, 2)))
    orders(7)
    labelled(january[2], "dispute", True, at(date(2026, 3, 3)))
    labelled(february[1], "early_fraud_warning", True, at(date(2026, 3, 4)))

    # When the last three months are computed
    months = dispute_ratio_by_month(months=3, today=TODAY)

    # Then each month's disputes are set against that month's paid orders
    assert [(m.month, m.paid_orders, m.disputes) for m in months] == [
        (date(2026, 1, 1), 100, 1),
        (date(2026, 2, 1), 111, 1),
        (date(2026, 3, 1), 200, 1),
    ]
    assert [round(m.percent, 4) for m in months] == [1.0, 0.9009, 0.5]
    # And 1.0% reaches both networks' early warning, 0.90% Visa's only, 0.5% neither
    assert [m.over for m in months] == [["Visa", "Mastercard"], ["Visa"], []]


@pytest.mark.parametrize(
    ("paid", "disputes", "over"),
    [
        (1000, 8, []),
        (1000, 9, ["Visa"]),
        (1000, 10, ["Visa", "Mastercard"]),
        (0, 0, []),
        (0, 1, ["Visa", "Mastercard"]),
    ],
)
def test_thresholds_are_exact_at_the_boundary(paid, disputes, over):
    assert MonthDisputes(month=TODAY.replace(day=1), paid_orders=paid, disputes=disputes).over == over


def reviewer_client() -> Client:
    migration = importlib.import_module("riskengine.migrations.0004_reviewers_group")
    migration.create_reviewers_group(django_apps, None)
    user = get_user_model().objects.create_user("rita", "rita@ops.example.com", "pw-rita-1")
    user.groups.add(Group.objects.get(name=migration.REVIEWERS_GROUP))
    client = Client()
    client.force_login(user)
    return client


def test_metrics_page_shows_rates_rule_precision_and_a_dispute_warning_with_inline_charts():
    # Given this month: 100 paid orders, one disputed; today 3 approvals and 1 review; a rule that hit once
    RiskRule.objects.all().delete()
    RiskRule.objects.create(name="Velocity A", type=RuleType.VELOCITY, points=25)
    RiskRule.objects.create(name="Never fires", type=RuleType.RADAR, points=20)
    now = timezone.now()
    paid = orders(100, paid_at=now)
    labelled(paid[0], "dispute", True, now)
    for order in paid[1:4]:
        assessed(order, now)
    assessed(paid[0], now, "review", hits=[Hit("Velocity A", "velocity", 25, "6 orders")])

    # When a reviewer opens the metrics page
    response = reviewer_client().get(reverse("review:metrics"))

    # Then the totals, the rates, the rules' precision and the warning are on it
    assert response.status_code == 200
    html = response.content.decode()
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "4 paid orders assessed: approved 3 (75.0%) held for review 1 (25.0%) declined 0 (0.0%)" in text
    assert "Velocity A velocity active 1 1 1 100%" in text
    assert "Never fires radar active 0 0 0 n/a" in text
    assert re.search(r"Dispute ratio 1\.00% in \w+ \d{4} \(1 disputes / 100 paid orders\) is at or above", text)
    assert "early-warning level of Visa and Mastercard" in text
    # And the charts are inline SVG, with nothing fetched from elsewhere (the machine is offline)
    assert '<svg id="decision-chart"' in html and '<svg id="dispute-chart"' in html
    assert f"<title>{now:%Y-%m-%d}: 3 approve (75%)</title>" in html
    assert "<script" not in html and 'src="http' not in html and 'href="http' not in html


def test_metrics_page_is_only_for_reviewers():
    clerk = get_user_model().objects.create_user("clerk", "clerk@example.com", "pw-clerk-1", is_staff=True)
    client = Client()

    anonymous = client.get(reverse("review:metrics"))
    client.force_login(clerk)
    forbidden = client.get(reverse("review:metrics"))

    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("review:login"))
    assert forbidden.status_code == 403
