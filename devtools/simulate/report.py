"""The figures: what the engine did with each labelled order, read back from the database, per pattern.

Per order the engine's decision is the paid-stage assessment (approve, review, decline) or, for an order
that never got paid because the pre-payment screen refused it, "blocked". A fraudulent order is caught
when it was blocked, declined or held and no key had left before that decision; it is delivered when any
of its goods left at any time (approved at once, or released by the reviewer). An honest order is held
(review) or declined (blocked or declined). Figures from the simulated clock are deterministic for a
seed; those from the wall clock (the engine's milliseconds, the run's seconds) are kept under "timing".
"""

from collections import Counter, defaultdict
from dataclasses import dataclass

from django.db.models import Count, Min

from devtools.simulate.records import FRAUD_PATTERNS, GOOD_PATTERNS, PATTERNS
from devtools.simulate.replay import Trace
from fulfillment.models import LicenseKey
from orders.models import Order, OrderEvent, OrderLine, OrderStatus
from riskengine.models import FraudLabel, ReviewCase, RiskAssessment, RiskRule, RiskSettings

ENGINE_DECISIONS = ("approve", "review", "decline", "blocked", "unpaid")


@dataclass(frozen=True)
class Outcome:
    index: int
    pattern: str
    fraud: bool
    engine: str  # approve | review | decline | blocked (pre-payment) | unpaid (never paid otherwise)
    caught: bool
    delivered: bool  # goods left at some time
    delivered_before_decision: bool  # delivered, then held or declined
    keys: int  # keys sold to the order
    status: str  # the order's final status
    review: str  # the review case's final status, if held
    held_hours: float | None  # hold to the reviewer's (or deadline's) decision, simulated
    key_wait_seconds: float | None  # payment to delivery, simulated
    paid_ms: float | None  # the paid-stage assessment's own time (wall clock)
    screen_ms: tuple[float, ...]
    labels: tuple[str, ...]  # FraudLabel sources marked fraud
    errors: tuple[str, ...]


def outcomes_read(traces: list[Trace]) -> list[Outcome]:
    """Each simulated order's fate, from its rows (assessments, lines, keys, events, review case, labels)."""
    ids = [t.order_id for t in traces if t.order_id is not None]
    rows: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        for a in RiskAssessment.objects.filter(order_id__in=chunk).order_by("created_at", "pk").values():
            rows["assessments"][a["order_id"]].append(a)
        delivered = OrderLine.objects.filter(order_id__in=chunk, delivered_at__isnull=False).values("order_id")
        for row in delivered.annotate(first=Min("delivered_at")):
            rows["delivered"][row["order_id"]].append(row["first"])
        keys = LicenseKey.objects.filter(order_line__order_id__in=chunk).values("order_line__order_id")
        for row in keys.annotate(n=Count("pk")):
            rows["keys"][row["order_line__order_id"]].append(row["n"])
        for row in Order.objects.filter(pk__in=chunk).values("pk", "status", "paid_at"):
            rows["order"][row["pk"]].append(row)
        moves = OrderEvent.objects.filter(order_id__in=chunk, type="status_changed", to_status__in=_WATCHED)
        for row in moves.order_by("pk").values("order_id", "to_status"):
            rows["moves"][row["order_id"]].append(row["to_status"])
        cases = ReviewCase.objects.filter(order_id__in=chunk)
        for row in cases.values("order_id", "status", "created_at", "decided_at"):
            rows["cases"][row["order_id"]].append(row)
        labels = FraudLabel.objects.filter(order_id__in=chunk, is_fraud=True).order_by("pk")
        for row in labels.values("order_id", "source"):
            rows["labels"][row["order_id"]].append(row["source"])
    return [_outcome(t, {name: found.get(t.order_id, []) for name, found in rows.items()}) for t in traces]


_WATCHED = (OrderStatus.ON_HOLD, OrderStatus.FULFILLED, OrderStatus.AWAITING_STOCK)


