"""Deciding with the learnt model: shadow that never decides, active that counts and explains, versions promoted
and retired (from the admin too), points changed, and decisions made with Redis away. Training: test_learning.py.

Time is pinned (time-machine) at NOW; the labelled history (tests/riskengine/learning_history.py) lies months
before it. Velocity counters are per test (tests/conftest.py) and identifiers per shopper (new_shopper), as in
test_rules.
"""

import re
import uuid

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from riskengine import velocity
from riskengine.features import LABELS
from riskengine.learning import (
    ModelError,
    model_status,
    risk_model_promote,
    risk_model_retire,
    risk_model_train,
)
from riskengine.models import ModelMode, RiskDecision, RiskModel
from riskengine.services import risk_assess_order
from tests.riskengine.learning_history import (  # noqa: F401  (clock_fixture, product_fixture)
    CALM_RADAR,
    RISKY_RADAR,
    clean_order,
    clock_fixture,
    fraudulent_order,
    model_reasons,
    paid_assessment,
    paid_order,
    product_fixture,
    trained,
)
from tests.riskengine.test_rules import (
    new_shopper,
    redis_down,  # noqa: F401  (a fixture)
    use_only_rules,
)

pytestmark = pytest.mark.django_db


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
