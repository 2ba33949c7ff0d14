"""The merchant dashboard (/admin/dashboard/): sales and fees, orders waiting, payment-to-delivery time, the dispute
ratio against the networks' lines, stock alerts and channel health, drawn by the server, in a bounded number of
queries, in English or Simplified Chinese."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from catalog.models import FulfilmentKind
from orders.models import Order, OrderStatus
from payments.models import Payment, PaymentChannel, PaymentStatus
from riskengine.models import FraudLabel, ReviewCase, RiskAssessment, RiskDecision
from storefront.admin.dashboard import delivery_times, dispute_ratio, sales_between
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def shop(time_machine, make_order):
    """A shop on 15 March 2026 at noon: payments today, this month and last month, orders waiting and delivered,
    a dispute, a product low on keys and a channel whose breaker is open."""
    time_machine.move_to(NOW, tick=False)
    service = ProductFactory(kind=FulfilmentKind.SERVICE, name="Setup call")
    seq = iter(range(100))

    def order(status=OrderStatus.FULFILLED, paid=None, took=None):
        made = make_order((service, 1), email=f"buyer{next(seq)}@example.com")
        completed = paid + took if paid and took is not None else None
        Order.objects.filter(pk=made.pk).update(status=status, paid_at=paid, completed_at=completed)
        return made

    def payment(order_, amount, at, currency="USD", **fields):
        fields.setdefault("status", PaymentStatus.SUCCEEDED)
        return Payment.objects.create(
            order=order_,
            provider="stripe",
            provider_ref=f"pi_{order_.number}_{amount}_{fields.get('duplicate')}",
            amount=amount,
            currency=currency,
            succeeded_at=at,
            **fields,
        )

    today_1, today_2, month_eur, last_month = order(), order(), order(), order()
    payment(today_1, 1000, NOW - timedelta(hours=2), actual_fee=59)
    payment(today_2, 2500, NOW - timedelta(hours=1), expected_fee=103, refunded_amount=500, amount_received=2500)
    payment(today_1, 1000, NOW - timedelta(minutes=30), expected_fee=59, duplicate=True)  # refunded: not a sale
    payment(today_2, 700, None, status=PaymentStatus.FAILED)
    payment(month_eur, 4000, datetime(2026, 3, 3, 9, tzinfo=UTC), currency="EUR", actual_fee=120)
    payment(last_month, 9999, datetime(2026, 2, 10, 9, tzinfo=UTC))
    FraudLabel.objects.create(order=today_2, source="dispute", is_fraud=True)

    order(OrderStatus.AWAITING_STOCK, paid=NOW - timedelta(days=1))
    order(OrderStatus.AWAITING_STOCK, paid=NOW - timedelta(hours=3))
    held = order(OrderStatus.ON_HOLD, paid=NOW - timedelta(hours=5))
    assessment = RiskAssessment.objects.create(order=held, decision=RiskDecision.REVIEW, score=60)
    ReviewCase.objects.create(order=held, assessment=assessment)
    for took in (timedelta(milliseconds=500), timedelta(seconds=3), timedelta(hours=2)):
        order(paid=NOW - timedelta(days=2), took=took)
    order(paid=NOW - timedelta(days=10), took=timedelta(days=3))  # before the 7-day window

    low = ProductFactory(name="Nearly gone key", low_stock_threshold=5)
    add_keys(low, 2)
    add_keys(ProductFactory(name="Plenty key", low_stock_threshold=5), 8)
    PaymentChannel.objects.filter(code="stripe").update(breaker_open_until=NOW + timedelta(minutes=5))
    return {"low": low}


def merchant(client, *perms):
    user = get_user_model().objects.create_user("mira", "mira@example.com", "pw-mira-123", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client.force_login(user)
    return client


def test_sales_and_fees_of_today_and_this_month_per_currency(shop):
    midnight = NOW.replace(hour=0)

    today = sales_between(midnight, NOW)
    month = sales_between(NOW.replace(day=1, hour=0), NOW)

    assert [(s.currency, s.payments, s.volume, s.fees, s.refunded, s.net) for s in today] == [
        ("USD", 2, 3500, 162, 500, 2838)
    ]
    assert [(s.currency, s.payments, s.volume, s.fees) for s in month] == [("EUR", 1, 4000, 120), ("USD", 2, 3500, 162)]


def test_payment_to_delivery_time_counts_the_last_seven_days_in_buckets(shop):
    found = delivery_times(since=NOW - timedelta(days=7))

    assert found["count"] == 3
    assert round(found["average"].total_seconds(), 2) == round((0.5 + 3 + 7200) / 3, 2)
    assert dict(found["buckets"]) == {
        "≤ 1 s": 1,
        "≤ 5 s": 1,
        "≤ 1 min": 0,
        "≤ 10 min": 0,
        "≤ 1 h": 0,
        "≤ 1 day": 1,
        "> 1 day": 0,
    }


def test_the_dispute_ratio_per_month_marks_months_over_the_networks_lines(shop):
    months = dispute_ratio(today=NOW.date())

    # March: 1 disputed order of the 3 paid (duplicates left out) is over both lines; February: 1 paid, none disputed
    assert [(m.month.isoformat(), m.paid_orders, m.disputes, m.over) for m in months[-2:]] == [
        ("2026-02-01", 1, 0, []),
        ("2026-03-01", 3, 1, ["Visa", "Mastercard"]),
    ]
    assert [m.month.isoformat() for m in months][:4] == ["2025-10-01", "2025-11-01", "2025-12-01", "2026-01-01"]


def test_the_dashboard_page_shows_it_all_with_server_drawn_charts_in_few_queries(
    client, shop, django_assert_max_num_queries
):
    merchant(client, "orders.view_order")

    with django_assert_max_num_queries(19):  # the session, user, device and permissions, then ~14 aggregates
        page = client.get(reverse("admin-dashboard"))

    html = page.content.decode()
    assert page.status_code == 200
    today = re.search(r'<tr class="sales-today">(.*?)</tr>', html, re.S).group(1)
    assert "USD 35.00" in today and "USD 1.62" in today and "USD 5.00" in today and "USD 28.38" in today
    waiting = {row["status"]: row["count"] for row in page.context["waiting"]}
    assert waiting == {"awaiting_stock": 2, "on_hold": 1, "awaiting_shipment": 0, "paid": 0, "review": 1}
    assert '<strong id="delivery-average">2401.2 s</strong>' in html
    # charts: 30 days of sales (one day with sales in EUR, the month's main currency), the histogram, the disputes
    assert len(re.findall(r'<rect class="bar"', html[html.index('id="sales-chart"') :].split("</svg>")[0])) == 1
    assert html.count('class="level ') == 2 and "Visa 0.9%" in html and "Mastercard 1.0%" in html
    assert "2026-03 is at or above the Visa, Mastercard level." in html
    assert [p.name for p in page.context["stock_alerts"]] == ["Nearly gone key"]
    states = re.findall(r'data-code="(\w+)"><td>.*?</td>\s*<td>(.*?)</td>', html, re.S)
    assert [(code, re.sub("<[^>]+>", "", state)) for code, state in states] == [
        ("stripe", "breaker open"),
        ("paypal", "off"),
    ]
    assert 'style="' not in html[html.index('id="content-main"') :]  # the page's CSP allows no style attribute


def test_the_dashboard_is_for_staff_who_may_view_orders(client, shop):
    assert client.get(reverse("admin-dashboard")).status_code == 302  # to the admin login
    merchant(client, "catalog.view_product")
    assert client.get(reverse("admin-dashboard")).status_code == 403


def test_the_dashboard_speaks_simplified_chinese(client, shop):
    merchant(client, "orders.view_order")
    client.cookies["django_language"] = "zh-hans"

    html = client.get(reverse("admin-dashboard")).content.decode()

    for phrase in ["销售额与手续费", "待处理订单", "从付款到交付", "争议率", "库存提醒", "支付渠道"]:
        assert phrase in html, phrase