def _outcome(trace: Trace, rows: dict[str, list]) -> Outcome:
    sim = trace.sim
    paid = [a for a in rows.get("assessments", []) if a["stage"] == "paid"]
    screens = [a for a in rows.get("assessments", []) if a["stage"] == "pre_payment"]
    if paid:
        engine = paid[0]["decision"]
    elif trace.blocked:
        engine = "blocked"
    else:
        engine = "unpaid"
    first_delivery = min(rows.get("delivered", []), default=None)
    # Did goods leave before the engine held or refused the order? Read from the order's own history, in the
    # order it was written: a delivery before the first hold. (Never, if the shop is right.)
    moves = rows.get("moves", [])
    if engine in ("review", "decline"):
        hold = moves.index(OrderStatus.ON_HOLD) if OrderStatus.ON_HOLD in moves else len(moves)
        early = hold > 0
    else:
        early = engine != "approve" and first_delivery is not None
    order = (rows.get("order") or [{}])[0]
    cases = rows.get("cases", [])
    case = cases[0] if cases else None
    held_hours = None
    if case and case["decided_at"]:
        held_hours = (case["decided_at"] - case["created_at"]).total_seconds() / 3600
    key_wait = None
    if first_delivery and order.get("paid_at"):
        key_wait = (first_delivery - order["paid_at"]).total_seconds()
    return Outcome(
        index=sim.index,
        pattern=sim.pattern,
        fraud=sim.fraud,
        engine=engine,
        caught=engine in ("review", "decline", "blocked") and not early,
        delivered=first_delivery is not None,
        delivered_before_decision=early,
        keys=sum(rows.get("keys", [])),
        status=order.get("status", ""),
        review=case["status"] if case else "",
        held_hours=held_hours,
        key_wait_seconds=key_wait,
        paid_ms=paid[0]["duration_ms"] if paid else None,
        screen_ms=tuple(a["duration_ms"] for a in screens),
        labels=tuple(rows.get("labels", [])),
        errors=tuple(trace.errors) + ((f"checkout refused: {trace.refused}",) if trace.refused else ()),
    )


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _engine_counts(outcomes: list[Outcome]) -> dict[str, int]:
    found = Counter(o.engine for o in outcomes)
    return {decision: found[decision] for decision in ENGINE_DECISIONS}


def _group_figures(outcomes: list[Outcome]) -> dict:
    fraud = [o for o in outcomes if o.fraud]
    good = [o for o in outcomes if not o.fraud]
    figures: dict = {"orders": len(outcomes)}
    if fraud:
        caught = sum(o.caught for o in fraud)
        delivered = sum(o.delivered for o in fraud)
        figures["fraud"] = {
            "orders": len(fraud),
            "caught": caught,
            "caught_rate": _rate(caught, len(fraud)),
            "delivered": delivered,
            "delivered_rate": _rate(delivered, len(fraud)),
            "released_by_reviewer": sum(o.engine == "review" and o.delivered for o in fraud),
            "engine": _engine_counts(fraud),
        }
    if good:
        held = sum(o.engine == "review" for o in good)
        declined = sum(o.engine in ("decline", "blocked") for o in good)
        figures["good"] = {
            "orders": len(good),
            "held": held,
            "held_rate": _rate(held, len(good)),
            "declined": declined,
            "declined_rate": _rate(declined, len(good)),
            "refused_by_reviewer": sum(o.engine == "review" and o.review in ("rejected", "expired") for o in good),
            "not_delivered": sum(not o.delivered for o in good),
            "engine": _engine_counts(good),
        }
    return figures


def report_build(*, seed: int, params: dict, outcomes: list[Outcome], traces: list[Trace], seconds: float) -> dict:
    """Overall and per-pattern figures, the confusion matrix, latencies, feedback and anything that went wrong."""
    by_pattern = {p: [o for o in outcomes if o.pattern == p] for p in PATTERNS}
    confusion = {
        label: _engine_counts([o for o in outcomes if o.fraud == (label == "fraud")]) for label in ("fraud", "good")
    }
    held = [o.held_hours for o in outcomes if o.held_hours is not None]
    key_wait = [o.key_wait_seconds / 3600 for o in outcomes if not o.fraud and o.key_wait_seconds is not None]
    feedback = Counter(item for t in traces for item in t.feedback_sent)
    skipped = Counter(item for t in traces for item in t.feedback_skipped)
    reviews = Counter(o.review for o in outcomes if o.review)
    anomalies = [
        f"order {o.index} ({o.pattern}): {problem}"
        for o in outcomes
        for problem in (
            *o.errors,
            *(("a key left before the engine's decision",) if o.delivered_before_decision else ()),
            *(("approved but never delivered",) if o.engine == "approve" and not o.delivered else ()),
            *(("declined but not refunded",) if o.engine == "decline" and o.status != "refunded" else ()),
            *(("never paid, yet not refused by the screen",) if o.engine == "unpaid" else ()),
        )
    ]
    settings_row = RiskSettings.objects.filter(pk=1).first() or RiskSettings()
    return {
        "seed": seed,
        "orders": len(outcomes),
        "population": params,
        "rules": [
            {"name": r.name, "type": r.type, "points": r.points, "mode": r.mode, "params": r.params}
            for r in RiskRule.objects.filter(enabled=True).order_by("name")
        ],
        "thresholds": {"review": settings_row.review_threshold, "decline": settings_row.decline_threshold},
        "overall": _group_figures(outcomes),
        "patterns": {p: _group_figures(found) for p, found in by_pattern.items() if found},
        "confusion": confusion,
        "latency": {
            "held_orders": len(held),
            "hold_to_decision_hours": {"p50": _round(percentile(held, 0.5)), "p99": _round(percentile(held, 0.99))},
            "good_payment_to_key_hours": {
                "p50": _round(percentile(key_wait, 0.5)),
                "p99": _round(percentile(key_wait, 0.99)),
            },
        },
        "reviews": dict(sorted(reviews.items())),
        "feedback": {"sent": dict(sorted(feedback.items())), "skipped": dict(sorted(skipped.items()))},
        "anomalies": anomalies,
        "timing": _timing(outcomes, seconds),
    }


