"""The backtest's figures: per configuration, what it decided and how that scores against the truth.

An order's outcome is its paid-order decision (approve, review, decline), or "blocked" when a pre-payment
screen refused it, or "unpaid" when it never got paid otherwise (the screen refused it then, not now: what
would have followed is unknown). Fraud is caught when it was held, declined or blocked; an honest order is
held (review) or declined (declined or blocked): the simulator's definitions (devtools.simulate.report).
Scored by labels, an order never paid (refused by the screen) can never be labelled: it is "unlabelled",
in the confusion matrix but in neither the fraud nor the good figures.

A comparison goes to JSON and back unchanged (comparison_to_json, comparison_from_json): the backtest page's job
keeps it on its row and renders it when asked.
"""

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings

DECISIONS = ("approve", "review", "decline", "blocked", "unpaid")
TRUTHS = {True: "fraud", False: "good", None: "unlabelled"}
CAUGHT = ("review", "decline", "blocked")
ENGINE_HITS = "engine"  # the engine's own reasons (Radar's hold or decline, the allowlist): no rule row of theirs


@dataclass(frozen=True)
class Outcome:
    """One order under one configuration."""

    decision: str
    score: int
    hits: dict[str, str]  # rule name -> rule type, for every rule that counted (and the engine's own reasons)
    shadow_hits: dict[str, str]  # rules evaluated in shadow that fired


@dataclass(frozen=True)
class Group:
    """Figures over a set of orders."""

    orders: int
    fraud: int
    good: int
    confusion: dict[str, dict[str, int]]  # "fraud" | "good" (| "unlabelled") -> decision -> orders
    caught: int
    good_held: int
    good_declined: int

    @property
    def decisions(self) -> dict[str, int]:
        return {d: sum(row[d] for row in self.confusion.values()) for d in DECISIONS}

    @property
    def unlabelled(self) -> int:
        return self.orders - self.fraud - self.good

    @property
    def caught_rate(self) -> float | None:
        return self.caught / self.fraud if self.fraud else None

    @property
    def good_held_rate(self) -> float | None:
        return self.good_held / self.good if self.good else None

    @property
    def good_declined_rate(self) -> float | None:
        return self.good_declined / self.good if self.good else None

    @property
    def summary(self) -> str:
        """One line: what became of its fraud, and of its honest orders."""
        parts = [f"caught {self.caught}/{self.fraud} ({percent(self.caught_rate)})"] if self.fraud else []
        if self.good:
            parts.append(
                f"held {self.good_held}/{self.good} ({percent(self.good_held_rate)}), "
                f"declined {self.good_declined} ({percent(self.good_declined_rate)})"
            )
        if self.unlabelled:
            parts.append(f"{self.unlabelled} never paid, unlabelled")
        return "; ".join(parts) or "no orders"


@dataclass(frozen=True)
class RuleRow:
    name: str
    type: str
    mode: str  # active | shadow | shadow, counted as active | off | engine
    points: int | None
    fraud_hits: int  # orders it fired on (at a screen or at payment) that are fraud
    good_hits: int
    unlabelled_hits: int = 0  # never paid, so never labelled (scored by labels)

    @property
    def precision(self) -> float | None:
        hits = self.fraud_hits + self.good_hits
        return self.fraud_hits / hits if hits else None

    @property
    def precision_text(self) -> str:
        return percent(self.precision)


@dataclass(frozen=True)
class Figures:
    name: str
    review_threshold: int | None
    decline_threshold: int | None
    shadow_as_active: bool
    overall: Group
    rules: list[RuleRow]
    patterns: dict[str, Group]


@dataclass(frozen=True)
class Comparison:
    start: datetime
    end: datetime
    orders: int
    recorded: Figures  # what the shop decided at the time
    configurations: list[Figures]
    changed: list[tuple[str, str, dict[str, str]]]  # (order, recorded, decision per configuration), first 200
    changed_count: int  # orders the configurations decide differently
    notes: list[str] = field(default_factory=list)

    def figures(self, name: str) -> Figures:
        return next(f for f in self.configurations if f.name == name)


@dataclass(frozen=True)
class BacktestReport:
    orders: int
    # (order number, decision before, decision after, score before, score after), for changed decisions only
    changed: list[tuple[str, str, str, int, int]]
    counts_before: dict[str, int]
    counts_after: dict[str, int]


def group_build(decided: list[tuple[str, bool | None]]) -> Group:
    """Figures over (decision, is fraud) pairs; None: unknown (never paid, so never labelled)."""
    counts = Counter(decided)
    confusion = {
        label: {d: counts[(d, truth)] for d in DECISIONS}
        for truth, label in TRUTHS.items()
        if truth is not None or any(t is None for _, t in counts)
    }
    return Group(
        orders=len(decided),
        fraud=sum(confusion["fraud"].values()),
        good=sum(confusion["good"].values()),
        confusion=confusion,
        caught=sum(confusion["fraud"][d] for d in CAUGHT),
        good_held=confusion["good"]["review"],
        good_declined=confusion["good"]["decline"] + confusion["good"]["blocked"],
    )


