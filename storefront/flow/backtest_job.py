"""The backtest page's comparison as a staff job: the request says what to compare, a task replays the orders.

A month of orders takes minutes to replay (riskengine.backtest), longer than a request may last. So the page
(storefront.review) checks the proposal and starts a staff job of kind "backtest" whose params fix what the
replay compares when it is started: both configurations (each rule by id with its mode and points, the two
thresholds; a rule's own parameters are read when the job runs) and the window. storefront.flow.staff_jobs runs
the job through backtest_job_compute, which reports the moments replayed as the job's progress and returns the
comparison as JSON, stored on the job; the job's page renders it.

A run is read-only but for the job's own row, so running it again (a resumed job) gives the same comparison, as
long as the rules and labels did not change meanwhile. A rule deleted since the job started is left out, and the
job's page says so.
"""

import copy
import dataclasses
from datetime import datetime

from riskengine.backtest import Configuration, Progress, backtest_compare, configuration_build
from riskengine.backtest_report import comparison_to_json, simulation_patterns
from riskengine.models import RiskModel, RiskRule
from riskengine.scoring import LoadedModel, model_load


def backtest_job_params(*, configurations: list[Configuration], start: datetime, end: datetime) -> dict:
    """What a backtest job compares, as JSON for StaffJob.params: the configurations and the window [start, end)."""
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "configurations": [
            {
                "name": c.name,
                "review_threshold": c.review_threshold,
                "decline_threshold": c.decline_threshold,
                "shadow_as_active": c.shadow_as_active,
                "rules": [{"rule": rule.pk, "mode": str(rule.mode), "points": rule.points} for rule in c.rules],
                # the models as they were when the job was asked for: a promotion meanwhile changes nothing here
                "models": [{"version": m.version, "mode": m.mode, "points": m.points} for m in c.models],
            }
            for c in configurations
        ],
    }


def _configuration_from(params: dict, stored: dict[int, RiskRule]) -> Configuration:
    """The configuration the params describe, of the rules still stored (in memory: nothing is saved)."""
    rules = []
    for chosen in params["rules"]:
        if (rule := stored.get(chosen["rule"])) is not None:
            rule = copy.copy(rule)
            rule.mode, rule.points = chosen["mode"], chosen["points"]
            rules.append(rule)
    return configuration_build(
        name=params["name"],
        rules=rules,
        review_threshold=params["review_threshold"],
        decline_threshold=params["decline_threshold"],
        shadow_as_active=params["shadow_as_active"],
        models=_models_from(params.get("models")),
    )


def _models_from(chosen: list[dict] | None) -> tuple[LoadedModel, ...] | None:
    """The models the job was asked with, in the modes and points they had then (None, a job stored before
    models were kept: the models in use)."""
    if chosen is None:
        return None
    rows = RiskModel.objects.in_bulk([c["version"] for c in chosen])
    return tuple(
        dataclasses.replace(model_load(rows[c["version"]]), mode=c["mode"], points=c["points"])
        for c in chosen
        if c["version"] in rows
    )


def backtest_job_compute(*, params: dict, progress: Progress | None = None) -> dict:
    """Replay the job's window through its configurations: the comparison as JSON, the patterns file's note (if
    it could not be read) and how many rules were deleted since the job started.

    `progress` hears (moments replayed, moments in all) now and then (riskengine.backtest.backtest_compare).
    """
    ids = {chosen["rule"] for c in params["configurations"] for chosen in c["rules"]}
    stored = RiskRule.objects.in_bulk(ids)
    configurations = [_configuration_from(described, stored) for described in params["configurations"]]
    patterns, note = simulation_patterns()
    comparison = backtest_compare(
        configurations=configurations,
        start=datetime.fromisoformat(params["start"]),
        end=datetime.fromisoformat(params["end"]),
        patterns=patterns,
        progress=progress,
    )
    return {"comparison": comparison_to_json(comparison), "note": note, "rules_gone": len(ids - set(stored))}
