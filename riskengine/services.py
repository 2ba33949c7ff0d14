"""The risk engine's decisions: before payment (stop card testing) and after (release, hold, decline)."""

import logging
import time
from dataclasses import dataclass, field

from django.db import transaction

from orders.models import Order
from riskengine.config import RiskConfig, risk_config
from riskengine.features import LABELS, feature_requests, features_for
from riskengine.models import ModelMode, RiskAssessment, RiskDecision, RiskRule, RiskSettings, RuleMode
from riskengine.rules import EVALUATORS, PRE_PAYMENT_TYPES, Hit, current_config, list_matches, velocity_requests
from riskengine.scoring import LoadedModel
from riskengine.signals import Signals, email_key, identifiers, signals_for_order
from riskengine.velocity import velocity_counts_many, velocity_record

logger = logging.getLogger(__name__)

RADAR_HOLD_OUTCOMES = {"manual_review"}
RADAR_DECLINE_LEVELS = {"highest"}


@dataclass(frozen=True)
class Verdict:
    decision: str
    score: int
    hits: list[Hit]
    shadow_hits: list[Hit]
    features: dict = field(default_factory=dict)  # paid stage: what the model saw (riskengine.features)


def risk_rules(*, types: tuple[str, ...] | None = None, config: RiskConfig | None = None) -> list[RiskRule]:
    """The enabled rules (of these types), from the per-process snapshot."""
    rules = (config or risk_config()).rules
    return [rule for rule in rules if types is None or rule.type in types]


def risk_evaluate(
    signals: Signals,
    *,
    rules: list[RiskRule],
    thresholds: RiskSettings,
    config: RiskConfig | None = None,
    paid: bool = False,
) -> Verdict:
    """Score the signals against the rules (see _evaluate); the per-evaluation memo never outlives it.

    `config` is the snapshot the caller already holds, so an assessment checks it only once. `paid` (the
    paid-stage decision) also computes the order's features and lets the risk models score it.
    """
    signals.memo.clear()
    signals.memo["evaluating"] = True
    if config is not None:
        signals.memo["config"] = config
    try:
        return _evaluate(signals, rules=rules, thresholds=thresholds, paid=paid)
    finally:
        signals.memo.clear()


def _evaluate(signals: Signals, *, rules: list[RiskRule], thresholds: RiskSettings, paid: bool = False) -> Verdict:
    """Score the signals against the rules. Pure apart from the reads the rules make; stores nothing.

    Allowlisted identifiers approve; a hard rule (blocklist) or Radar's 'highest' declines alone;
    otherwise the active rules' points decide against the thresholds (a trusted customer's credit is
    negative; the score stays within 0-100), and Radar's 'manual_review' outcome holds the order for a person
    at least. Radar's 'elevated' level and its risk score count as points (rules.rule_radar): alone they do
    not hold a customer. Shadow rules are evaluated and reported but never change the decision.

    At the paid stage the order's features are computed once the rules have run (sharing what they read),
    and the active risk model adds its points like a rule; the model in shadow is reported, never counted.
    """
    hits: list[Hit] = []
    shadow: list[Hit] = []
    wanted = velocity_requests(rules, signals) + (feature_requests(signals) if paid else [])
    if wanted:
        signals.memo["velocity"] = velocity_counts_many(wanted)
    for rule in rules:
        hit = EVALUATORS[rule.type](rule, signals)
        if hit is not None:
            (shadow if rule.mode == RuleMode.SHADOW else hits).append(hit)
    features = features_for(signals) if paid else {}
    for model in current_config(signals).models if paid else ():
        hit = _model_hit(model, features, order_id=signals.order_id)
        if hit is not None:
            (hits if model.mode == ModelMode.ACTIVE else shadow).append(hit)
    radar = signals.radar or {}
    level, outcome = radar.get("risk_level") or "", radar.get("outcome_type") or ""
    score = max(0, min(100, sum(h.points for h in hits)))  # a trusted customer's credit is negative
    allowed = list_matches(signals, allow=True)
    if allowed:
        hits.append(Hit("allowlist", "allowlist", 0, f"On the allowlist: {', '.join(allowed)}", {"matches": allowed}))
        return Verdict(RiskDecision.APPROVE, score, hits, shadow, features)
    if level in RADAR_DECLINE_LEVELS:
        hits.append(Hit("radar", "radar", 0, f"Stripe Radar risk level {level}", {"risk_level": level}, True))
    if any(h.hard for h in hits) or score >= thresholds.decline_threshold:
        return Verdict(RiskDecision.DECLINE, score, hits, shadow, features)
    if outcome in RADAR_HOLD_OUTCOMES:
        hits.append(Hit("radar", "radar", 0, "Stripe Radar manual review: held for review", dict(radar)))
        return Verdict(RiskDecision.REVIEW, score, hits, shadow, features)
    if score >= thresholds.review_threshold:
        return Verdict(RiskDecision.REVIEW, score, hits, shadow, features)
    return Verdict(RiskDecision.APPROVE, score, hits, shadow, features)


