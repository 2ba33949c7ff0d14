"""The backtest with the learnt model: a model in shadow is reported and, counted as active, decides as it would
live; a model never scores an order decided before the newest decision it was trained on (hindsight).

Time is pinned at NOW (tests/riskengine/learning_history.py); the labelled history lies months before it, so
the model's training window ends before the orders placed here.
"""

from datetime import timedelta

import pytest

from riskengine.backtest import backtest_compare, configuration_current
from riskengine.models import RiskDecision
from tests.riskengine.learning_history import (  # noqa: F401  (clock_fixture, product_fixture)
    NOW,
    clock_fixture,
    fraudulent_order,
    paid_assessment,
    product_fixture,
    trained,
)
from tests.riskengine.test_rules import use_only_rules

pytestmark = pytest.mark.django_db
WINDOW = {"start": NOW - timedelta(days=1), "end": NOW + timedelta(days=1)}


def test_a_shadow_model_counted_as_active_decides_in_the_backtest_as_it_does_live(
    product, django_capture_on_commit_callbacks
):
    # Given a model in shadow and a fraudulent order the rules alone approve
    model = trained()
    use_only_rules(review=40, decline=80)
    order = fraudulent_order(product, django_capture_on_commit_callbacks)
    assert paid_assessment(order).decision == RiskDecision.APPROVE

    # When the backtest replays it with the stored configuration, and with the shadow model counting
    comparison = backtest_compare(
        configurations=[
            configuration_current(name="rules"),
            configuration_current(name="model", shadow_as_active=True),
        ],
        **WINDOW,
    )

    # Then the rules approve it as they did, and the model, counted, holds it (as test_model_scoring shows it does
    # live once active), naming itself among the reasons
    rules, with_model = comparison.figures("rules"), comparison.figures("model")
    assert rules.overall.confusion["good"]["review"] == 0  # no label yet: it counts as good here
    changed = {number: decisions for number, _, decisions in comparison.changed}
    assert changed[order.number] == {"rules": "approve", "model": "review"}
    (row,) = [row for row in with_model.rules if row.name == f"Risk model v{model.version}"]
    assert row.good_hits >= 1 and row.type == "model"
    (shadow_row,) = [row for row in rules.rules if row.name == f"Risk model v{model.version}"]
    assert shadow_row.good_hits >= 1  # reported as in shadow, not counted


def test_a_model_never_scores_an_order_decided_before_its_training_ended(product, django_capture_on_commit_callbacks):
    # Given a fraudulent order, then a model whose training window reaches past it
    use_only_rules(review=40, decline=80)
    fraudulent_order(product, django_capture_on_commit_callbacks)
    model = trained()
    type(model).objects.filter(pk=model.pk).update(trained_to=NOW + timedelta(minutes=1))

    # When the backtest counts the model
    comparison = backtest_compare(configurations=[configuration_current(name="model", shadow_as_active=True)], **WINDOW)

    # Then the model scored nothing there: it would have judged orders it learned from
    rows = [row for row in comparison.figures("model").rules if row.name.startswith("Risk model")]
    assert rows == []
    assert comparison.figures("model").overall.confusion["good"]["review"] == 0


def test_a_shadow_model_counted_as_active_replaces_the_active_one_rather_than_adding_to_it(
    product, django_capture_on_commit_callbacks
):
    # Given an active model and a newer one in shadow
    first = trained(activate=True)
    second = trained()

    # When the backtest counts shadow as active
    configuration = configuration_current(name="promoted", shadow_as_active=True)

    # Then only the shadow model scores, as it would once promoted (one model's points, never two)
    (model,) = configuration.models_at(NOW + timedelta(days=1))
    assert (model.version, model.mode) == (second.version, "active") and first.version != second.version
    assert {m.version for m in configuration_current(name="as is").models_at(NOW)} == {first.version, second.version}


def test_a_backtest_job_compares_with_the_models_it_was_asked_with(product):
    # Given a backtest job asked for while model v1 was active
    from riskengine.learning import risk_model_retire
    from storefront.flow.backtest_job import _configuration_from, backtest_job_params

    model = trained(activate=True)
    asked = backtest_job_params(configurations=[configuration_current(name="A")], **WINDOW)

    # When the model is retired before the job runs
    risk_model_retire(version=model.version, actor="test")

    # Then the job still scores with v1, active, at its points then
    rebuilt = _configuration_from(asked["configurations"][0], {})
    assert [(m.version, m.mode, m.points) for m in rebuilt.models] == [(model.version, "active", model.points)]
