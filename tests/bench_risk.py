"""Risk scoring latency: `risk_assess_order` with 20 active rules, Redis up, Redis refusing, Redis hung.

What is timed: the whole service for one paid order, as order_mark_paid calls it (signals from the order,
rules and thresholds loaded, every rule evaluated, the assessment stored with its reasons), without any
provider call. Each call runs in its own transaction, as in order_mark_paid, so the timing includes the
commit. The split between evaluating (the paid-stage decision: rules, features and models) and storing is
reported too. As in a running shop: the order's lines are already loaded (the payment read them), the tables
have their statistics, and the rules' change stamps are read once a second.

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
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PRODUCTION_RECHECK_SECONDS = 1.0  # storefront.settings' default for RISK_CONFIG_RECHECK_SECONDS
RULES = [
    ("bench blocklist", "blocklist", {}, 100),
    ("bench orders/email", "velocity", {"metric": "orders", "by": ["email"], "window_minutes": 60, "threshold": 5}, 25),
    (
        "bench orders/device",
        "velocity",
        {"metric": "orders", "by": ["device"], "window_minutes": 60, "threshold": 5},
        25,
    ),
    ("bench orders/ip", "velocity", {"metric": "orders", "by": ["ip"], "window_minutes": 60, "threshold": 10}, 15),
    ("bench orders/card", "velocity", {"metric": "orders", "by": ["card"], "window_minutes": 1440, "threshold": 5}, 15),
    (
        "bench failed/ip,email,device",
        "velocity",
        {"metric": "failed_payments", "by": ["ip", "email", "device"], "window_minutes": 60, "threshold": 3},
        40,
    ),
    (
        "bench distinct cards/email,ip,device",
        "velocity",
        {"metric": "distinct_cards", "by": ["email", "ip", "device"], "window_minutes": 1440, "threshold": 2},
        40,
    ),
    ("bench failed/card", "velocity", {"metric": "failed_payments", "by": ["card"], "window_minutes": 1440}, 30),
    ("bench disposable", "disposable_email", {}, 20),
    ("bench disposable (heavy)", "disposable_email", {}, 40),
    ("bench country card+billing", "country_mismatch", {"compare": ["card", "billing"]}, 15),
    ("bench country card", "country_mismatch", {"compare": ["card"]}, 10),
    ("bench amount 3x", "amount_vs_history", {"multiple": 3, "first_purchase_max": 20000}, 15),
    ("bench amount 10x", "amount_vs_history", {"multiple": 10, "first_purchase_max": 50000}, 25),
    ("bench high-risk product", "high_risk_product", {}, 10),
    ("bench high-risk product (heavy)", "high_risk_product", {}, 20),
    ("bench linked 1 hop", "linked_fraud", {"hops": 1}, 30),
    ("bench linked 2 hops", "linked_fraud", {"hops": 2}, 50),
    ("bench radar elevated", "radar", {"levels": ["elevated"]}, 20),
    ("bench radar elevated+highest", "radar", {"levels": ["elevated", "highest"]}, 30),
]


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


def _seed(*, tag: str, n: int, history: int, rng: random.Random) -> list[tuple[int, dict]]:
    """Rules, lists, a shop history and `n` freshly paid orders to assess. Returns (order id, radar) pairs."""
    from django.db.models import F, OuterRef, Subquery
    from django.utils import timezone

    from catalog.models import FulfilmentKind, Product
    from orders.models import Order, OrderEvent, OrderLine, PaymentState
    from riskengine.models import FraudLabel, ListEntry, RiskRule

    RiskRule.objects.bulk_create(
        RiskRule(name=f"{name} {tag}", type=type_, params=params, points=points)
        for name, type_, params, points in RULES
    )
    products = [
        Product.objects.create(
            name=f"Bench {i} {tag}",
            slug=f"bench-risk-{i}-{tag}",
            kind=FulfilmentKind.SERVICE,
            price_amount=price,
            high_risk=i == 0,
        )
        for i, price in enumerate([4900, 1999, 2900, 990, 14900])
    ]

    def public_ip() -> str:
        return f"{rng.randint(2, 190)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"

    # Customers: their own email, device, card and (mostly) IP; some share an office or carrier IP.
    shared_ips = [public_ip() for _ in range(20)]
    customers = [
        {
            "email": f"c{i}-{tag}@{'mailinator.com' if i % 25 == 0 else 'example.com'}",
            "ip": rng.choice(shared_ips) if i % 10 == 0 else public_ip(),
            "device": f"dev-{i}-{tag}",
            "card": f"card-{i}-{tag}",
        }
        for i in range(max(50, n // 4))
    ]
    # Lists as a shop accumulates them: most entries never match; IP entries are read in full for every order.
    entries = [ListEntry(kind="email", value=f"bad{i}-{tag}@example.net", created_by="bench") for i in range(400)]
    entries += [ListEntry(kind="email_domain", value=f"bad{i}-{tag}.example", created_by="bench") for i in range(100)]
    entries += [ListEntry(kind="ip", value=f"198.18.{i // 250}.{i % 250}", created_by="bench") for i in range(250)]
    entries += [ListEntry(kind="ip", value=f"100.{64 + i}.0.0/16", created_by="bench") for i in range(50)]
    entries += [ListEntry(kind="device", value=f"baddev-{i}-{tag}", created_by="bench") for i in range(100)]
    entries += [ListEntry(kind="card", value=f"badcard-{i}-{tag}", created_by="bench") for i in range(100)]
    entries += [ListEntry(kind="email", value=customers[7]["email"], allow=True, created_by="bench")]
    ListEntry.objects.bulk_create(entries)

    now = timezone.now()

    def order_for(customer: dict, product, *, paid_at) -> Order:
        return Order(
            email=customer["email"],
            currency="USD",
            subtotal_amount=product.price_amount,
            total_amount=product.price_amount,
            purchase_ip=customer["ip"],
            device_id=customer["device"],
            card_fingerprint=customer["card"] if paid_at else "",
            card_country=rng.choice(["US", "GB", "DE"]) if paid_at else "",
            billing_country=rng.choice(["US", "GB", "DE"]) if paid_at else "",
            status="fulfilled" if paid_at else "pending_payment",
            payment_state=PaymentState.PAID if paid_at else PaymentState.UNPAID,
            paid_at=paid_at,
        )

    def create(orders: list[Order], chosen_products: list) -> list[Order]:
        created = Order.objects.bulk_create(orders, batch_size=2000)
        OrderLine.objects.bulk_create(
            (
                OrderLine(
                    order=order,
                    product=product,
                    product_name=product.name,
                    kind=product.kind,
                    unit_price=product.price_amount,
                    quantity=1,
                    line_total=product.price_amount,
                )
                for order, product in zip(created, chosen_products, strict=True)
            ),
            batch_size=2000,
        )
        return created

    # History: older paid orders of other shoppers (the bulk of the table) and of the bench's customers.
    strangers = [
        {"email": f"s{i}-{tag}@example.org", "ip": public_ip(), "device": f"sdev{i}-{tag}", "card": f"s{i}-{tag}"}
        for i in range(history)
    ]
    past_products = [rng.choice(products) for _ in range(history)]
    past = create(
        [
            order_for(c, p, paid_at=now - timedelta(days=rng.randint(2, 300)))
            for c, p in zip(strangers, past_products, strict=True)
        ],
        past_products,
    )
    own_products = [rng.choice(products) for _ in customers for _ in range(2)]
    own = create(
        [
            order_for(c, own_products[2 * i + k], paid_at=now - timedelta(days=rng.randint(2, 60)))
            for i, c in enumerate(customers)
            for k in range(2)
        ],
        own_products,
    )
    # An order's history as the shop writes it (created, paid, delivered), dated when it happened.
    OrderEvent.objects.bulk_create(
        (
            OrderEvent(order=order, type=kind, actor="bench")
            for order in past + own
            for kind in ("order_created", "status_changed", "status_changed")
        ),
        batch_size=5000,
    )
    Order.objects.filter(pk__in=[o.pk for o in past + own]).update(created_at=F("paid_at"))
    OrderEvent.objects.filter(order__in=past + own).update(
        created_at=Subquery(Order.objects.filter(pk=OuterRef("order_id")).values("paid_at")[:1])
    )
    FraudLabel.objects.bulk_create(
        FraudLabel(order=order, source="dispute", is_fraud=True) for order in rng.sample(own, len(own) // 20)
    )
    FraudLabel.objects.bulk_create(
        FraudLabel(order=order, source="dispute", is_fraud=True) for order in rng.sample(past, len(past) // 100)
    )
    # The orders to assess: just paid, one per (customer, slot), some with failed attempts before.
    fresh_products = [rng.choice(products) for _ in range(n)]
    fresh_customers = [rng.choice(customers) for _ in range(n)]
    fresh = create(
        [order_for(c, p, paid_at=now) for c, p in zip(fresh_customers, fresh_products, strict=True)], fresh_products
    )
    OrderEvent.objects.bulk_create(
        OrderEvent(order=order, type="payment_failed", actor="bench") for order in fresh if rng.random() < 0.2
    )
    radars = [
        {},
        {"outcome_type": "authorized", "risk_level": "normal", "risk_score": 12},
        {"outcome_type": "authorized", "risk_level": "normal", "risk_score": 30},
        {"outcome_type": "authorized", "risk_level": "elevated", "risk_score": 67},
    ]
    return [(order.pk, rng.choice(radars)) for order in fresh]


def _warm_redis(*, order_ids: list[int], rng: random.Random) -> list[str]:
    """Velocity entries for the orders' identifiers, as checkout and payments would have left them."""
    from orders.models import Order
    from riskengine.signals import identifiers, signals_for_order
    from riskengine.velocity import _key, velocity_record

    keys: set[str] = set()
    now = time.time()
    for order in Order.objects.filter(pk__in=order_ids).prefetch_related("lines__product"):
        ids = identifiers(signals_for_order(order))
        velocity_record(metric="orders", ids=ids, member=str(order.pk), at=now - rng.randint(0, 3000))
        if rng.random() < 0.3:
            velocity_record(metric="failed_payments", ids=ids, member=f"{order.pk}:f", at=now - rng.randint(0, 3000))
        others = {k: v for k, v in ids.items() if k != "card"}
        velocity_record(metric="distinct_cards", ids=others, member=order.card_fingerprint, at=now)
        for metric in ("orders", "failed_payments", "distinct_cards"):
            keys.update(_key(metric, kind, value) for kind, value in ids.items())
    return sorted(keys)


