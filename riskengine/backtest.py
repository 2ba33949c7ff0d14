"""Replay a window of orders in time order through one or more configurations: what would each have decided?

Each order is replayed as the shop met it, each step as of its own moment (riskengine.asof): every
pre-payment screen it went through at that screen's time (blocklist and velocity; a refusal blocks the
order, and what followed never happens), then its paid-order assessment at its paid_at, with Stripe Radar as
stored in that assessment. Every read the rules make answers as it would have then: velocity is counted from
PostgreSQL over the window ending at the moment, and the lists, fraud labels, linked orders and the customer's
history hold only what had arrived by then, so an order's own later dispute (which blocklisted its card)
cannot decline it in the replay.

A configuration is a set of rules (each active or shadow, with its points), two thresholds and the risk models
(the active one adds its points to the paid assessment, the one in shadow is reported): the current one, or one
proposed in memory (nothing is stored). A model scores only orders decided after the newest decision it was
trained on: replayed over its own training orders it would judge with hindsight. Read-only: no assessments, no
velocity records, no rows.

What a replay cannot know, and so leaves as it happened:
- what the shop did with an order is what followed the decisions taken then: a hold a proposed configuration
  adds is never reviewed (no reviewer's blocklisting follows it), an order it blocks earlier still left its
  later failed attempts in the counters, and an order the screen refused then but would not refuse now stays
  unpaid (its later attempts never happened): reported as "unpaid";
- an order's billing country is as stored after payment (the screen does not read it).

Scoring (riskengine.backtest_report) is against the labels as they stand now: an order is fraud when it has
a FraudLabel with is_fraud (the rules never see a label before its created_at), good when it was paid and has
none, and unlabelled when it was never paid (no dispute or warning can come); or against a given truth (the
simulator's, which knows every pattern).
"""

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.db.models import Exists, JSONField, OuterRef, Subquery
from django.utils import timezone

from orders.models import Order
from riskengine.asof import as_of
from riskengine.backtest_report import BacktestReport, Comparison, Outcome, comparison_build
from riskengine.config import risk_config, risk_config_as_of
from riskengine.models import FraudLabel, ModelMode, RiskAssessment, RiskDecision, RiskRule, RiskSettings, RuleMode
from riskengine.rules import PRE_PAYMENT_TYPES, velocity_requests
from riskengine.scoring import LoadedModel, models_in_use
from riskengine.services import risk_evaluate
from riskengine.signals import Signals, signals_for_order
from riskengine.velocity import VelocityTimeline, velocity_counts_many

SCREEN_BEFORE = timedelta(microseconds=1)
PROGRESS_EVERY = 500  # moments replayed between two calls of a progress callback

Progress = Callable[[int, int], None]  # (moments replayed, moments in all)

__all__ = [
    "BacktestReport",
    "Comparison",
    "Configuration",
    "backtest_compare",
    "backtest_run",
    "configuration_build",
    "configuration_current",
]


@dataclass(frozen=True)
class Configuration:
    """Rules in their modes, two thresholds and the risk models (the active one adds its points at the paid stage,
    the one in shadow is reported), as stored or proposed; `shadow_as_active` lets shadow rules and a shadow model
    decide (the question shadow asks)."""

    name: str
    rules: tuple[RiskRule, ...]
    review_threshold: int
    decline_threshold: int
    shadow_as_active: bool = False
    models: tuple[LoadedModel, ...] = ()

    def evaluated_rules(self) -> list[RiskRule]:
        return [_as_active(rule) for rule in self.rules] if self.shadow_as_active else list(self.rules)

    def models_at(self, moment: datetime) -> tuple[LoadedModel, ...]:
        """The models that may score an order decided at `moment`: only those trained on decisions before it (a
        model never judges an order it learned from: that would be hindsight). With `shadow_as_active`, the
        shadow model counts in the active one's place (as promoting it would), not beside it."""
        usable = [m for m in self.models if m.trained_to is None or m.trained_to < moment]
        shadow = [m for m in usable if m.mode == ModelMode.SHADOW]
        if self.shadow_as_active and shadow:
            return tuple(dataclasses.replace(m, mode=ModelMode.ACTIVE) for m in shadow)
        return tuple(usable)

    def thresholds(self) -> RiskSettings:
        return RiskSettings(review_threshold=self.review_threshold, decline_threshold=self.decline_threshold)


def _as_active(rule: RiskRule) -> RiskRule:
    """An in-memory copy of a shadow rule that counts; the stored rule is untouched."""
    if rule.mode != RuleMode.SHADOW:
        return rule
    active = copy.copy(rule)
    active.mode = RuleMode.ACTIVE
    return active


