"""The risk engine's figures on the project's own yardstick: simulated months replayed through the real shop.

Each seed runs on an emptied database of its own (the bench's), with the shipped rules and thresholds, so
the figures are the ones a new shop gets. `make risk-figures` runs each step below; one alone:

    .venv/bin/python tests/load/risk_figures.py --seeds 1 2 --orders 11000

`--predict` measures the backtest instead (`prediction_vs_live`): a month run live with the shipped
configuration (A), the backtest over what it left predicting A and a proposed configuration (B), then the
same month run live again with B on a fresh database; predicted against live, in points:

    .venv/bin/python tests/load/risk_figures.py --predict --seeds 1 --orders 3000 --fraud-share 0.1

`--model` trains the model on the first seed's month and runs the second seed's month after it, the model in
shadow; the backtest then says what the rules decided (against live) and what they would with the model counted
at each of MODEL_POINTS (`model_on_second_month`):

    .venv/bin/python tests/load/risk_figures.py --model --seeds 1 2 --orders 3000 --fraud-share 0.08

`--ceiling` runs each seed's month, then says what a learner on the engine's signals, given the true labels,
catches within the review budget on the months pooled (tests/load/risk_ceiling.py):

    .venv/bin/python tests/load/risk_figures.py --ceiling --seeds 1 2 --orders 6000 --fraud-share 0.15
"""

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
# B: the shipped rules with the review threshold 5 points lower and one rule more.
PROPOSED_REVIEW_DROP = 5
PROPOSED_RULE = (
    "Failed payments before this one, per email or device (a day)",
    "velocity",
    {"metric": "failed_payments", "by": ["email", "device"], "window_minutes": 1440, "threshold": 1},
    30,
    "Proposed: two or more declined cards before paying.",
)
FIGURES = ("caught_rate", "good_held_rate", "good_declined_rate")


def database_empty() -> None:
    """An emptied database holding only what the migrations give a new shop, with the shipped rules."""
    from django.core.management import call_command

    from payments.models import PaymentChannel
    from riskengine.defaults import shipped_rules_install

    call_command("flush", interactive=False, verbosity=0)
    for fields in importlib.import_module("payments.migrations.0003_default_channels").CHANNELS:
        PaymentChannel.objects.get_or_create(code=fields["code"], defaults=fields)
    shipped_rules_install()


def simulation_on_fresh_database(*, seed: int, orders: int, params=None, configure=None):
    """One simulated month on an emptied database, with the shipped rules or what `configure()` installs."""
    from devtools.simulate import simulate_month

    database_empty()
    if configure is not None:
        configure()
    return simulate_month(seed=seed, orders=orders, params=params)


def month_on_fresh_database(*, seed: int, orders: int, params=None) -> dict:
    """One simulated month on an emptied database holding only what the migrations give a new shop."""
    return simulation_on_fresh_database(seed=seed, orders=orders, params=params).report


def risk_figures(*, seeds: tuple[int, ...] = (1, 2), orders: int = 11_000) -> dict:
    """Caught, good held and good declined for each seed (and the whole report of each)."""
    reports = {seed: month_on_fresh_database(seed=seed, orders=orders) for seed in seeds}
    return {"orders": orders, "reports": reports}


def configuration_proposed(current, *, name: str = "B"):
    """B, in memory: the current rules plus PROPOSED_RULE, the review threshold PROPOSED_REVIEW_DROP lower."""
    from riskengine.backtest import configuration_build
    from riskengine.models import RiskRule

    name_, type_, params, points, description = PROPOSED_RULE
    extra = RiskRule(name=name_, type=type_, params=params, points=points, description=description)
    return configuration_build(
        name=name,
        rules=[*current.rules, extra],
        review_threshold=current.review_threshold - PROPOSED_REVIEW_DROP,
        decline_threshold=current.decline_threshold,
    )


def configuration_install(configuration) -> None:
    """Make `configuration` the live one: its rules enabled in their modes, every other rule disabled."""
    from riskengine.models import RiskRule, RiskSettings

    RiskRule.objects.exclude(name__in=[r.name for r in configuration.rules]).update(enabled=False)
    for rule in configuration.rules:
        RiskRule.objects.update_or_create(
            name=rule.name,
            defaults={
                "type": rule.type,
                "params": rule.params,
                "points": rule.points,
                "mode": rule.mode,
                "enabled": True,
                "description": rule.description,
            },
        )
    RiskSettings.objects.update_or_create(
        pk=1,
        defaults={
            "review_threshold": configuration.review_threshold,
            "decline_threshold": configuration.decline_threshold,
        },
    )


def _truth_and_patterns(simulation) -> tuple[dict[str, bool], dict[str, str]]:
    from orders.models import Order

    numbers = dict(
        Order.objects.filter(pk__in=[t.order_id for t in simulation.traces if t.order_id]).values_list("pk", "number")
    )
    placed = [t for t in simulation.traces if t.order_id in numbers]
    return (
        {numbers[t.order_id]: t.sim.fraud for t in placed},
        {numbers[t.order_id]: t.sim.pattern for t in placed},
    )