def _rule_rows(configuration, outcomes: list[tuple[Outcome, bool]]) -> list[RuleRow]:
    hits: dict[bool | None, Counter[str]] = {True: Counter(), False: Counter(), None: Counter()}
    types: dict[str, str] = {}
    for outcome, fraud in outcomes:
        for name, type_ in (outcome.hits | outcome.shadow_hits).items():
            hits[fraud][name] += 1
            types.setdefault(name, type_)
    rows = []
    for rule in configuration.rules:
        mode = str(rule.mode)
        if mode == "shadow" and configuration.shadow_as_active:
            mode = "shadow, counted as active"
        counts = (hits[True][rule.name], hits[False][rule.name], hits[None][rule.name])
        rows.append(RuleRow(rule.name, str(rule.type), mode, rule.points, *counts))
    named = {rule.name for rule in configuration.rules}
    for name in sorted(set(types) - named):  # the engine's own reasons, and anything not a stored rule (a model)
        rows.append(
            RuleRow(name, types[name], ENGINE_HITS, None, hits[True][name], hits[False][name], hits[None][name])
        )
    return rows


def comparison_build(
    *,
    configurations: list,
    rows: list[tuple[str, str, dict[str, Outcome]]],
    truth: dict[str, bool | None],
    patterns: dict[str, str],
    start: datetime,
    end: datetime,
) -> Comparison:
    """The figures of each configuration over `rows` (order number, recorded decision, outcome per configuration)."""

    def figures(name, decided: list[tuple[str, str]], configuration=None, outcomes=()) -> Figures:
        by_pattern: dict[str, list[tuple[str, bool]]] = {}
        for number, decision in decided:
            if number in patterns:
                by_pattern.setdefault(patterns[number], []).append((decision, truth.get(number, False)))
        return Figures(
            name=name,
            review_threshold=configuration.review_threshold if configuration else None,
            decline_threshold=configuration.decline_threshold if configuration else None,
            shadow_as_active=bool(configuration and configuration.shadow_as_active),
            overall=group_build([(decision, truth.get(number, False)) for number, decision in decided]),
            rules=_rule_rows(configuration, outcomes) if configuration else [],
            patterns={p: group_build(found) for p, found in sorted(by_pattern.items())},
        )

    then = figures("as decided then", [(number, recorded) for number, recorded, _ in rows])
    per_configuration = [
        figures(
            c.name,
            [(number, outcomes[c.name].decision) for number, _, outcomes in rows],
            c,
            [(outcomes[c.name], truth.get(number, False)) for number, _, outcomes in rows],
        )
        for c in configurations
    ]
    changed = []  # between the configurations; with one alone, against what was decided then
    for number, recorded, outcomes in rows:
        decisions = {c.name: outcomes[c.name].decision for c in configurations}
        if len(set(decisions.values()) | ({recorded} if len(configurations) == 1 else set())) > 1:
            changed.append((number, recorded, decisions))
    return Comparison(
        start=start,
        end=end,
        orders=len(rows),
        recorded=then,
        configurations=per_configuration,
        changed=changed[:200],
        changed_count=len(changed),
    )


# As JSON (a comparison kept with the staff job that computed it) ----------------------------------------------
# Every mapping whose order the page shows (the confusion matrix, the decisions per configuration) is kept as a
# list of pairs: PostgreSQL's jsonb does not keep the order of an object's keys.


def comparison_to_json(comparison: Comparison) -> dict:
    """The comparison as plain JSON values; comparison_from_json gives it back equal, in the same order."""
    return {
        "start": comparison.start.isoformat(),
        "end": comparison.end.isoformat(),
        "orders": comparison.orders,
        "recorded": _figures_to_json(comparison.recorded),
        "configurations": [_figures_to_json(f) for f in comparison.configurations],
        "changed": [[number, recorded, list(decided.items())] for number, recorded, decided in comparison.changed],
        "changed_count": comparison.changed_count,
        "notes": list(comparison.notes),
    }


def comparison_from_json(data: dict) -> Comparison:
    return Comparison(
        start=datetime.fromisoformat(data["start"]),
        end=datetime.fromisoformat(data["end"]),
        orders=data["orders"],
        recorded=_figures_from_json(data["recorded"]),
        configurations=[_figures_from_json(f) for f in data["configurations"]],
        changed=[(number, recorded, dict(decided)) for number, recorded, decided in data["changed"]],
        changed_count=data["changed_count"],
        notes=list(data["notes"]),
    )


def _group_to_json(group: Group) -> dict:
    return {**asdict(group), "confusion": [[label, list(row.items())] for label, row in group.confusion.items()]}


def _group_from_json(data: dict) -> Group:
    return Group(**{**data, "confusion": {label: dict(row) for label, row in data["confusion"]}})