def configuration_build(
    *,
    name: str,
    rules: list[RiskRule],
    review_threshold: int,
    decline_threshold: int,
    shadow_as_active: bool = False,
    models: tuple[LoadedModel, ...] | None = None,
) -> Configuration:
    """A configuration of these rules (in memory, never saved: each is evaluated in its own mode), scored with
    `models` or, by default, with the risk models in use now (a proposal changes rules and thresholds)."""
    models = models_in_use() if models is None else models
    return Configuration(name, tuple(rules), review_threshold, decline_threshold, shadow_as_active, tuple(models))


def configuration_current(*, name: str = "current", shadow_as_active: bool = False) -> Configuration:
    """The enabled rules and the thresholds as stored (without creating the settings row)."""
    thresholds = RiskSettings.objects.filter(pk=1).first() or RiskSettings()
    return configuration_build(
        name=name,
        rules=list(RiskRule.objects.filter(enabled=True).order_by("name")),
        review_threshold=thresholds.review_threshold,
        decline_threshold=thresholds.decline_threshold,
        shadow_as_active=shadow_as_active,
    )


@dataclass
class _Replayed:
    """One order of the window, as the replay needs it."""

    order: Order
    paid_at: datetime | None
    radar: dict
    screens: list[datetime]  # its pre-payment screens' moments, in order
    recorded: str  # what the shop decided then: approve | review | decline | blocked | unpaid
    recorded_score: int
    signals: Signals | None = None
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # per configuration


def _window_orders(start: datetime, end: datetime, *, screens: bool) -> list[_Replayed]:
    """Paid orders with a paid assessment paid in [start, end), and (with screens) orders the screen refused
    in it; each with its screens' moments and the decision recorded then."""
    paid_assessments = RiskAssessment.objects.filter(order=OuterRef("pk"), stage="paid")
    latest = paid_assessments.order_by("-created_at", "-pk")
    paid = (
        Order.objects.filter(paid_at__gte=start, paid_at__lt=end)
        .filter(Exists(paid_assessments))
        .annotate(
            recorded=Subquery(latest.values("decision")[:1]),
            recorded_score=Subquery(latest.values("score")[:1]),
            radar=Subquery(latest.values("radar")[:1], output_field=JSONField()),
        )
    )
    found = [_Replayed(o, o.paid_at, o.radar or {}, [], o.recorded, o.recorded_score) for o in paid.iterator(2000)]
    if not screens:
        return found
    refused = RiskAssessment.objects.filter(
        order=OuterRef("pk"), stage="pre_payment", decision=RiskDecision.DECLINE, created_at__gte=start
    ).filter(created_at__lt=end)
    blocked = Order.objects.filter(paid_at__isnull=True).filter(Exists(refused))
    found += [_Replayed(o, None, {}, [], "blocked", 0) for o in blocked.iterator(2000)]
    by_id = {r.order.pk: r for r in found}
    ids = list(by_id)
    for start_at in range(0, len(ids), 5000):
        moments = RiskAssessment.objects.filter(stage="pre_payment", order_id__in=ids[start_at : start_at + 5000])
        for order_id, moment in moments.order_by("created_at", "pk").values_list("order_id", "created_at"):
            by_id[order_id].screens.append(moment)
    return found


def _fraud_order_ids(ids: list[int]) -> set[int]:
    found: set[int] = set()
    for start in range(0, len(ids), 5000):
        labels = FraudLabel.objects.filter(is_fraud=True, order_id__in=ids[start : start + 5000])
        found |= set(labels.values_list("order_id", flat=True))
    return found