def _live(report: dict) -> dict[str, float]:
    fraud, good = report["overall"].get("fraud", {}), report["overall"].get("good", {})
    return {
        "caught_rate": fraud.get("caught_rate") or 0.0,
        "good_held_rate": good.get("held_rate") or 0.0,
        "good_declined_rate": good.get("declined_rate") or 0.0,
    }


def _predicted(figures) -> dict[str, float]:
    return {name: getattr(figures.overall, name) or 0.0 for name in FIGURES}


def prediction_vs_live(*, seed: int, orders: int, params=None, patterns_out: Path | None = None) -> dict:
    """(a) A live; (b) the backtest of A's database predicting A and B; (c) B live on a fresh database.

    Scored against the simulator's truth, as the live figures are; the label-scored prediction is kept too.
    """
    from datetime import timedelta

    from devtools.simulate import PopulationParams
    from riskengine.backtest import backtest_compare, configuration_current
    from riskengine.backtest_report import comparison_table

    params = params or PopulationParams()
    live_a = simulation_on_fresh_database(seed=seed, orders=orders, params=params)
    truth, patterns = _truth_and_patterns(live_a)
    if patterns_out:
        patterns_out.write_text(json.dumps({"seed": seed, "orders": orders, "patterns": patterns}))
    a = configuration_current(name="A")
    b = configuration_proposed(a)
    window = {"start": params.start - timedelta(days=1), "end": params.start + timedelta(days=params.days + 1)}
    started = time.perf_counter()
    comparison = backtest_compare(configurations=[a, b], truth=truth, patterns=patterns, **window)
    seconds = time.perf_counter() - started
    by_labels = backtest_compare(configurations=[a, b], **window)
    live_b = simulation_on_fresh_database(
        seed=seed, orders=orders, params=params, configure=lambda: configuration_install(b)
    )
    rows = {
        "A": {"live": _live(live_a.report), "predicted": _predicted(comparison.figures("A"))},
        "B": {"live": _live(live_b.report), "predicted": _predicted(comparison.figures("B"))},
    }
    for name, row in rows.items():
        row["by_labels"] = _predicted(by_labels.figures(name))
        row["difference_points"] = {k: round(100 * (row["predicted"][k] - row["live"][k]), 2) for k in FIGURES}
    return {
        "seed": seed,
        "orders": orders,
        "fraud_share": params.fraud_share,
        "backtest_seconds": round(seconds, 1),
        "replayed": comparison.orders,
        "live_configurations": {
            name: f"review >= {r['thresholds']['review']}, decline >= {r['thresholds']['decline']}, "
            f"{len(r['rules'])} enabled rules"
            for name, r in (("A", live_a.report), ("B", live_b.report))
        },
        "figures": rows,
        "table": comparison_table(comparison),
        "live_reports": {"A": live_a.report, "B": live_b.report},
    }


def prediction_table(result: dict) -> str:
    lines = [
        f"Backtest prediction against live replays: seed {result['seed']}, {result['orders']} orders, "
        f"fraud share {result['fraud_share']}; the backtest replayed {result['replayed']} orders through A and B "
        f"in {result['backtest_seconds']} s",
        *(f"live {name}: {text}" for name, text in result["live_configurations"].items()),
        f"{'config':<8}{'figure':<22}{'predicted':>11}{'live':>9}{'points':>9}{'by labels':>11}",
    ]
    for name, row in result["figures"].items():
        for figure in FIGURES:
            lines.append(
                f"{name:<8}{figure:<22}{row['predicted'][figure] * 100:>10.2f}%{row['live'][figure] * 100:>8.2f}%"
                f"{row['difference_points'][figure]:>+9.2f}{row['by_labels'][figure] * 100:>10.2f}%"
            )
    return "\n".join(lines)


MODEL_POINTS = (30, 45, 60)  # the model's points tried on the second month (60 is its default)