def _model_hit(model: LoadedModel, features: dict, *, order_id: int) -> Hit | None:
    """The model's points (its probability times model.points, rounded) and the features that raised it most,
    or None when it adds nothing. A model that fails to score is logged and left out: the rules still decide."""
    try:
        probability, raised = model.explain(features)
    except Exception:
        logger.exception("order %s: risk model v%s failed to score; left out", order_id, model.version)
        return None
    points = round(model.points * probability)
    if points <= 0:
        return None
    because = ", ".join(f"{LABELS.get(name, name)} {value:g} ({part:+.1f})" for name, value, part in raised)
    return Hit(
        f"Risk model v{model.version}",
        "model",
        points,
        f"model {probability:.2f}: {because or 'no feature above the usual'}",
        {"probability": round(probability, 4), "version": model.version, "top": [name for name, _, _ in raised]},
    )


def _store(order: Order, verdict: Verdict, *, stage: str, radar: dict, started: float) -> RiskAssessment:
    return RiskAssessment.objects.create(
        order=order,
        stage=stage,
        decision=verdict.decision,
        score=verdict.score,
        reasons=[h.as_dict() for h in verdict.hits],
        shadow_reasons=[h.as_dict() for h in verdict.shadow_hits],
        radar=radar,
        features=verdict.features,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )


def risk_check_before_payment(*, order: Order) -> RiskAssessment:
    """Blocklist and velocity only, before the provider is asked for a payment (stops card testing)."""
    started = time.perf_counter()
    config = risk_config()
    signals = signals_for_order(order)
    rules = risk_rules(types=PRE_PAYMENT_TYPES, config=config)
    verdict = risk_evaluate(signals, rules=rules, thresholds=config.thresholds, config=config)
    return _store(order, verdict, stage="pre_payment", radar={}, started=started)


def risk_assess_order(*, order: Order, radar: dict | None = None) -> RiskAssessment:
    """Decide approve / review / decline for a paid order and store the assessment with every reason."""
    started = time.perf_counter()
    config = risk_config()
    signals = signals_for_order(order, radar=radar)
    verdict = risk_evaluate(signals, rules=list(config.rules), thresholds=config.thresholds, config=config, paid=True)
    return _store(order, verdict, stage="paid", radar=radar or {}, started=started)


def risk_record_event(*, order: Order, event: str, card_fingerprint: str = "", attempt: str = "") -> None:
    """Feed the velocity counters: order placed, payment failed (with the declined card), card used.

    'card_used' is recorded at once, not on commit, because the assessment that follows in the same
    transaction must count the card being paid with (as the database fallback does).
    """
    signals = signals_for_order(order)
    ids = identifiers(signals)
    card = card_fingerprint or signals.card_fingerprint
    others = {k: v for k, v in ids.items() if k != "card"}
    mailbox = email_key(signals.email)
    if event == "order_placed":
        shared = {k: v for k, v in others.items() if k != "email"}  # the IP and device the email came from

        def placed() -> None:
            velocity_record(metric="orders", ids=ids, member=str(order.pk))
            velocity_record(metric="distinct_emails", ids=shared, member=mailbox)

        transaction.on_commit(placed, robust=True)
    elif event == "payment_failed":
        member = attempt or f"{order.pk}:{time.time()}"
        failed_ids = {**ids, "card": card} if card else ids

        def record() -> None:
            velocity_record(metric="failed_payments", ids=failed_ids, member=member)
            if card:
                velocity_record(metric="distinct_cards", ids=others, member=card)
                velocity_record(metric="distinct_emails", ids={"card": card}, member=mailbox)

        transaction.on_commit(record, robust=True)
    elif event == "card_used" and card:
        velocity_record(metric="distinct_cards", ids=others, member=card)
        velocity_record(metric="orders", ids={"card": card}, member=str(order.pk))
        velocity_record(metric="distinct_emails", ids={"card": card}, member=mailbox)