def _timing(outcomes: list[Outcome], seconds: float) -> dict:
    paid = [o.paid_ms for o in outcomes if o.paid_ms is not None]
    screens = [ms for o in outcomes for ms in o.screen_ms]
    return {
        "run_seconds": round(seconds, 1),
        "paid_assessment_ms": {"p50": _round(percentile(paid, 0.5)), "p99": _round(percentile(paid, 0.99))},
        "pre_payment_screen_ms": {"p50": _round(percentile(screens, 0.5)), "p99": _round(percentile(screens, 0.99))},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.2f}%"


def report_table(report: dict) -> str:
    """The report as text: fraud and honest orders per pattern, the confusion matrix, latencies, anomalies."""
    lines = [
        f"Risk simulation: seed {report['seed']}, {report['orders']} orders "
        f"(review >= {report['thresholds']['review']}, decline >= {report['thresholds']['decline']}, "
        f"{len(report['rules'])} enabled rules)",
        "",
        f"{'fraud pattern':<20}{'orders':>7}{'caught':>8}{'rate':>9}{'blocked':>9}{'declined':>9}{'held':>6}"
        f"{'delivered':>11}{'rate':>9}",
    ]
    for pattern in (*FRAUD_PATTERNS, "all fraud"):
        group = report["overall"] if pattern == "all fraud" else report["patterns"].get(pattern)
        if not group or "fraud" not in group:
            continue
        f = group["fraud"]
        e = f["engine"]
        lines.append(
            f"{pattern:<20}{f['orders']:>7}{f['caught']:>8}{_pct(f['caught_rate']):>9}{e['blocked']:>9}"
            f"{e['decline']:>9}{e['review']:>6}{f['delivered']:>11}{_pct(f['delivered_rate']):>9}"
        )
    lines += ["", f"{'good pattern':<20}{'orders':>7}{'held':>8}{'rate':>9}{'declined':>10}{'rate':>9}"]
    for pattern in (*GOOD_PATTERNS, "all good"):
        group = report["overall"] if pattern == "all good" else report["patterns"].get(pattern)
        if not group or "good" not in group:
            continue
        g = group["good"]
        lines.append(
            f"{pattern:<20}{g['orders']:>7}{g['held']:>8}{_pct(g['held_rate']):>9}{g['declined']:>10}"
            f"{_pct(g['declined_rate']):>9}"
        )
    lines += ["", "confusion (engine decision)  " + "".join(f"{d:>9}" for d in ENGINE_DECISIONS)]
    for label, row in report["confusion"].items():
        lines.append(f"{label:<29}" + "".join(f"{row[d]:>9}" for d in ENGINE_DECISIONS))
    latency, timing = report["latency"], report["timing"]
    hold, wait = latency["hold_to_decision_hours"], latency["good_payment_to_key_hours"]
    good = report["overall"].get("good", {})
    fraud = report["overall"].get("fraud", {})
    lines += [
        "",
        f"held orders: {latency['held_orders']}, decided after p50 {hold['p50']} h, p99 {hold['p99']} h (simulated); "
        f"reviews {report['reviews']}; the reviewer released {fraud.get('released_by_reviewer', 0)} fraudulent and "
        f"refused {good.get('refused_by_reviewer', 0)} honest order(s)",
        f"honest orders, payment to key: p50 {wait['p50']} h, p99 {wait['p99']} h (simulated)",
        f"feedback sent {report['feedback']['sent']}, skipped {report['feedback']['skipped']}",
        f"engine time: paid assessment p50 {timing['paid_assessment_ms']['p50']} ms, "
        f"p99 {timing['paid_assessment_ms']['p99']} ms; pre-payment screen p50 "
        f"{timing['pre_payment_screen_ms']['p50']} ms, p99 {timing['pre_payment_screen_ms']['p99']} ms",
        f"run time {timing['run_seconds']} s",
    ]
    if report["anomalies"]:
        lines += ["", f"{len(report['anomalies'])} anomalies:", *report["anomalies"][:20]]
    return "\n".join(lines)
