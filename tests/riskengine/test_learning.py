"""The model that learns from the shop's own outcomes, up to a stored version: features kept as they were at each
decision, and training that refuses too few labels, learns, and runs weekly when new labels arrived. How a model
decides (shadow, active, promoted, Redis away) and the admin: test_model_scoring.py.

Time is pinned (time-machine) at NOW; the labelled history (tests/riskengine/learning_history.py) lies months
before it. Velocity counters are per test (tests/conftest.py) and identifiers per shopper (new_shopper), as in
test_rules.
"""

import pickle
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from orders.models import Order, OrderStatus
from riskengine import selectors, velocity
from riskengine.config import risk_config
from riskengine.features import FEATURES, features_for
from riskengine.learning import model_status, risk_model_train
from riskengine.models import FraudLabel, ModelMode, RiskAssessment, RiskModel
from riskengine.services import risk_check_before_payment
from riskengine.signals import signals_for_order
from riskengine.tasks import risk_model_retrain
from storefront.flow.payment import PaymentSignals
from tests.riskengine.learning_history import (  # noqa: F401  (clock_fixture, product_fixture)
    CALM_RADAR,
    NOW,
    clean_order,
    clock_fixture,
    fraudulent_order,
    labelled_history,
    model_reasons,
    paid_assessment,
    paid_order,
    product_fixture,
    trained,
)
from tests.riskengine.test_rules import new_shopper, pay, place_order, use_only_rules, use_shipped_rules

pytestmark = pytest.mark.django_db


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
