"""The model that learns from the shop's own outcomes: features kept as they were at each decision, training
that refuses too few labels, a model that learns, shadow that never decides, active that counts and explains,
versions promoted and retired, and decisions made with Redis away.

Time is pinned (time-machine) at NOW; the labelled history lies months before it. Velocity counters are per
test (tests/conftest.py) and identifiers per shopper (new_shopper), as in test_rules.
"""

import pickle
import random
import re
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery
from django.urls import reverse

from orders.models import Order, OrderStatus, PaymentState
from riskengine import selectors, velocity
from riskengine.config import risk_config
from riskengine.features import FEATURES, LABELS, features_for
from riskengine.learning import (
    ModelError,
    model_status,
    risk_model_promote,
    risk_model_retire,
    risk_model_train,
)
from riskengine.models import FraudLabel, ModelMode, RiskAssessment, RiskDecision, RiskModel
from riskengine.services import risk_assess_order, risk_check_before_payment
from riskengine.signals import signals_for_order
from riskengine.tasks import risk_model_retrain
from storefront.flow.payment import PaymentSignals
from tests.riskengine.test_rules import (  # noqa: F401  (redis_down is a fixture)
    new_shopper,
    pay,
    place_order,
    redis_down,
    service,
    use_only_rules,
    use_shipped_rules,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RISKY_RADAR = {"outcome_type": "authorized", "risk_level": "elevated", "risk_score": 88}
CALM_RADAR = {"outcome_type": "authorized", "risk_level": "normal", "risk_score": 12}


@pytest.fixture(autouse=True)
def clock(time_machine):
    time_machine.move_to(NOW, tick=False)
    return time_machine


@pytest.fixture
def product():
    return service(price_amount=2000)


# --- a labelled history, as the shop would have stored it ---------------------------------------------------


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


def trained(*, activate: bool = False) -> RiskModel:
    labelled_history(fraud=60, good=340)
    result = risk_model_train(actor="test", activate=activate)
    assert result.model is not None, result.message
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


# --- features: stored at the decision, as they were then ----------------------------------------------------


def test_features_are_stored_with_the_decision_and_keep_what_was_known_then(
    product, clock, django_capture_on_commit_callbacks
):
    # Given a shopper's first order, paid with Radar's word and a card from another country than the IP
    use_shipped_rules()
    shopper = new_shopper(ip="81.2.69.160")  # a British address
    order = paid_order(product, shopper, django_capture_on_commit_callbacks, radar=CALM_RADAR, card_country="US")

    # When it is decided, its features are stored: every one of the model's, as they stood
    stored = paid_assessment(order).features
    assert set(stored) == set(FEATURES)
    assert stored["amount"] == 2000 and stored["units"] == 1 and stored["radar_score"] == 12
    assert stored["ip_card_country_differ"] == 1 and stored["paid_before"] == 0
    assert stored["orders_per_email_1h"] == 1 and stored["linked_fraud_weight"] == 0

    # And later the same shopper buys twice more and the order turns out linked to fraud
    clock.shift(timedelta(minutes=10))
    for _ in range(2):
        paid_order(product, shopper, django_capture_on_commit_callbacks, radar=CALM_RADAR)
    linked = place_order(product, new_shopper(device=shopper.device))
    FraudLabel.objects.create(order=linked, source="dispute", is_fraud=True)

    # Then the stored features are unchanged, though the same order read today looks different
    assert paid_assessment(order).features == stored
    today = features_for(signals_for_order(order, radar=CALM_RADAR))
    assert today["orders_per_email_1h"] == 3 and today["paid_before"] == 1 and today["linked_fraud_weight"] == 1


def test_the_features_read_nothing_the_rules_already_read(product, monkeypatch, django_capture_on_commit_callbacks):
    # Given the shipped rules (velocity, history and linked-fraud among them) and a fraud order sharing a device
    use_shipped_rules()
    shopper = new_shopper()
    linked = place_order(product, new_shopper(device=shopper.device), django_capture_on_commit_callbacks)
    FraudLabel.objects.create(order=linked, source="dispute", is_fraud=True)
    order = place_order(product, shopper, django_capture_on_commit_callbacks)
    calls = {"velocity": 0, "links": 0}

    def counting(name, function):
        def counted(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return counted

    counted = counting("velocity", velocity.velocity_counts_many)
    for where in ("riskengine.velocity", "riskengine.services", "riskengine.features"):
        monkeypatch.setattr(f"{where}.velocity_counts_many", counted)
    monkeypatch.setattr(selectors, "fraud_links", counting("links", selectors.fraud_links))
    monkeypatch.setattr("riskengine.rules.fraud_links", selectors.fraud_links)
    monkeypatch.setattr("riskengine.features.fraud_links", selectors.fraud_links)

    # When the paid order is decided
    pay(order, django_capture_on_commit_callbacks, signals=PaymentSignals(card_fingerprint=shopper.card))

    # Then one velocity round trip served rules and features, one walk found the fraud link for both
    assert calls == {"velocity": 1, "links": 1}
    stored = paid_assessment(order)
    assert stored.features["linked_fraud_weight"] == 1 and stored.features["orders_per_device_24h"] == 2
    assert any(reason["type"] == "linked_fraud" for reason in stored.reasons)


def test_the_check_before_payment_stores_no_features_and_asks_no_model(product):
    # Given an active model
    trained(activate=True)

    # When an order is screened before payment
    assessment = risk_check_before_payment(order=place_order(product, new_shopper()))

    # Then it carries no features and no model reason
    assert assessment.features == {}
    assert model_reasons(assessment.reasons + assessment.shadow_reasons) == []


# --- training --------------------------------------------------------------------------------------------------


def test_training_refuses_too_few_labels_and_says_why(product, django_capture_on_commit_callbacks):
    # Given a young shop: 12 fraud labels and 200 settled good orders (30 and 300 are needed)
    labelled_history(fraud=12, good=200)

    # When a model is trained
    result = risk_model_train(actor="test")

    # Then nothing is stored, and the result and the status page say what is missing
    assert result.model is None
    assert result.message == (
        "Not trained: 12 fraud labels of the 30 needed and 200 good orders (delivered, undisputed for 60 days) "
        "of the 300 needed. The rules decide alone."
    )
    assert not RiskModel.objects.exists()
    assert model_status() == (
        "No model yet: 12 fraud labels of the 30 needed and 200 good orders (delivered, undisputed for 60 days) "
        "of the 300 needed. The rules decide alone."
    )
    with pytest.raises(CommandError, match="12 fraud labels of the 30 needed"):
        call_command("risk_train")

    # And a paid order is decided by the rules alone
    use_only_rules()
    assessment = paid_assessment(clean_order(product, django_capture_on_commit_callbacks))
    assert model_reasons(assessment.reasons + assessment.shadow_reasons) == []


def test_only_settled_undisputed_delivered_orders_count_as_good():
    # Given 320 good orders decided long ago, and orders that must not count as good
    labelled_history(fraud=30, good=320)
    labelled_history(fraud=0, good=40, seed=8, days_ago=(1, 50))  # paid within the settle period
    refunded = Order.objects.filter(paid_at__lt=NOW - timedelta(days=70)).exclude(fraud_labels__is_fraud=True)[:5]
    Order.objects.filter(pk__in=[o.pk for o in refunded]).update(status=OrderStatus.REFUNDED)

    # When the labels are counted for training
    result = risk_model_train(actor="test")

    # Then the recent and refunded ones are left out (315 good), and the fraud ones are all in
    assert result.model is not None
    assert (result.model.fraud_count, result.model.good_count) == (30, 315)


def test_a_trained_model_learns_the_shops_fraud(product, django_capture_on_commit_callbacks):
    # Given 60 fraud and 340 good orders, decided and labelled over the last months
    # When a model is trained
    model = trained()

    # Then it is stored in shadow, measured on the newest fifth of each class, and separates them well
    assert model.mode == ModelMode.SHADOW
    assert (model.fraud_count, model.good_count) == (60, 340)
    assert (model.metrics["holdout_fraud"], model.metrics["holdout_good"]) == (12, 68)
    assert model.metrics["auc"] > 0.8
    assert model.feature_names == list(FEATURES)
    assert model.trained_to <= NOW - timedelta(days=70)

    # And a later obviously fraudulent order gets a far higher probability than a clean one
    use_only_rules()
    (scorer,) = risk_config().models
    risky = scorer.probability(paid_assessment(fraudulent_order(product, django_capture_on_commit_callbacks)).features)
    calm_features = paid_assessment(clean_order(product, django_capture_on_commit_callbacks)).features
    calm = scorer.probability(calm_features)
    assert risky > 0.8 > 0.2 > calm, scorer.explain(calm_features)


@pytest.mark.parametrize(("fraud", "good", "method"), [(60, 340, "sigmoid"), (120, 1000, "isotonic")])
def test_the_stored_model_scores_as_the_fitted_estimator_does(fraud, good, method):
    # Given a labelled history small enough for a sigmoid calibration, or large enough for an isotonic one
    labelled_history(fraud=fraud, good=good)

    # When a model is trained
    model = risk_model_train(actor="test").model

    # Then the parameters scoring reads give the fitted estimator's own probabilities, on any order
    assert model.metrics["calibration"] == model.parameters["calibration"]["method"] == method
    estimator = pickle.loads(bytes(model.estimator))
    rows = np.array([[f[name] for name in FEATURES] for f in RiskAssessment.objects.values_list("features", flat=True)])
    rows = np.vstack([rows, rows * 3, np.zeros((1, len(FEATURES)))])  # beyond the training range too
    (scorer,) = risk_config().models
    assert np.allclose(scorer.probabilities(rows), estimator.predict_proba(rows)[:, 1], atol=1e-9)


def test_the_command_trains_and_activates(capsys):
    # Given enough labels
    labelled_history(fraud=60, good=340)

    # When staff train with --activate
    call_command("risk_train", "--activate")

    # Then the new version is active and the command printed its figures
    model = RiskModel.objects.get()
    assert model.mode == ModelMode.ACTIVE
    printed = capsys.readouterr().out
    assert f"Model v{model.version} stored (active): AUC {model.metrics['auc']:.3f}" in printed
    assert "Trained on 60 fraud and 340 good orders" in printed


def test_the_weekly_task_trains_only_when_new_labels_arrived(clock):
    # Given enough labels, and a first weekly run
    labelled_history(fraud=60, good=340)
    first = risk_model_retrain()
    assert first.startswith("Model v")

    # When it runs again with nothing new, then after new labels arrived
    again = risk_model_retrain()
    labelled_history(fraud=5, good=20, seed=9)
    later = risk_model_retrain()

    # Then the second run stores nothing, the third a new shadow version that retires the previous one
    newest, previous = RiskModel.objects.order_by("-version")[:2]
    assert again == f"Not trained: no new labels since model v{previous.version}."
    assert later.startswith(f"Model v{newest.version} stored (shadow)")
    assert (newest.mode, previous.mode) == (ModelMode.SHADOW, ModelMode.RETIRED)
    assert (newest.fraud_count, newest.good_count) == (65, 360)


# --- deciding with a model ----------------------------------------------------------------------------------


def test_a_shadow_model_is_reported_and_never_decides(product, django_capture_on_commit_callbacks):
    # Given a model in shadow and no rules
    model = trained()
    use_only_rules()

    # When an obviously fraudulent order is decided
    order = fraudulent_order(product, django_capture_on_commit_callbacks)
    with_shadow = paid_assessment(order)

    # Then the model's view is in the shadow reasons, and the decision is the rules' alone: the same as with no
    # model at all
    (hit,) = model_reasons(with_shadow.shadow_reasons)
    assert hit["rule"] == f"Risk model v{model.version}" and hit["points"] > 0
    assert hit["reason"].startswith(f"model {hit['values']['probability']:.2f}: ")
    assert model_reasons(with_shadow.reasons) == []
    assert f"Model v{model.version} runs in shadow" in model_status()
    risk_model_retire(version=model.version, actor="test")
    without = risk_assess_order(order=order, radar=RISKY_RADAR)
    assert model_reasons(without.shadow_reasons) == []
    assert (with_shadow.decision, with_shadow.score) == (without.decision, without.score)
    assert model_status() == "No model in use (every version is retired): the rules decide alone."


def test_an_active_model_adds_its_points_and_names_the_features_behind_them(
    product, django_capture_on_commit_callbacks
):
    # Given the trained model promoted to active, and no rules (review at 40, decline at 80)
    model = trained(activate=True)
    use_only_rules(review=40, decline=80)

    # When an obviously fraudulent order and a clean one are decided
    risky = paid_assessment(fraudulent_order(product, django_capture_on_commit_callbacks))
    calm = paid_assessment(clean_order(product, django_capture_on_commit_callbacks))

    # Then the model's points (60 at probability 1) are the score, and its reason names what drove it
    (hit,) = model_reasons(risky.reasons)
    probability = hit["values"]["probability"]
    assert hit["points"] == round(60 * probability) == risky.score
    assert risky.decision == RiskDecision.REVIEW and probability > 0.8
    top = hit["values"]["top"]
    assert len(top) == 3 and {"radar_score", "radar_level"} & set(top)
    named = [rf"{re.escape(LABELS[name])} {risky.features[name]:g} \(\+\d+\.\d\)" for name in top]
    assert re.fullmatch(rf"model {probability:.2f}: " + ", ".join(named), hit["reason"]), hit["reason"]
    assert calm.decision == RiskDecision.APPROVE and calm.score < 10
    assert model_status().startswith(f"Model v{model.version} is active: it adds up to 60 points")


def test_promoting_a_model_retires_the_active_one_and_the_next_order_uses_it(
    product, django_capture_on_commit_callbacks
):
    # Given an active model and a newer one in shadow, and an order scored by the active one
    first = trained(activate=True)
    use_only_rules()
    second = risk_model_train(actor="test").model
    scored = model_reasons(paid_assessment(fraudulent_order(product, django_capture_on_commit_callbacks)).reasons)
    assert [hit["rule"] for hit in scored] == [f"Risk model v{first.version}"]

    # When staff promote the newer one
    risk_model_promote(version=second.version, actor="staff:test")

    # Then the first is retired, the second active, and the very next order is scored by the second
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.mode, second.mode) == (ModelMode.RETIRED, ModelMode.ACTIVE)
    assert first.mode_changed_by == "staff:test"
    assessment = paid_assessment(fraudulent_order(product, django_capture_on_commit_callbacks))
    assert [r["rule"] for r in model_reasons(assessment.reasons)] == [f"Risk model v{second.version}"]
    assert model_reasons(assessment.shadow_reasons) == []
    with pytest.raises(ModelError, match="already active"):
        risk_model_promote(version=second.version, actor="test")
    with pytest.raises(IntegrityError), transaction.atomic():  # never two active models, whoever writes
        RiskModel.objects.filter(pk=first.pk).update(mode=ModelMode.ACTIVE)


def test_changing_the_points_in_admin_counts_from_the_next_order(product, django_capture_on_commit_callbacks):
    # Given an active model
    model = trained(activate=True)
    use_only_rules()
    before = model_reasons(paid_assessment(fraudulent_order(product, django_capture_on_commit_callbacks)).reasons)

    # When staff lower its points to 20
    model.points = 20
    model.save()

    # Then the next order gets a third of the points for the same kind of evidence
    (hit,) = model_reasons(paid_assessment(fraudulent_order(product, django_capture_on_commit_callbacks)).reasons)
    assert before[0]["points"] > 40 and hit["points"] == round(20 * hit["values"]["probability"])


@pytest.mark.usefixtures("redis_down")
def test_with_redis_down_the_order_is_decided_with_features_from_the_database(
    product, django_capture_on_commit_callbacks
):
    # Given an active model, and Redis unreachable while a shopper orders twice
    trained(activate=True)
    use_only_rules(review=40, decline=80)
    # (a mailbox of six digits in ten, whatever the run: a random one's share of digits moved the model's score)
    shopper = new_shopper(email=f"{uuid.uuid4().int % 10**6:06d}tqzx@mailinator.com")
    paid_order(product, shopper, django_capture_on_commit_callbacks, radar=CALM_RADAR)

    # When the second order is decided
    assessment = paid_assessment(paid_order(product, shopper, django_capture_on_commit_callbacks, radar=RISKY_RADAR))

    # Then it is decided, its velocity features counted in PostgreSQL, and the model scored it
    assert velocity._redis() is None  # the breaker is open: the counts came from the database
    assert assessment.features["orders_per_email_1h"] == 2 and assessment.features["orders_per_card_24h"] == 2
    assert assessment.features["disposable_email"] == 1 and assessment.features["paid_before"] == 1
    (hit,) = model_reasons(assessment.reasons)
    assert assessment.score == hit["points"] > 40, assessment.features
    assert assessment.decision == RiskDecision.REVIEW


# --- admin ----------------------------------------------------------------------------------------------------


@pytest.fixture
def merchant_client(client):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("merchant", "m@example.com", "pw-merchant-1"))
    return client


def test_admin_lists_versions_with_their_figures_and_promotes_one(merchant_client):
    # Given an active model and a newer one in shadow
    first = trained(activate=True)
    second = risk_model_train(actor="test").model
    changelist = reverse("admin:riskengine_riskmodel_changelist")

    # When staff open the list
    page = merchant_client.get(changelist).content.decode()

    # Then it says which model counts and which runs in shadow, with each version's AUC
    assert f"Model v{first.version} is active: it adds up to 60 points" in page
    assert f"Model v{second.version} runs in shadow" in page
    assert str(second.metrics["auc"]) in page

    # When they promote the shadow one
    response = merchant_client.post(changelist, {"action": "promote", "_selected_action": [second.pk]}, follow=True)

    # Then it is active, the other retired, and the page says so
    assert f"Model v{second.version} is active" in response.content.decode()
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.mode, second.mode) == (ModelMode.RETIRED, ModelMode.ACTIVE)
    assert second.mode_changed_by == "staff:merchant"
