"""The merchant dashboard (/admin/dashboard/, linked from the admin index): how the shop is doing, on one page.

Today's and this month's sales and fees, orders waiting (for stock, for review, for shipping), payment-to-delivery
time, the monthly dispute ratio against the card networks' early-warning lines (riskengine.metrics), stock
alerts and channel health, with charts drawn by the server as SVG (storefront.charts, as the risk metrics page).

Every figure is an aggregate over an index or a kept count: sales over payment_succeeded_at, orders waiting over
order_status_paid_at, open reviews over reviewcase_queue, stock from Product.keys_available, channel health from
the Redis counters the router reads (payments.health). About a dozen queries, whatever the shop's size.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.db.models.functions import Coalesce, TruncDate, TruncMonth
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from catalog.models import FulfilmentKind, Product
from orders.models import Order, OrderStatus
from payments.health import channel_health
from payments.models import Dispute, DisputeStatus, Payment, PaymentChannel, PaymentStatus
from riskengine.metrics import DISPUTE_SOURCE, DISPUTE_THRESHOLDS, MonthDisputes
from riskengine.models import FraudLabel, ReviewCase, ReviewStatus
from storefront.admin.subscriptions import subscription_figures
from storefront.charts import Bar, bar_chart, dispute_chart
from storefront.templatetags.money import money

DASHBOARD_PERMISSION = "orders.view_order"
SALES_DAYS = 30
DELIVERY_DAYS = 7
DISPUTE_MONTHS = 6
# Payment-to-delivery buckets (upper bounds, seconds) for the histogram.
DELIVERY_BUCKETS = [(1, "≤ 1 s"), (5, "≤ 5 s"), (60, "≤ 1 min"), (600, "≤ 10 min"), (3600, "≤ 1 h"), (86400, "≤ 1 day")]
WAITING = [OrderStatus.AWAITING_STOCK, OrderStatus.ON_HOLD, OrderStatus.AWAITING_SHIPMENT, OrderStatus.PAID]
COUNTED_PAYMENTS = [PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED]


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _first_of_month(day: date, back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def _payments(since: datetime, until: datetime):
    return Payment.objects.filter(
        status__in=COUNTED_PAYMENTS, duplicate=False, succeeded_at__gte=since, succeeded_at__lt=until
    )


@dataclass(frozen=True)
class Sales:
    currency: str
    payments: int
    volume: int
    fees: int
    refunded: int

    @property
    def net(self) -> int:
        return self.volume - self.fees - self.refunded


def sales_between(since: datetime, until: datetime) -> list[Sales]:
    """Payments that cleared in the window, per currency: count, volume, fees (reported, else expected), refunds."""
    rows = (
        _payments(since, until)
        .values("currency")
        .annotate(
            payments=Count("pk"),
            volume=Sum(Coalesce("amount_received", "amount")),
            fees=Sum(Coalesce("actual_fee", "expected_fee", 0)),
            refunded=Sum("refunded_amount"),
        )
        .order_by("-volume", "currency")
    )
    return [Sales(r["currency"], r["payments"], r["volume"] or 0, r["fees"] or 0, r["refunded"] or 0) for r in rows]


def free_and_coupon_orders(since: datetime, until: datetime) -> dict:
    """Orders paid in the window that no payment shows: free ones (a price of zero, or a coupon that took
    everything), and how many used a coupon. One aggregate over order_status_paid_at."""
    return Order.objects.filter(paid_at__gte=since, paid_at__lt=until).aggregate(
        free=Count("pk", filter=Q(total_amount=0)),
        with_coupon=Count("pk", filter=Q(discount_amount__gt=0)),
    )


def sales_per_day(*, currency: str, today: date, days: int = SALES_DAYS) -> list[tuple[date, int, int]]:
    """(day, payments, volume) of one currency for each of the last `days` days, oldest first, empty days too."""
    start = today - timedelta(days=days - 1)
    rows = (
        _payments(_midnight(start), _midnight(today + timedelta(days=1)))
        .filter(currency=currency)
        .annotate(day=TruncDate("succeeded_at"))
        .values("day")
        .annotate(payments=Count("pk"), volume=Sum(Coalesce("amount_received", "amount")))
    )
    found = {r["day"]: (r["payments"], r["volume"] or 0) for r in rows}
    return [(d, *found.get(d, (0, 0))) for d in (start + timedelta(days=n) for n in range(days))]


def orders_waiting() -> list[dict]:
    """Paid orders not yet delivered, per status, with the oldest payment among them; and open reviews."""
    rows = {
        r["status"]: r
        for r in Order.objects.filter(status__in=WAITING)
        .values("status")
        .annotate(count=Count("pk"), oldest=Min("paid_at"))
        .order_by()
    }
    reviews = ReviewCase.objects.filter(status=ReviewStatus.OPEN).aggregate(count=Count("pk"), oldest=Min("created_at"))
    waiting = [
        {"label": OrderStatus(status).label, "status": status, **rows.get(status, {"count": 0, "oldest": None})}
        for status in WAITING
    ]
    waiting.append({"label": _("Open review cases"), "status": "review", **reviews})
    return waiting


def delivery_times(*, since: datetime) -> dict:
    """Seconds from payment to delivery of the orders delivered since `since`: average, worst, and a histogram."""
    delivered = Order.objects.filter(
        status=OrderStatus.FULFILLED, paid_at__gte=since, completed_at__isnull=False
    ).annotate(took=ExpressionWrapper(F("completed_at") - F("paid_at"), output_field=DurationField()))
    buckets = {
        f"b{seconds}": Count("pk", filter=Q(completed_at__lte=F("paid_at") + timedelta(seconds=seconds)))
        for seconds, _label in DELIVERY_BUCKETS
    }
    found = delivered.aggregate(count=Count("pk"), average=Avg("took"), **buckets)
    counts, below = [], 0
    for seconds, label in DELIVERY_BUCKETS:
        within = found[f"b{seconds}"] or 0
        counts.append((label, within - below))
        below = within
    counts.append(("> 1 day", (found["count"] or 0) - below))
    return {"count": found["count"] or 0, "average": found["average"], "buckets": counts}


def dispute_ratio(*, today: date, months: int = DISPUTE_MONTHS) -> list[MonthDisputes]:
    """Disputed orders per order paid, for each of the last `months` months: two grouped queries, not one a month.

    As riskengine.metrics.dispute_ratio_by_month (the risk metrics page): a dispute counts once per order in the
    month it arrived; paid orders are those whose payment cleared that month (duplicates left out).
    """
    first = _first_of_month(today, months - 1)
    since, until = _midnight(first), _midnight(_first_of_month(today, -1))
    paid = {
        r["month"].date() if isinstance(r["month"], datetime) else r["month"]: r["n"]
        for r in _payments(since, until)
        .annotate(month=TruncMonth("succeeded_at"))
        .values("month")
        .annotate(n=Count("order_id", distinct=True))
    }
    disputed = {
        r["month"].date() if isinstance(r["month"], datetime) else r["month"]: r["n"]
        for r in FraudLabel.objects.filter(source=DISPUTE_SOURCE, created_at__gte=since, created_at__lt=until)
        .annotate(month=TruncMonth("created_at"))
        .values("month")
        .annotate(n=Count("order_id", distinct=True))
    }
    return [
        MonthDisputes(month=month, paid_orders=paid.get(month, 0), disputes=disputed.get(month, 0))
        for month in (_first_of_month(today, back) for back in range(months - 1, -1, -1))
    ]


def stock_alerts(limit: int = 20) -> list[Product]:
    """Products on sale whose pool is at or below their low-stock threshold (the kept count, no key is counted)."""
    return list(
        Product.objects.filter(
            is_active=True,
            kind=FulfilmentKind.LICENSE_KEY,
            shared_key_ciphertext__isnull=True,
            keys_available__lte=F("low_stock_threshold"),
        )
        .exclude(license_policy__key_source="generated")  # keys made at delivery never run low
        .order_by("keys_available", "name")
        .only("pk", "name", "keys_available", "low_stock_threshold")[:limit]
    )


def channels_health(now: datetime) -> list[dict]:
    """Each channel: on or off, breaker, and the last 30 minutes from the router's Redis counters (one command)."""
    channels = list(PaymentChannel.objects.order_by("priority", "code"))
    health = channel_health(channel_ids=[c.pk for c in channels])
    return [
        {
            "channel": channel,
            "breaker_open": channel.breaker_open(now),
            "health": health.get(channel.pk),
            "credentials_missing": bool(channel.enabled and channel.missing_credentials()),
        }
        for channel in channels
    ]