def _time_assessments(
    order_ids_and_radar: list[tuple[int, dict]], *, budget_s: float, halves: int = 1000
) -> tuple[list, list, list]:
    """Time risk_assess_order per order, each in its own transaction as in order_mark_paid; on the first
    `halves` orders also time its two parts (evaluate, then store) separately."""
    from django.db import transaction

    from orders.models import Order
    from orders.selectors import order_lines
    from riskengine.config import risk_config
    from riskengine.services import _store, risk_assess_order, risk_evaluate
    from riskengine.signals import signals_for_order

    orders = Order.objects.in_bulk([pk for pk, _ in order_ids_and_radar])
    for order in orders.values():  # as _order_paid has them: its subscription check read them before
        order_lines(order)
    total, evaluate, store = [], [], []
    deadline = time.monotonic() + budget_s
    for i, (pk, radar) in enumerate(order_ids_and_radar):
        if time.monotonic() > deadline:
            break
        order = orders[pk]
        start = time.perf_counter()
        with transaction.atomic():
            risk_assess_order(order=order, radar=radar)
        total.append((time.perf_counter() - start) * 1000)
        if i >= halves:
            continue
        start = time.perf_counter()
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
    """p50/p99 of risk_assess_order over `n` orders with the 20 active RULES (all others disabled meanwhile):
    with Redis up, with Redis refusing connections (database fallback), and, on `hung` orders, with a Redis
    that accepts connections and never answers. Returns the figures; prints nothing."""
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    from riskengine import velocity
    from riskengine.config import risk_config_recheck
    from riskengine.models import RiskRule

    tag = uuid.uuid4().hex[:8]
    rng = random.Random(20240611)
    logging.getLogger("riskengine.velocity").setLevel(logging.ERROR)  # one warning per call while Redis is down
    previously_enabled = list(RiskRule.objects.filter(enabled=True).values_list("pk", flat=True))
    RiskRule.objects.filter(pk__in=previously_enabled).update(enabled=False)
    keys: list[str] = []
    stack = ExitStack()
    try:
        work = _seed(tag=tag, n=n, history=history, rng=rng)
        keys = _warm_redis(order_ids=[pk for pk, _ in work], rng=rng)
        with connection.cursor() as cursor:  # the statistics autovacuum keeps on a shop's tables
            cursor.execute("ANALYZE orders_order, orders_orderline, orders_orderevent, riskengine_fraudlabel")
        # As a shop runs: the rules' change stamps read once a second (tests read them for every assessment).
        stack.enter_context(override_settings(RISK_CONFIG_RECHECK_SECONDS=PRODUCTION_RECHECK_SECONDS))
        risk_config_recheck()
        live = velocity._redis()
        if live is None or not live.ping():
            raise SystemExit("bench_risk: REDIS_URL must point at a running Redis")
        result: dict = {"rules": RiskRule.objects.filter(enabled=True).count(), "history_orders": history}
        with _velocity_client(_client_like_the_engines(settings.REDIS_URL)):
            _time_assessments(work[:50], budget_s=budget_s)  # warm-up: connections, caches, lazy imports
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
        stack.close()
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
            f"evaluate p50 {redis['evaluate']['p50_ms']:.2f} / p99 {redis['evaluate']['p99_ms']:.2f}, "
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
