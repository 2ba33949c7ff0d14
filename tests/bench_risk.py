"""Risk scoring latency: `risk_assess_order` with 20 active rules, Redis up, Redis refusing, Redis hung.

What is timed: the whole service for one paid order, as order_mark_paid calls it (signals from the order,
rules and thresholds loaded, every rule evaluated, the assessment stored with its reasons), without any
provider call. Each call runs in its own transaction, as in order_mark_paid, so the timing includes the
commit. The split between evaluating (the paid-stage decision: rules, features and models) and storing is
reported too, on alternate orders. As at the payment: the order's lines are already loaded (the payment read
them), the tables have their statistics (autovacuum keeps them), and the rules' change stamps are read for
every assessment (RISK_CONFIG_RECHECK_SECONDS 0 here; a shop's worker paid less than once a second reads them
each time too).

Called from tests/bench.py after Django is set up on a fresh database, or on its own (it then makes and
drops its own database the same way):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/storefront REDIS_URL=redis://127.0.0.1:6379/15 \
        .venv/bin/python tests/bench_risk.py [n] [--profile]

Redis is shared: every identifier here carries this run's tag and its keys are deleted at the end.
"""

import cProfile
import io
import logging
import pstats
import random
import socket
import statistics
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.bench_risk_data import seed_shop, warm_redis  # noqa: E402  (after the path is set)

DECISION_P99_MAX_MS = 10.0  # the decision's p99 with Redis up (issue 11)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _summary(samples: list[float]) -> dict:
    return {
        "orders": len(samples),
        "p50_ms": statistics.median(samples),
        "p99_ms": percentile(samples, 0.99),
        "max_ms": max(samples),
    }


@contextmanager
def _velocity_client(client):
    """Point the engine's velocity counters at `client` for a while."""
    from riskengine import velocity

    previous = velocity._client
    velocity._client = client
    try:
        yield
    finally:
        velocity._client = previous


SUGGESTED_INDEXES = {
    "bench_order_email_created": "orders_order (email, created_at)",
    "bench_order_ip_created": "orders_order (purchase_ip, created_at)",
    "bench_event_failed": "orders_orderevent (order_id, created_at) WHERE type = 'payment_failed'",
    "bench_event_failed_card": "orders_orderevent ((data -> 'card'), created_at) WHERE type = 'payment_failed'",
    "bench_listentry_kind_upper": "riskengine_listentry (kind, upper(value::text))",
}


@contextmanager
def _suggested_indexes():
    """The indexes the report recommends, in this (throwaway) database only, for a what-if run."""
    from django.db import connection

    with connection.cursor() as cursor:
        for name, definition in SUGGESTED_INDEXES.items():
            on, _, where = definition.partition(" WHERE ")
            cursor.execute(f"CREATE INDEX {name} ON {on}" + (f" WHERE {where}" if where else ""))
        cursor.execute("ANALYZE orders_order, orders_orderevent, riskengine_listentry")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for name in SUGGESTED_INDEXES:
                cursor.execute(f"DROP INDEX IF EXISTS {name}")


def _client_like_the_engines(url: str):
    """A client made as riskengine.velocity._redis makes its own."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=0.05, socket_timeout=0.05, health_check_interval=30)


@contextmanager
def _hung_redis():
    """A port that accepts connections (kernel backlog) and never answers: every command times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        listener.close()


def _time_assessments(order_ids_and_radar: list[tuple[int, dict]], *, budget_s: float) -> tuple[list, list, list]:
    """Time risk_assess_order on every other order, each in its own transaction as in order_mark_paid; on the
    orders between, time its two parts (evaluate, then store) instead. Each order is assessed once per pass,
    so no timing reads pages another timing of the same order has just warmed."""
    from django.db import transaction

    from orders.models import Order
    from orders.selectors import order_lines
    from riskengine.config import risk_config
    from riskengine.services import _store, risk_assess_order, risk_evaluate
    from riskengine.signals import signals_for_order

    orders = Order.objects.in_bulk([pk for pk, _ in order_ids_and_radar])
    for order in orders.values():  # as _order_paid has them: it read them (risk_record_event) before
        order_lines(order)
    total, evaluate, store = [], [], []
    deadline = time.monotonic() + budget_s
    for i, (pk, radar) in enumerate(order_ids_and_radar):
        if time.monotonic() > deadline:
            break
        order = orders[pk]
        start = time.perf_counter()
        if i % 2 == 0:
            with transaction.atomic():
                risk_assess_order(order=order, radar=radar)
            total.append((time.perf_counter() - start) * 1000)
            continue
        config = risk_config()
        verdict = risk_evaluate(
            signals_for_order(order, radar=radar),
            rules=list(config.rules),
            thresholds=config.thresholds,
            config=config,
            paid=True,
        )
        middle = time.perf_counter()
        with transaction.atomic():
            _store(order, verdict, stage="paid", radar=radar, started=start)
        evaluate.append((middle - start) * 1000)
        store.append((time.perf_counter() - middle) * 1000)
    return total, evaluate, store


