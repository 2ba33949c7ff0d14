"""The ceiling's budget: flag from the most suspicious down, never past the good orders allowed."""

from collections import Counter

import numpy as np

from tests.load.risk_ceiling import GOOD_HELD_BUDGET, _caught_within_budget


def _data(fraud_scores, good_scores, *, blocked_fraud=0, friendly=0):
    patterns = ["stolen_card"] * (len(fraud_scores) - friendly) + ["friendly_fraud"] * friendly
    fraud = [True] * len(fraud_scores) + [False] * len(good_scores)
    all_orders = Counter({(True, "stolen_card"): len(fraud_scores) - friendly + blocked_fraud})
    if friendly:
        all_orders[(True, "friendly_fraud")] = friendly
    all_orders[(False, "good_oneoff")] = len(good_scores)
    data = {
        "fraud": np.array(fraud),
        "patterns": np.array(patterns + ["good_oneoff"] * len(good_scores)),
        "blocked": Counter({(True, "stolen_card"): blocked_fraud}),
        "all": all_orders,
    }
    return np.array(list(fraud_scores) + list(good_scores), dtype=float), data


def test_a_perfect_score_catches_every_fraud_and_holds_no_good_order():
    scores, data = _data([0.9] * 20, [0.1] * 1000)
    result = _caught_within_budget(scores, data)
    assert result["caught_rate"] == 1.0
    assert result["good_held_rate"] == 0.0


def test_good_orders_above_the_fraud_use_up_the_budget_first():
    budget = int(GOOD_HELD_BUDGET * 1000)  # 10 good orders may be flagged
    # 10 good orders score above every fraud: the budget is spent before any fraud is reached, then the next good
    # order (above half of the fraud) stops the walk
    scores, data = _data([0.8] * 10 + [0.4] * 10, [0.95] * budget + [0.5] + [0.1] * (1000 - budget - 1))
    result = _caught_within_budget(scores, data)
    assert result["good_held_rate"] == budget / 1000
    assert result["caught_rate"] == 0.5


def test_blocked_orders_count_as_caught_and_friendly_fraud_is_reported_apart():
    scores, data = _data([0.9] * 8 + [0.0] * 2, [0.1] * 1000, blocked_fraud=10, friendly=2)
    result = _caught_within_budget(scores, data)
    assert result["caught_rate"] == 18 / 20  # 10 blocked + 8 flagged; the 2 friendly ones score 0
    assert result["caught_rate_without_friendly"] == 1.0
    assert result["patterns"]["friendly_fraud"] == 0.0


def test_good_orders_the_screen_blocked_count_against_the_budget():
    scores, data = _data([0.9] * 5 + [0.4] * 5, [0.5] * 6 + [0.1] * 994)
    data["blocked"][(False, "good_oneoff")] = 5  # of the 1000 good orders, 5 were refused before paying
    result = _caught_within_budget(scores, data)
    assert result["caught_rate"] == 0.5  # 5 flagged goods would take the refused to 11, over the 10 allowed
    assert result["good_held_rate"] == 5 / 1000


def test_no_cut_inside_equal_scores():
    # the budget (10) ends inside a run of 12 equal scores holding fraud: no threshold flags part of it
    scores, data = _data([0.9] * 5 + [0.5] * 5, [0.5] * 12 + [0.1] * 988)
    result = _caught_within_budget(scores, data)
    assert result["caught_rate"] == 0.5
    assert result["good_held_rate"] == 0.0