def model_on_second_month(*, seeds: tuple[int, int], orders: int, params=None) -> dict:
    """The learnt model on a month it never saw: month 1 (seed 1) with the shipped rules alone; the model trained
    when month 1's labels are in (disputes, warnings, reviews; good orders settled), and kept in shadow; month 2
    (seed 2) live with the rules deciding, the model reported. Then the backtest over month 2: the rules as they
    decided (checked against live), and the same rules with the model counted at each of MODEL_POINTS."""
    from dataclasses import replace
    from datetime import timedelta

    import time_machine
    from django.conf import settings

    from devtools.simulate import PopulationParams, simulate_month
    from riskengine.backtest import backtest_compare, configuration_build, configuration_current
    from riskengine.learning import risk_model_train
    from riskengine.models import ModelMode

    params = params or PopulationParams()
    simulation_on_fresh_database(seed=seeds[0], orders=orders, params=params)
    second_start = params.start + timedelta(days=params.days + settings.RISK_MODEL_SETTLE_DAYS + 1)
    trained_at = second_start - timedelta(hours=1)
    with time_machine.travel(trained_at, tick=False):
        training = risk_model_train(actor="bench", now=trained_at)
    if training.model is None:
        return {"seeds": seeds, "orders": orders, "trained": training.message}
    month_2 = replace(params, start=second_start)
    second = simulate_month(seed=seeds[1], orders=orders, params=month_2)
    truth, patterns = _truth_and_patterns(second)
    rules = configuration_current(name="rules")
    (shadow,) = [m for m in rules.models if m.mode == ModelMode.SHADOW]
    with_model = [
        configuration_build(
            name=f"rules + model at {points}",
            rules=list(rules.rules),
            review_threshold=rules.review_threshold,
            decline_threshold=rules.decline_threshold,
            models=(replace(shadow, mode=ModelMode.ACTIVE, points=points),),
        )
        for points in MODEL_POINTS
    ]
    window = {"start": second_start - timedelta(days=1), "end": second_start + timedelta(days=params.days + 1)}
    comparison = backtest_compare(configurations=[rules, *with_model], truth=truth, patterns=patterns, **window)
    return {
        "seeds": seeds,
        "orders": orders,
        "trained": training.message,
        "live_rules": _live(second.report),
        "predicted": {c.name: _predicted(comparison.figures(c.name)) for c in [rules, *with_model]},
        "patterns": {
            c.name: {p: g.caught_rate for p, g in comparison.figures(c.name).patterns.items() if g.fraud}
            for c in [rules, *with_model]
        },
    }


def model_table(result: dict) -> str:
    if "live_rules" not in result:
        return f"Model on a second month (seeds {result['seeds']}): {result['trained']}"
    lines = [
        f"Model on a second month: trained on seed {result['seeds'][0]}, decided seed {result['seeds'][1]}, "
        f"{result['orders']} orders each. {result['trained']}",
        f"{'configuration':<30}" + "".join(f"{figure:>20}" for figure in FIGURES),
        f"{'rules, live':<30}" + "".join(f"{result['live_rules'][f] * 100:>19.2f}%" for f in FIGURES),
    ]
    for name, figures in result["predicted"].items():
        lines.append(f"{name + ', backtest':<30}" + "".join(f"{figures[f] * 100:>19.2f}%" for f in FIGURES))
    patterns = sorted({p for found in result["patterns"].values() for p in found})
    lines.append(f"{'caught per pattern':<30}" + "".join(f"{p:>18}" for p in patterns))
    for name, found in result["patterns"].items():
        lines.append(f"{name:<30}" + "".join(f"{(found.get(p) or 0) * 100:>17.1f}%" for p in patterns))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--orders", type=int, default=11_000)
    parser.add_argument("--predict", action="store_true", help="Backtest prediction against live (A and B).")
    parser.add_argument("--model", action="store_true", help="The model trained on seed 1, deciding seed 2.")
    parser.add_argument("--ceiling", action="store_true", help="What any scorer could catch (risk_ceiling).")
    parser.add_argument("--fraud-share", type=float, default=None, help="Fraudulent share of orders (0.03).")
    parser.add_argument("--patterns-out", type=Path, default=None, help="Write order number -> pattern (JSON).")
    parser.add_argument("--json-out", type=Path, default=None, help="Write the prediction figures (JSON).")
    args = parser.parse_args()
    if sum((args.predict, args.model, args.ceiling)) > 1:
        parser.error("--predict, --model and --ceiling are separate runs: choose one")
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront.settings_test")
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/storefront")
    name = f"storefront_risk_{os.getpid()}"
    os.environ["DATABASE_URL"] = base.rsplit("/", 1)[0] + "/" + name
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
    import psycopg

    admin = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        import logging

        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        from devtools.simulate import PopulationParams, report_table
        from tests.load.risk_ceiling import ceiling, ceiling_rows, ceiling_table, engine_figures

        logging.getLogger().setLevel(logging.ERROR)
        call_command("migrate", verbosity=0)
        params = PopulationParams() if args.fraud_share is None else PopulationParams(fraud_share=args.fraud_share)
        results, months = [], []
        if args.model:
            print(model_table(model_on_second_month(seeds=tuple(args.seeds[:2]), orders=args.orders, params=params)))
        for seed in args.seeds if not args.model else ():
            if args.ceiling:
                simulation = simulation_on_fresh_database(seed=seed, orders=args.orders, params=params)
                print(report_table(simulation.report), "", flush=True)
                months.append((simulation, ceiling_rows(simulation)))
                continue
            if not args.predict:
                print(report_table(month_on_fresh_database(seed=seed, orders=args.orders, params=params)), flush=True)
                continue
            result = prediction_vs_live(seed=seed, orders=args.orders, params=params, patterns_out=args.patterns_out)
            print(result["table"], "", prediction_table(result), "", sep="\n", flush=True)
            results.append({k: v for k, v in result.items() if k not in ("table", "live_reports")})
        if months:
            result = ceiling([rows for _, rows in months])
            print(ceiling_table(args.seeds, result, engine_figures([simulation for simulation, _ in months])))
        if args.json_out:
            args.json_out.write_text(json.dumps(results, indent=2))
        connections.close_all()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