def _time_rules(order_ids_and_radar: list[tuple[int, dict]]) -> dict[str, float]:
    """Mean milliseconds per order spent in each part of an evaluation, as _evaluate runs them at the paid stage:
    the snapshot check, the signals, the one velocity round trip, each rule type (all its rules), the model's
    features and the models' scoring (0 with no model in use), the allowlist."""
    from orders.models import Order
    from riskengine.config import risk_config
    from riskengine.features import feature_requests, features_for
    from riskengine.rules import EVALUATORS, list_matches, velocity_requests
    from riskengine.services import risk_rules
    from riskengine.signals import signals_for_order
    from riskengine.velocity import velocity_counts_many

    orders = Order.objects.in_bulk([pk for pk, _ in order_ids_and_radar])
    spent = dict.fromkeys(("config", "signals", "velocity_fetch", "allowlist", "features", "model"), 0.0)
    for pk, radar in order_ids_and_radar:
        start = time.perf_counter()
        config = risk_config()
        rules = risk_rules(config=config)
        spent["config"] += time.perf_counter() - start
        start = time.perf_counter()
        signals = signals_for_order(orders[pk], radar=radar)
        signals.memo.update(evaluating=True, config=config)
        spent["signals"] += time.perf_counter() - start
        start = time.perf_counter()
        signals.memo["velocity"] = velocity_counts_many(velocity_requests(rules, signals) + feature_requests(signals))
        spent["velocity_fetch"] += time.perf_counter() - start
        for rule in rules:
            start = time.perf_counter()
            EVALUATORS[rule.type](rule, signals)
            spent[rule.type] = spent.get(rule.type, 0.0) + time.perf_counter() - start
        start = time.perf_counter()
        features = features_for(signals)
        spent["features"] += time.perf_counter() - start
        for model in config.models:
            start = time.perf_counter()
            model.explain(features)
            spent["model"] += time.perf_counter() - start
        start = time.perf_counter()
        list_matches(signals, allow=True)
        spent["allowlist"] += time.perf_counter() - start
    return {kind: round(total * 1000 / len(order_ids_and_radar), 3) for kind, total in spent.items()}


def _profile(order_ids_and_radar: list[tuple[int, dict]], limit: int = 25) -> str:
    from orders.models import Order
    from riskengine.services import risk_assess_order

    orders = Order.objects.in_bulk([pk for pk, _ in order_ids_and_radar])
    profiler = cProfile.Profile()
    profiler.enable()
    for pk, radar in order_ids_and_radar:
        risk_assess_order(order=orders[pk], radar=radar)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(limit)
    return out.getvalue()