# The page -------------------------------------------------------------------------------------------------


def _sales_chart(days: list[tuple[date, int, int]], currency: str) -> dict:
    bars = [
        Bar(value=volume, title=f"{day:%Y-%m-%d}: {count} × {money(volume, currency)}") for day, count, volume in days
    ]
    return bar_chart(bars, width=720, height=160, gap=2)


def _delivery_chart(buckets: list[tuple[str, int]]) -> dict:
    bars = [Bar(value=count, title=f"{label}: {count}", over=label.startswith(">")) for label, count in buckets]
    return bar_chart(bars, width=420, height=120, gap=12) | {"labels": [label for label, _ in buckets]}


def merchant_dashboard(request):
    """The dashboard page (wrapped by admin.site.admin_view in storefront.urls: staff only, second factor first)."""
    if not request.user.has_perm(DASHBOARD_PERMISSION):
        raise PermissionDenied
    now = timezone.now()
    today = timezone.localdate(now)
    today_sales = sales_between(_midnight(today), now + timedelta(seconds=1))
    month_sales = sales_between(_midnight(today.replace(day=1)), now + timedelta(seconds=1))
    currency = month_sales[0].currency if month_sales else "USD"
    per_day = sales_per_day(currency=currency, today=today)
    delivery = delivery_times(since=now - timedelta(days=DELIVERY_DAYS))
    months = dispute_ratio(today=today)
    context = {
        **admin.site.each_context(request),
        "title": _("Dashboard"),
        "today_sales": today_sales,
        "month_sales": month_sales,
        "month_free": free_and_coupon_orders(_midnight(today.replace(day=1)), now + timedelta(seconds=1)),
        "chart_currency": currency,
        "sales_chart": _sales_chart(per_day, currency),
        "waiting": orders_waiting(),
        "delivery": delivery,
        "delivery_days": DELIVERY_DAYS,
        "delivery_chart": _delivery_chart(delivery["buckets"]),
        "months": months,
        "dispute_chart": dispute_chart(months, DISPUTE_THRESHOLDS),
        "thresholds": {network: float(level * 100) for network, level in DISPUTE_THRESHOLDS.items()},
        "warnings": [m for m in months if m.over],
        "open_disputes": Dispute.objects.filter(status=DisputeStatus.NEEDS_RESPONSE).count(),
        "stock_alerts": stock_alerts(),
        "channels": channels_health(now),
        "subscriptions": subscription_figures(now=now),
    }
    return TemplateResponse(request, "admin/storefront/dashboard.html", context)