def _figures_to_json(figures: Figures) -> dict:
    return {
        **asdict(figures),
        "overall": _group_to_json(figures.overall),
        "patterns": [[name, _group_to_json(group)] for name, group in figures.patterns.items()],
    }


def _figures_from_json(data: dict) -> Figures:
    return Figures(
        **{
            **data,
            "overall": _group_from_json(data["overall"]),
            "rules": [RuleRow(**row) for row in data["rules"]],
            "patterns": {name: _group_from_json(group) for name, group in data["patterns"]},
        }
    )


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def comparison_table(comparison: Comparison) -> str:
    """The comparison as text: the headline figures side by side, the confusion matrices, the rules, the patterns."""
    columns = [comparison.recorded, *comparison.configurations]
    width = max(18, *(len(f.name) + 2 for f in columns))
    lines = [
        f"Backtest of {comparison.orders} order(s) from {comparison.start:%Y-%m-%d %H:%M} to "
        f"{comparison.end:%Y-%m-%d %H:%M}, each replayed as of its moment.",
        "",
        f"{'':<22}" + "".join(f"{f.name:>{width}}" for f in columns),
    ]

    def row(label: str, value) -> None:
        lines.append(f"{label:<22}" + "".join(f"{value(f):>{width}}" for f in columns))

    row("thresholds", lambda f: f"{f.review_threshold}/{f.decline_threshold}" if f.review_threshold else "-")
    row("fraud orders", lambda f: str(f.overall.fraud))
    row("caught", lambda f: f"{f.overall.caught} ({percent(f.overall.caught_rate)})")
    row("good orders", lambda f: str(f.overall.good))
    row("good held", lambda f: f"{f.overall.good_held} ({percent(f.overall.good_held_rate)})")
    row("good declined", lambda f: f"{f.overall.good_declined} ({percent(f.overall.good_declined_rate)})")
    for label in comparison.recorded.overall.confusion:
        for decision in DECISIONS:
            row(f"{label} {decision}", lambda f, label=label, d=decision: str(f.overall.confusion[label][d]))
    for figures in comparison.configurations:
        lines += [
            "",
            f"rules in {figures.name}:",
            f"{'rule':<52}{'mode':<28}{'points':>7}{'fraud':>7}{'good':>7}{'unpaid':>7}",
        ]
        for rule in figures.rules:
            points = "-" if rule.points is None else str(rule.points)
            counts = f"{rule.fraud_hits:>7}{rule.good_hits:>7}{rule.unlabelled_hits:>7}"
            lines.append(f"{rule.name[:51]:<52}{rule.mode:<28}{points:>7}{counts}")
    patterns = sorted({p for f in columns for p in f.patterns})
    if patterns:
        for pattern in patterns:
            lines += ["", pattern]
            for f in columns:
                group = f.patterns.get(pattern)
                lines.append(f"  {f.name:<20}{group.summary if group else '-'}")
    lines += ["", f"{comparison.changed_count} order(s) decided differently."]
    return "\n".join(lines + comparison.notes)


def patterns_load(path: str | Path) -> dict[str, str]:
    """Order number -> pattern from a JSON file ({"patterns": {...}} or the mapping itself), as
    tests/load/risk_figures.py writes for a simulated month."""
    data = json.loads(Path(path).read_text())
    found = data.get("patterns", data) if isinstance(data, dict) else None
    if not isinstance(found, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        raise ValueError(f"{path}: expected a JSON object of order number -> pattern")
    return found


def simulation_patterns() -> tuple[dict[str, str], str]:
    """Order number -> pattern of a simulated month (RISK_BACKTEST_PATTERNS, see tests/load/risk_figures.py)."""
    path = settings.RISK_BACKTEST_PATTERNS
    if not path:
        return {}, ""
    try:
        return patterns_load(path), ""
    except (OSError, ValueError) as exc:
        return {}, f"No per-pattern figures: the patterns file could not be read ({exc})."


def comparison_side_by_side(comparison) -> dict:
    """The comparison arranged for the page: headline rows, confusion matrices, rule and pattern rows."""
    columns = [comparison.recorded, *comparison.configurations]
    headline = [
        {"label": label, "cells": [(getattr(f.overall, count), percent(getattr(f.overall, rate))) for f in columns]}
        for label, count, rate in (
            ("Fraud caught (held, declined or blocked)", "caught", "caught_rate"),
            ("Good orders held", "good_held", "good_held_rate"),
            ("Good orders declined or blocked", "good_declined", "good_declined_rate"),
        )
    ]
    names = list(dict.fromkeys(row.name for f in comparison.configurations for row in f.rules))
    by_name = [{row.name: row for row in f.rules} for f in comparison.configurations]
    rules = [{"name": name, "cells": [rows.get(name) for rows in by_name]} for name in names]
    patterns = sorted({p for f in columns for p in f.patterns})
    pattern_rows = [{"pattern": p, "cells": [f.patterns.get(p) for f in columns]} for p in patterns]
    return {"columns": columns, "headline": headline, "rules": rules, "patterns": pattern_rows}
