"""The review case and risk metrics pages speak Simplified Chinese to a reviewer who chose it, English otherwise."""

import pytest
from django.test import Client
from django.urls import reverse

from riskengine.models import RiskRule, RiskSettings, RuleType
from tests.riskengine.test_review_queue import held_order, logged_in, make_reviewer

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer_and_case(make_order, django_capture_on_commit_callbacks):
    RiskRule.objects.all().delete()
    RiskSettings.objects.update_or_create(
        pk=1, defaults={"review_threshold": 40, "decline_threshold": 80, "review_deadline_hours": 24}
    )
    RiskRule.objects.create(name="High-risk product", type=RuleType.HIGH_RISK_PRODUCT, points=50)
    order = held_order(make_order, django_capture_on_commit_callbacks)
    return make_reviewer("zh-reviewer"), order.review_case


def in_language(user, language: str) -> Client:
    client = logged_in(user)
    client.cookies["django_language"] = language
    return client


@pytest.mark.parametrize(
    ("language", "case_phrases", "metrics_phrases"),
    [
        (
            "zh-hans",
            ["审核订单", "认领此订单", "原因", "客户历史（", "审计记录", "未经 Radar 评估。"],
            ["风险指标", "决策（最近 30 天）", "已评估 1 笔已付款订单", "每月争议率"],
        ),
        (
            "en",
            ["Review of", "Claim this order", "Reasons", "Customer history (", "Audit trail", "Not assessed by Radar."],
            ["Risk metrics", "Decisions, last 30 days", "1 paid orders assessed", "Dispute ratio by month"],
        ),
    ],
)
def test_case_and_metrics_pages_in_the_reviewers_language(reviewer_and_case, language, case_phrases, metrics_phrases):
    # Given a reviewer who chose a language, and an order held for review
    reviewer, case = reviewer_and_case
    client = in_language(reviewer, language)

    # When they open the case and the metrics
    case_html = client.get(reverse("review:case", args=[case.pk])).content.decode()
    metrics_html = client.get(reverse("review:metrics")).content.decode()

    # Then both pages are in that language
    for phrase in case_phrases:
        assert phrase in case_html, phrase
    for phrase in metrics_phrases:
        assert phrase in metrics_html, phrase
    assert f'lang="{language}"' in case_html and f'lang="{language}"' in metrics_html