def _replay(
    orders: list[_Replayed], configurations: list[Configuration], *, screens: bool, progress: Progress | None = None
) -> None:
    """Decide every order under every configuration, event by event in time order, each as of its moment;
    `progress` hears (replayed, total) before the first, every PROGRESS_EVERY moments and after the last."""
    events = [(r.paid_at, 1, i) for i, r in enumerate(orders) if r.paid_at is not None]
    if screens:  # read just before the screen's stamp: the attempt it lets through (paid or failed) bears the
        # same time when the clock stands still (the simulator), and must not count in its own screen
        events += [(moment - SCREEN_BEFORE, 0, i) for i, r in enumerate(orders) for moment in r.screens]
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    base = risk_config()
    rules = {c.name: c.evaluated_rules() for c in configurations}
    screen_rules = {name: [r for r in found if r.type in PRE_PAYMENT_TYPES] for name, found in rules.items()}
    thresholds = {c.name: c.thresholds() for c in configurations}
    shared: dict = {}
    if events:  # the counters' rows in memory once, rather than queries at every moment
        shared[VelocityTimeline] = VelocityTimeline(start=events[0][0], end=events[-1][0])
    if progress:
        progress(0, len(events))
    for done, (moment, paid, i) in enumerate(events, start=1):
        replayed = orders[i]
        if replayed.signals is None:
            replayed.signals = signals_for_order(replayed.order, radar=replayed.radar)
        if paid:
            signals, chosen = replayed.signals, rules
        else:  # before payment the order has no card (the payment writes it) and no Radar
            signals = replace(replayed.signals, card_fingerprint="", card_country="", radar={}, memo={})
            chosen = screen_rules
        deciding = [c for c in configurations if getattr(replayed.outcomes.get(c.name), "decision", "") != "blocked"]
        with as_of(moment, shared=shared):
            snapshot = risk_config_as_of(moment, base=base)
            models = {c.name: c.models_at(moment) if paid else () for c in deciding}
            # every configuration's counts at this moment in one batch (the as-of block keeps them)
            velocity_counts_many([r for c in deciding for r in velocity_requests(chosen[c.name], signals)])
            for configuration in deciding:  # an order refused at an earlier screen goes no further
                name = configuration.name
                before = replayed.outcomes.get(name)
                verdict = risk_evaluate(
                    signals,
                    rules=chosen[name],
                    thresholds=thresholds[name],
                    config=dataclasses.replace(snapshot, models=models[name]),
                    paid=bool(models[name]),  # the paid stage's features, for the models to score
                )
                hits = {h.rule: h.type for h in verdict.hits}
                shadow = {h.rule: h.type for h in verdict.shadow_hits}
                if before is not None:
                    hits, shadow = before.hits | hits, before.shadow_hits | shadow
                if paid:
                    decision = str(verdict.decision)
                else:
                    decision = "blocked" if verdict.decision == RiskDecision.DECLINE else "unpaid"
                replayed.outcomes[name] = Outcome(decision, verdict.score, hits, shadow)
        if progress and (done % PROGRESS_EVERY == 0 or done == len(events)):
            progress(done, len(events))
    for replayed in orders:
        for configuration in configurations:
            if configuration.name not in replayed.outcomes:
                replayed.outcomes[configuration.name] = Outcome("unpaid", 0, {}, {})


def _window(days: int | None, start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = end or timezone.now()
    return start or end - timedelta(days=days or 30), end


def backtest_compare(
    *,
    configurations: list[Configuration],
    days: int | None = 30,
    start: datetime | None = None,
    end: datetime | None = None,
    truth: dict[str, bool | None] | None = None,
    patterns: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Replay the window's orders (pre-payment screens included) through each configuration and score them.

    The window is [start, end), by default the last `days` days. `truth` (order number -> fraud) replaces
    the labels; `patterns` (order number -> pattern name) adds per-pattern figures. `progress`, if given, is
    called with (moments replayed, moments in all) now and then: each payment and each screen is a moment.
    """
    names = [c.name for c in configurations]
    if len(set(names)) != len(names):
        raise ValueError("each configuration needs a name of its own")
    start, end = _window(days, start, end)
    orders = _window_orders(start, end, screens=True)
    orders.sort(key=lambda r: (r.paid_at or (r.screens[0] if r.screens else end), r.order.pk))
    _replay(orders, configurations, screens=True, progress=progress)
    if truth is None:
        fraud_ids = _fraud_order_ids([r.order.pk for r in orders])
        truth = {r.order.number: r.order.pk in fraud_ids if r.paid_at else None for r in orders}
    return comparison_build(
        configurations=configurations,
        rows=[(r.order.number, r.recorded, r.outcomes) for r in orders],
        truth=truth,
        patterns=patterns or {},
        start=start,
        end=end,
    )


def backtest_run(
    *, days: int = 30, rules: list[RiskRule] | None = None, treat_shadow_as_active: bool = True
) -> BacktestReport:
    """Re-decide the paid orders of the last `days` days, each as of its payment, and report which decisions
    would change (the paid-order assessment only; backtest_compare replays the screens too).

    `rules` defaults to every enabled rule; when given, exactly those rules are used (enabled or not).
    With `treat_shadow_as_active`, shadow rules score as if they were active; otherwise they are evaluated
    but never decide, as in production. The thresholds are the stored ones.
    """
    current = configuration_current(shadow_as_active=treat_shadow_as_active)
    configuration = current if rules is None else replace(current, rules=tuple(rules))
    start, end = _window(days, None, None)
    orders = _window_orders(start, end, screens=False)
    orders.sort(key=lambda r: (r.paid_at, r.order.pk))
    _replay(orders, [configuration], screens=False)
    counts_before = dict.fromkeys(RiskDecision.values, 0)
    counts_after = dict.fromkeys(RiskDecision.values, 0)
    changed = []
    for replayed in orders:
        after = replayed.outcomes[configuration.name]
        counts_before[replayed.recorded] += 1
        counts_after[after.decision] += 1
        if after.decision != replayed.recorded:
            changed.append(
                (replayed.order.number, replayed.recorded, after.decision, replayed.recorded_score, after.score)
            )
    return BacktestReport(orders=len(orders), changed=changed, counts_before=counts_before, counts_after=counts_after)
