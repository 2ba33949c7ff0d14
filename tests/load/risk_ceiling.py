"""How much fraud any scorer could catch on a simulated month, from what the engine knows when it decides.

The engine's own figures say what the shipped rules catch. This says what a learner could do on the same
signals within the review budget: a gradient-boosted classifier (scikit-learn) gets every paid order's stored
features (the model's view, riskengine.features) and the points each shipped rule gave it, learns from the true
labels (perfect hindsight: no settle period, no label delay, no reviewer's mistakes) and flags paid orders from
the most suspicious down until its flagged good orders reach GOOD_HELD_BUDGET of all good orders. Orders the
pre-payment screen blocked count as they were decided. Every order is scored out of fold (5-fold
cross-validation over the months pooled: by a classifier that never saw it). The months may be run with a
higher fraud share than a shop sees, to give the learner more to learn from: the share caught within a budget
of good orders does not depend on how many there are of each.

    .venv/bin/python tests/load/risk_figures.py --ceiling --seeds 1 2 --orders 6000 --fraud-share 0.15
"""

from collections import Counter

import numpy as np

GOOD_HELD_BUDGET = 0.01


def ceiling_rows(simulation) -> dict:
    """Paid orders as (feature matrix, fraud?, pattern), the orders the pre-payment screen blocked, and all."""
    from riskengine.defaults import SHIPPED_RULES
    from riskengine.features import FEATURES
    from riskengine.models import RiskAssessment

    traces = {t.order_id: t.sim for t in simulation.traces if t.order_id is not None}
    paid: dict[int, RiskAssessment] = {}
    for assessment in RiskAssessment.objects.filter(order_id__in=list(traces), stage="paid").order_by("pk"):
        paid.setdefault(assessment.order_id, assessment)
    rule_names = [name for name, *_ in SHIPPED_RULES]  # the same columns for every month
    rows, fraud, patterns = [], [], []
    for order_id, assessment in paid.items():
        points = {r["rule"]: r["points"] for r in assessment.reasons}
        features = assessment.features or {}
        rows.append([float(features.get(n, 0.0)) for n in FEATURES] + [float(points.get(n, 0)) for n in rule_names])
        fraud.append(traces[order_id].fraud)
        patterns.append(traces[order_id].pattern)
    return {
        "x": np.array(rows),
        "fraud": np.array(fraud),
        "patterns": np.array(patterns),
        # every order of the month counts, as in the engine's report (one never paid is not caught)
        "blocked": Counter((o.fraud, o.pattern) for o in simulation.outcomes if o.engine == "blocked"),
        "all": Counter((o.fraud, o.pattern) for o in simulation.outcomes),
    }


def _caught_within_budget(scores: np.ndarray, data: dict) -> dict:
    """Flag paid orders from the highest score down while the good orders refused (those the pre-payment screen
    blocked, then those flagged) stay within the budget; stop at the last fraud so reached (flagging more good
    orders after it catches nothing), and never inside a run of equal scores (no threshold splits one)."""
    good_total = sum(n for (is_fraud, _), n in data["all"].items() if not is_fraud)
    blocked_good = sum(n for (is_fraud, _), n in data["blocked"].items() if not is_fraud)
    budget = max(0, int(GOOD_HELD_BUDGET * good_total) - blocked_good)
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    good_so_far, fraud_since_cut = 0, False
    cut, flagged_good = 0, 0  # the cut: just after the last fraud reached within the budget
    for position, i in enumerate(order):
        if data["fraud"][i]:
            fraud_since_cut = True
        elif good_so_far == budget:
            break
        else:
            good_so_far += 1
        score_changes = position + 1 == len(order) or ranked[position + 1] != ranked[position]
        if score_changes and fraud_since_cut:
            cut, flagged_good, fraud_since_cut = position + 1, good_so_far, False
    flagged = np.zeros(len(scores), dtype=bool)
    flagged[order[:cut]] = True
    per_pattern = {}
    fraud_patterns = sorted({p for (is_fraud, p) in data["all"] if is_fraud})
    for pattern in fraud_patterns:
        total = data["all"][(True, pattern)]
        caught = data["blocked"][(True, pattern)] + int(np.sum(flagged & (data["patterns"] == pattern)))
        per_pattern[pattern] = caught / total if total else 0.0
    fraud_total = sum(data["all"][(True, p)] for p in fraud_patterns)
    caught = sum(per_pattern[p] * data["all"][(True, p)] for p in fraud_patterns)
    friendly = data["all"][(True, "friendly_fraud")]
    caught_friendly = per_pattern.get("friendly_fraud", 0.0) * friendly
    return {
        "caught_rate": caught / fraud_total,
        "caught_rate_without_friendly": (caught - caught_friendly) / max(1, fraud_total - friendly),
        "good_held_rate": (flagged_good + blocked_good) / good_total,
        "patterns": per_pattern,
    }


def _pooled(parts: list[dict]) -> dict:
    return {
        "x": np.vstack([p["x"] for p in parts]),
        "fraud": np.concatenate([p["fraud"] for p in parts]),
        "patterns": np.concatenate([p["patterns"] for p in parts]),
        "blocked": sum((p["blocked"] for p in parts), Counter()),
        "all": sum((p["all"] for p in parts), Counter()),
    }


def ceiling(parts: list[dict], *, seed: int = 0) -> dict:
    """The learner's figures over the pooled months' rows (ceiling_rows of each), scored out of fold."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    data = _pooled(parts)
    learner = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, min_samples_leaf=30, random_state=seed)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = cross_val_predict(learner, data["x"], data["fraud"], cv=folds, method="predict_proba")[:, 1]
    return {
        "paid_orders": len(data["fraud"]),
        "paid_fraud": int(data["fraud"].sum()),
        "learner": _caught_within_budget(scores, data),
    }


def ceiling_table(seeds: list[int], result: dict, engine: dict) -> str:
    """The learner's figures beside the shipped rules' on the same months (engine: caught_rate, good_held_rate,
    caught_rate_without_friendly)."""
    r = result["learner"]
    return "\n".join(
        [
            f"Ceiling, seeds {seeds} pooled: {result['paid_orders']} paid orders ({result['paid_fraud']} fraudulent); "
            f"a learner on the engine's features and rule points, true labels, out of fold, flagging up to "
            f"{GOOD_HELD_BUDGET:.0%} of good orders",
            f"{'':<16}{'caught':>10}{'w/o friendly':>14}{'good held':>11}",
            f"{'shipped rules':<16}{engine['caught_rate']:>10.2%}{engine['caught_rate_without_friendly']:>14.2%}"
            f"{engine['good_held_rate']:>11.2%}",
            f"{'learner':<16}{r['caught_rate']:>10.2%}{r['caught_rate_without_friendly']:>14.2%}"
            f"{r['good_held_rate']:>11.2%}",
            "learner per pattern: " + ", ".join(f"{p} {v:.0%}" for p, v in r["patterns"].items()),
        ]
    )


def engine_figures(simulations: list) -> dict:
    """What the shipped rules did with the same months, counted as the learner's figures are."""
    outcomes = [o for s in simulations for o in s.outcomes]
    fraud = [o for o in outcomes if o.fraud]
    unfriendly = [o for o in fraud if o.pattern != "friendly_fraud"]
    good = [o for o in outcomes if not o.fraud]
    return {
        "caught_rate": sum(o.caught for o in fraud) / len(fraud),
        "caught_rate_without_friendly": sum(o.caught for o in unfriendly) / len(unfriendly),
        "good_held_rate": sum(o.engine in ("review", "decline", "blocked") for o in good) / len(good),
    }
