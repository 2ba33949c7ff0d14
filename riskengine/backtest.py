"""Replay recent paid orders through today's rules: what would a rule change have decided?

Read-only: nothing is stored (no assessments, no velocity records, not even the settings row).
A replay cannot rebuild the past exactly, so some rules see today's data, not the data at the time:
- velocity rules read the counters as they are now (Redis, or the database fallback), over a window
  ending now, not the counts when each order was paid; orders older than a rule's window look quiet;
- amount-vs-history sees every other paid order of the shopper, including later ones;
- linked-fraud and blocklist rules see today's fraud labels and lists, including what was learnt after
  the order (hindsight: they may flag more than they could have at the time);
- Radar is what Stripe said then, taken from the order's latest paid-stage assessment.
"Before" is that stored assessment, decided by the rules and counters of its day.
"""

import copy
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Exists, JSONField, OuterRef, Subquery
from django.utils import timezone

from orders.models import Order
from riskengine.models import RiskAssessment, RiskDecision, RiskRule, RiskSettings, RuleMode
from riskengine.services import risk_evaluate, risk_rules
from riskengine.signals import signals_for_order


@dataclass(frozen=True)
class BacktestReport:
    orders: int
    # (order number, decision before, decision after, score before, score after), for changed decisions only
    changed: list[tuple[str, str, str, int, int]]
    counts_before: dict[str, int]
    counts_after: dict[str, int]


def _as_active(rule: RiskRule) -> RiskRule:
    """An in-memory copy of a shadow rule that counts; the stored rule is untouched."""
    if rule.mode != RuleMode.SHADOW:
        return rule
    active = copy.copy(rule)
    active.mode = RuleMode.ACTIVE
    return active


def backtest_run(
    *, days: int = 30, rules: list[RiskRule] | None = None, treat_shadow_as_active: bool = True
) -> BacktestReport:
    """Re-decide the paid orders of the last `days` days and report which decisions would change.

    `rules` defaults to every enabled rule; when given, exactly those rules are used (enabled or not).
    With `treat_shadow_as_active`, shadow rules score as if they were active (the question a shadow
    rule asks); otherwise they are evaluated but never decide, as in production.
    """
    chosen = risk_rules() if rules is None else list(rules)
    if treat_shadow_as_active:
        chosen = [_as_active(rule) for rule in chosen]
    thresholds = RiskSettings.objects.filter(pk=1).first() or RiskSettings()  # current() would create the row
    latest = RiskAssessment.objects.filter(order=OuterRef("pk"), stage="paid").order_by("-created_at", "-pk")
    orders = (
        Order.objects.filter(paid_at__gte=timezone.now() - timedelta(days=days))
        .filter(Exists(RiskAssessment.objects.filter(order=OuterRef("pk"), stage="paid")))
        .annotate(
            before_decision=Subquery(latest.values("decision")[:1]),
            before_score=Subquery(latest.values("score")[:1]),
            before_radar=Subquery(latest.values("radar")[:1], output_field=JSONField()),
        )
        .order_by("paid_at", "pk")
    )
    before_counts: Counter[str] = Counter()
    after_counts: Counter[str] = Counter()
    changed: list[tuple[str, str, str, int, int]] = []
    replayed = 0
    for order in orders.iterator(chunk_size=500):
        verdict = risk_evaluate(
            signals_for_order(order, radar=order.before_radar or {}), rules=chosen, thresholds=thresholds
        )
        replayed += 1
        before_counts[order.before_decision] += 1
        after_counts[verdict.decision] += 1
        if verdict.decision != order.before_decision:
            changed.append(
                (order.number, order.before_decision, str(verdict.decision), order.before_score, verdict.score)
            )
    decisions = list(RiskDecision.values)
    return BacktestReport(
        orders=replayed,
        changed=changed,
        counts_before={d: before_counts[d] for d in decisions},
        counts_after={d: after_counts[d] for d in decisions},
    )