def bench_risk_scoring(
    n: int = 2000,
    *,
    history: int = 20000,
    hung: int = 30,
    budget_s: float = 300.0,
    profile: bool = False,
    what_if_indexes: bool = False,
) -> dict:
    """p50/p99 of risk_assess_order over `n` orders with the 20 rules of bench_risk_data.RULES active (all others
    off meanwhile): with Redis up, with Redis refusing connections (database fallback), and, on `hung` orders,
    with a Redis that accepts connections and never answers. Returns the figures; prints nothing."""
    from django.conf import settings
    from django.db import connection

    from riskengine import velocity
    from riskengine.models import RiskRule

    tag = uuid.uuid4().hex[:8]
    rng = random.Random(20240611)
    logging.getLogger("riskengine.velocity").setLevel(logging.ERROR)  # one warning per call while Redis is down
    previously_enabled = list(RiskRule.objects.filter(enabled=True).values_list("pk", flat=True))
    RiskRule.objects.filter(pk__in=previously_enabled).update(enabled=False)
    keys: list[str] = []
    try:
        work = seed_shop(tag=tag, n=n + 50, history=history, rng=rng)
        warm, work = work[-50:], work[:-50]  # the warm-up's orders are not timed again
        keys = warm_redis(order_ids=[pk for pk, _ in work + warm], rng=rng)
        with connection.cursor() as cursor:  # the statistics autovacuum keeps on a shop's tables
            cursor.execute("ANALYZE orders_order, orders_orderline, orders_orderevent, riskengine_fraudlabel")
        live = velocity._redis()
        if live is None or not live.ping():
            raise SystemExit("bench_risk: REDIS_URL must point at a running Redis")
        result: dict = {"rules": RiskRule.objects.filter(enabled=True).count(), "history_orders": history}
        with _velocity_client(_client_like_the_engines(settings.REDIS_URL)):
            _time_assessments(warm, budget_s=budget_s)  # warm-up: connections, caches, lazy imports
            total, evaluate, store = _time_assessments(work, budget_s=budget_s)
            per_rule = _time_rules(work[:300])
        result["redis"] = _summary(total) | {"evaluate": _summary(evaluate), "store": _summary(store)}
        result["redis"]["per_rule_type_ms"] = per_rule
        with _velocity_client(_client_like_the_engines("redis://127.0.0.1:1/0")):
            total, evaluate, store = _time_assessments(work, budget_s=budget_s)
            per_rule = _time_rules(work[:300])
        result["database"] = _summary(total) | {"evaluate": _summary(evaluate), "store": _summary(store)}
        result["database"]["per_rule_type_ms"] = per_rule
        if what_if_indexes:
            with _suggested_indexes():
                with _velocity_client(_client_like_the_engines(settings.REDIS_URL)):
                    total, evaluate, _ = _time_assessments(work, budget_s=budget_s)
                    per_rule = _time_rules(work[:300])
                result["redis_indexed"] = _summary(total) | {"per_rule_type_ms": per_rule}
                with _velocity_client(_client_like_the_engines("redis://127.0.0.1:1/0")):
                    total, evaluate, _ = _time_assessments(work, budget_s=budget_s)
                    per_rule = _time_rules(work[:300])
                result["database_indexed"] = _summary(total) | {"per_rule_type_ms": per_rule}
        with _hung_redis() as url, _velocity_client(_client_like_the_engines(url)):
            total, _, _ = _time_assessments(work[:hung], budget_s=budget_s)
        result["hung"] = _summary(total)
        if profile:
            with _velocity_client(_client_like_the_engines(settings.REDIS_URL)):
                result["profile_redis"] = _profile(work[:500])
            with _velocity_client(_client_like_the_engines("redis://127.0.0.1:1/0")):
                result["profile_database"] = _profile(work[:500])
        return result
    finally:
        if keys and velocity._redis() is not None:
            velocity._redis().delete(*keys)
        RiskRule.objects.filter(name__endswith=f" {tag}").delete()
        RiskRule.objects.filter(pk__in=previously_enabled).update(enabled=True)


def report(result: dict) -> str:
    def line(figures: dict) -> str:
        return f"p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms (max {figures['max_ms']:.1f})"

    redis, database, hung = result["redis"], result["database"], result["hung"]
    return "\n".join(
        [
            f"risk_assess_order, {result['rules']} rules, {result['history_orders']} past orders in the table:",
            f"  Redis up ({redis['orders']} orders): {line(redis)}; "
            f"evaluate p50 {redis['evaluate']['p50_ms']:.2f} / p99 {redis['evaluate']['p99_ms']:.2f} "
            f"(ceiling {DECISION_P99_MAX_MS:.0f}), "
            f"store p50 {redis['store']['p50_ms']:.2f} / p99 {redis['store']['p99_ms']:.2f}",
            f"  Redis refusing, database fallback ({database['orders']} orders): {line(database)}; "
            f"evaluate p50 {database['evaluate']['p50_ms']:.2f} / p99 {database['evaluate']['p99_ms']:.2f}",
            f"  mean ms per order by rule type, Redis up: {redis['per_rule_type_ms']}",
            f"  mean ms per order by rule type, database fallback: {database['per_rule_type_ms']}",
            f"  Redis hung, 50 ms socket timeouts ({hung['orders']} orders): {line(hung)}",
        ]
        + [
            f"  with the suggested indexes, {label}: {line(result[key])}; "
            f"by rule type {result[key]['per_rule_type_ms']}"
            for key, label in (("redis_indexed", "Redis up"), ("database_indexed", "database fallback"))
            if key in result
        ]
    )


def main() -> None:
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront.settings_test")
    from tests import bench  # sets DATABASE_URL to its own throwaway database

    n = int(next((a for a in sys.argv[1:] if a.isdigit()), 2000))
    bench.recreate_database()
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.test.utils import setup_test_environment

        setup_test_environment()
        call_command("migrate", verbosity=0)
        result = bench_risk_scoring(n, profile="--profile" in sys.argv)
        print(report(result))
        for key in ("profile_redis", "profile_database"):
            if key in result:
                print(f"\n# {key}\n{result[key]}")
    finally:
        from django.db import connections

        connections.close_all()
        bench.recreate_database(drop_only=True)


if __name__ == "__main__":
    main()
