"""Reads for the risk metrics page: decision rates per day, rule hits and precision, dispute ratio per month.

Plain selectors over the database; the page only lays them out. Days and months are in the site's time zone.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from fractions import Fraction

from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone

from orders.models import Order
from riskengine.models import FraudLabel, RiskAssessment, RiskDecision, RiskRule, RuleMode

# Card-network early-warning levels for the monthly dispute ratio (disputes / sales that month).
DISPUTE_THRESHOLDS: dict[str, Fraction] = {
    "Visa": Fraction(9, 1000),  # 0.9%
    "Mastercard": Fraction(10, 1000),  # 1.0%
}
DISPUTE_SOURCE = "dispute"


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class DecisionCounts:
    """How many paid orders the engine approved, held for review and declined (one day or a whole window)."""

    day: date | None
    approve: int = 0
    review: int = 0
    decline: int = 0

    @property
    def total(self) -> int:
        return self.approve + self.review + self.decline

    @property
    def approve_rate(self) -> float | None:
        return _rate(self.approve, self.total)

    @property
    def review_rate(self) -> float | None:
        return _rate(self.review, self.total)

    @property
    def decline_rate(self) -> float | None:
        return _rate(self.decline, self.total)


def decisions_per_day(*, days: int = 30, today: date | None = None) -> list[DecisionCounts]:
    """The paid-stage decisions of each of the last `days` days (today included), oldest first, empty days as zero.

    The pre-payment screen is left out: it only ever approves or blocks, and would count paid orders twice.
    """
    today = today or timezone.localdate()
    first = today - timedelta(days=days - 1)
    rows = (
        RiskAssessment.objects.filter(
            stage="paid", created_at__gte=_start_of(first), created_at__lt=_start_of(today + timedelta(days=1))
        )
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .values("day", "decision")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts: dict[date, dict[str, int]] = defaultdict(dict)
    for row in rows:
        counts[row["day"]][row["decision"]] = row["n"]
    result = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        found = counts.get(day, {})
        result.append(
            DecisionCounts(
                day=day,
                approve=found.get(RiskDecision.APPROVE, 0),
                review=found.get(RiskDecision.REVIEW, 0),
                decline=found.get(RiskDecision.DECLINE, 0),
            )
        )
    return result


def decisions_total(per_day: list[DecisionCounts]) -> DecisionCounts:
    """The window's totals, from decisions_per_day."""
    return DecisionCounts(
        day=None,
        approve=sum(d.approve for d in per_day),
        review=sum(d.review for d in per_day),
        decline=sum(d.decline for d in per_day),
    )


@dataclass(frozen=True)
class RuleHits:
    """One rule's record: orders it fired on, how many of those were later labelled, and how many as fraud."""

    rule: str
    type: str
    mode: str  # active | shadow: how the rule was running when it fired
    hits: int
    labelled: int
    fraud: int

    @property
    def precision(self) -> float | None:
        """Share of its labelled hits confirmed as fraud; None while none of its hits has a label."""
        return _rate(self.fraud, self.labelled)


def rule_hit_stats(*, days: int = 90, now: datetime | None = None) -> list[RuleHits]:
    """Every rule's hits over the last `days` days and its precision against the fraud labels.

    A hit is an order the rule fired on (in any of the order's assessments, so the pre-payment screen and
    the paid assessment count once). An order is labelled when it has any FraudLabel, and fraud when any
    of its labels says so. Rules that never fired are listed with zero hits. Most hits first.
    """
    now = now or timezone.now()
    hit_orders: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    assessments = RiskAssessment.objects.filter(created_at__gte=now - timedelta(days=days), created_at__lte=now)
    for order_id, reasons, shadow_reasons in assessments.values_list("order_id", "reasons", "shadow_reasons"):
        for mode, hits in ((RuleMode.ACTIVE, reasons), (RuleMode.SHADOW, shadow_reasons)):
            for hit in hits or []:
                hit_orders[(hit.get("rule", ""), hit.get("type", ""), str(mode))].add(order_id)
    for rule in RiskRule.objects.all():
        hit_orders.setdefault((rule.name, rule.type, rule.mode), set())
    every_order = set().union(*hit_orders.values()) if hit_orders else set()
    labelled: set[int] = set()
    fraud: set[int] = set()
    for order_id, is_fraud in FraudLabel.objects.filter(order_id__in=every_order).values_list("order_id", "is_fraud"):
        labelled.add(order_id)
        if is_fraud:
            fraud.add(order_id)
    stats = [
        RuleHits(
            rule=name,
            type=type_,
            mode=mode,
            hits=len(orders),
            labelled=len(orders & labelled),
            fraud=len(orders & fraud),
        )
        for (name, type_, mode), orders in hit_orders.items()
    ]
    return sorted(stats, key=lambda s: (-s.hits, s.rule, s.mode))


@dataclass(frozen=True)
class MonthDisputes:
    """One calendar month: disputed orders against paid orders, and which network thresholds it reaches."""

    month: date  # the first of the month
    paid_orders: int
    disputes: int

    @property
    def ratio(self) -> Fraction | None:
        return Fraction(self.disputes, self.paid_orders) if self.paid_orders else None

    @property
    def percent(self) -> float | None:
        return float(self.ratio * 100) if self.ratio is not None else None

    @property
    def over(self) -> list[str]:
        """The networks whose early-warning level this month's ratio is at or above."""
        if self.ratio is None:
            return ["Visa", "Mastercard"] if self.disputes else []
        return [network for network, level in DISPUTE_THRESHOLDS.items() if self.ratio >= level]


def _first_of_month(day: date, back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def dispute_ratio_by_month(*, months: int = 6, today: date | None = None) -> list[MonthDisputes]:
    """Orders disputed in each of the last `months` calendar months (this one included) per order paid that month.

    A dispute is a FraudLabel with source 'dispute', counted once per order, in the month the dispute
    arrived; paid orders are those whose payment cleared that month. Oldest month first.
    """
    today = today or timezone.localdate()
    result = []
    for back in range(months - 1, -1, -1):
        start = _first_of_month(today, back)
        end = _first_of_month(start, -1)
        since, until = _start_of(start), _start_of(end)
        paid = Order.objects.filter(paid_at__gte=since, paid_at__lt=until).count()
        disputes = (
            FraudLabel.objects.filter(source=DISPUTE_SOURCE, created_at__gte=since, created_at__lt=until)
            .values("order_id")
            .distinct()
            .count()
        )
        result.append(MonthDisputes(month=start, paid_orders=paid, disputes=disputes))
    return result
