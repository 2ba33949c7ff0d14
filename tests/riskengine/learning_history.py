"""A labelled history, as the shop would have stored it, and the orders the learning tests decide
(tests/riskengine/test_learning.py, test_model_scoring.py; tests/bench.py reads labelled_history too).

Time is pinned (time-machine) at NOW by the autouse fixture clock, and the history lies months before it. The
fixtures (clock, product) are imported into each test module under the names of their functions (clock_fixture,
product_fixture), so that a test's argument does not shadow the import.
"""

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import OuterRef, Subquery

from orders.models import Order, OrderStatus, PaymentState
from riskengine.features import FEATURES
from riskengine.learning import risk_model_train
from riskengine.models import FraudLabel, RiskAssessment, RiskDecision, RiskModel
from storefront.flow.payment import PaymentSignals
from tests.riskengine.test_rules import new_shopper, pay, place_order, service

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RISKY_RADAR = {"outcome_type": "authorized", "risk_level": "elevated", "risk_score": 88}
CALM_RADAR = {"outcome_type": "authorized", "risk_level": "normal", "risk_score": 12}


@pytest.fixture(autouse=True, name="clock")
def clock_fixture(time_machine):
    time_machine.move_to(NOW, tick=False)
    return time_machine


@pytest.fixture(name="product")
def product_fixture():
    return service(price_amount=2000)


def _drawn_features(rng: random.Random, *, fraud: bool) -> dict[str, float]:
    """One order's features: fraud and good orders overlap (no single feature separates them), but fraud runs
    to higher Radar scores, shared cards, disposable mailboxes, mismatched countries and first purchases."""
    features = dict.fromkeys(FEATURES, 0.0)
    score = min(99, max(0, round(rng.gauss(60 if fraud else 22, 16))))
    amount = round(rng.lognormvariate(8.3 if fraud else 7.6, 0.6))
    paid_before = rng.random() < (0.1 if fraud else 0.5)
    features.update(
        amount=float(amount),
        units=float(rng.choice([1, 1, 2, 3, 5] if fraud else [1, 1, 1, 1, 2])),
        lines=1.0,
        radar_score=float(score),
        radar_level=float(score >= 65),
        disposable_email=float(rng.random() < (0.3 if fraud else 0.03)),
        free_mail=float(rng.random() < 0.5),
        email_local_length=float(rng.randint(5, 16)),
        email_digit_share=round(rng.random() * (0.5 if fraud else 0.2), 2),
        ip_card_country_differ=float(rng.random() < (0.45 if fraud else 0.08)),
        paid_before=float(paid_before),
        amount_to_average=round(rng.uniform(0.5, 4 if fraud else 1.5), 2) if paid_before else 0.0,
        distinct_emails_per_card_30d=float(rng.choice([1, 2, 2, 3, 4] if fraud else [1] * 12 + [2])),
        failed_payments_per_card_1h=float(rng.choice([0, 0, 1, 2, 3] if fraud else [0] * 15 + [1])),
        orders_per_email_1h=float(rng.choice([1, 1, 2, 3] if fraud else [1] * 10 + [2])),
    )
    return features


def labelled_history(*, fraud: int, good: int, seed: int = 7, days_ago: tuple[int, int] = (70, 160)) -> None:
    """`fraud` orders labelled fraud (disputes, warnings, review rejections) and `good` delivered ones, each with
    a paid-stage assessment and its stored features, decided between `days_ago` days before NOW."""
    rng = random.Random(seed)
    kinds = [True] * fraud + [False] * good
    rng.shuffle(kinds)
    drawn = [(is_fraud, _drawn_features(rng, fraud=is_fraud), rng.uniform(*days_ago)) for is_fraud in kinds]
    orders = Order.objects.bulk_create(
        Order(
            email=f"h{uuid.uuid4().hex[:12]}@example.com",
            currency="USD",
            subtotal_amount=int(features["amount"]),
            total_amount=int(features["amount"]),
            status=OrderStatus.FULFILLED,  # delivered, then (for the fraud ones) disputed
            payment_state=PaymentState.PAID,
            paid_at=NOW - timedelta(days=days),
        )
        for _, features, days in drawn
    )
    RiskAssessment.objects.bulk_create(
        RiskAssessment(order=order, stage="paid", decision=RiskDecision.APPROVE, features=features)
        for order, (_, features, _) in zip(orders, drawn, strict=True)
    )
    paid_at = Order.objects.filter(pk=OuterRef("order_id")).values("paid_at")[:1]
    RiskAssessment.objects.filter(order__in=orders).update(created_at=Subquery(paid_at))
    sources = ["dispute", "early_fraud_warning", "review"]
    FraudLabel.objects.bulk_create(
        FraudLabel(order=order, source=sources[i % 3], is_fraud=True)
        for i, (order, (is_fraud, _, _)) in enumerate(zip(orders, drawn, strict=True))
        if is_fraud
    )


def trained(*, activate: bool = False, points: int = 60) -> RiskModel:
    """A model trained on a labelled history, adding up to `points` (60 here, so that the model alone can reach
    the review line in these tests; a new shop's default is lower)."""
    labelled_history(fraud=60, good=340)
    result = risk_model_train(actor="test", activate=activate)
    assert result.model is not None, result.message
    RiskModel.objects.filter(pk=result.model.pk).update(points=points)
    result.model.refresh_from_db()
    return result.model


def paid_order(product, shopper, capture, *, radar: dict, **signals) -> Order:
    order = place_order(product, shopper, capture)
    return pay(order, capture, signals=PaymentSignals(card_fingerprint=shopper.card, radar=radar, **signals))


def fraudulent_order(product, capture) -> Order:
    """A disposable mailbox paying with a card two other mailboxes used this month, Radar scoring it 88."""
    card = new_shopper().card
    for _ in range(2):
        paid_order(product, new_shopper(card=card), capture, radar=CALM_RADAR)
    shopper = new_shopper(card=card, email=f"{uuid.uuid4().int % 10**6:06d}tqzx@mailinator.com")
    return paid_order(product, shopper, capture, radar=RISKY_RADAR)


def clean_order(product, capture) -> Order:
    """A person's mailbox name (no digits), their own card, Radar scoring it 12."""
    name = uuid.uuid4().hex[:8].translate(str.maketrans("0123456789", "ghijklmnop"))
    return paid_order(product, new_shopper(email=f"anna.{name}@example.com"), capture, radar=CALM_RADAR)


def paid_assessment(order: Order) -> RiskAssessment:
    return order.risk_assessments.filter(stage="paid").latest("created_at", "pk")


def model_reasons(reasons: list[dict]) -> list[dict]:
    return [reason for reason in reasons if reason["type"] == "model"]
