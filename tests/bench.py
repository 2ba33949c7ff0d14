"""`make bench`: figures, not pass/fail. Runs on PostgreSQL + Redis in its own database.

Every loop is bounded in count and time; all traffic stays on 127.0.0.1.
"""

import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront.settings_test")
BASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/storefront")
BENCH_DB = f"storefront_bench_{os.getpid()}"
os.environ["DATABASE_URL"] = BASE_URL.rsplit("/", 1)[0] + "/" + BENCH_DB


def recreate_database(*, drop_only: bool = False) -> None:
    import psycopg

    admin = BASE_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        if not drop_only:
            conn.execute(f"CREATE DATABASE {BENCH_DB}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bench_webhook_to_key_visible(n: int = 200, budget_s: float = 60.0) -> dict:
    """Signed payment webhook in, then the order page shows the key: sequential, in-process."""
    from django.test import Client

    from payments.models import Payment
    from tests.conftest import payment_intent_event, signed_stripe_event
    from tests.factories import ProductFactory, add_keys

    product = ProductFactory(slug="bench-latency", max_per_order=1)
    add_keys(product, n)
    client = Client()
    samples: list[float] = []
    deadline = time.monotonic() + budget_s
    for i in range(n):
        if time.monotonic() > deadline:
            break
        order = _order(product)
        Payment.objects.create(
            order=order, provider="stripe", provider_ref=f"pi_lat_{i}", amount=order.total_amount, currency="USD"
        )
        payload, header = signed_stripe_event(
            payment_intent_event(event_id=f"evt_lat_{i}", intent_id=f"pi_lat_{i}", amount=order.total_amount)
        )
        start = time.perf_counter()
        client.post(
            "/payments/stripe/webhook/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
        )
        page = client.post(f"/order/{order.token}/reveal/", {"line": order.lines.get().pk}, follow=True)
        elapsed = time.perf_counter() - start
        if b'class="key"' not in page.content:
            raise SystemExit(f"order {order.number}: key not visible after its webhook")
        samples.append(elapsed * 1000)
    return {"orders": len(samples), "p50_ms": statistics.median(samples), "p99_ms": percentile(samples, 0.99)}


def _order(product, quantity: int = 1):
    from orders.cart import CartLine
    from storefront.flow.checkout import checkout_create_order

    return checkout_create_order(
        lines=[CartLine(product=product, quantity=quantity)],
        email="bench@example.com",
        shipping=None,
        locale="en",
        purchase_ip="127.0.0.1",
        user_agent="bench",
    )


def bench_key_claims(
    *, products: int, buyers: int = 16, orders_total: int = 3200, budget_s: float = 60.0, full_delivery: bool
) -> dict:
    """`buyers` concurrent threads take keys from `products` pools: either the claim alone (one
    transaction per unit) or the whole delivery of a paid order (status, events, email)."""
    from django.db import connection, transaction

    from fulfillment.keys import keys_claim_for_line
    from fulfillment.models import LicenseKey
    from fulfillment.services import order_deliver
    from orders.models import Order, OrderLine, OrderStatus
    from tests.factories import ProductFactory, add_keys

    label = "full" if full_delivery else "claim"
    pools = [ProductFactory(slug=f"bench-{label}-{products}-{i}", max_per_order=1) for i in range(products)]
    per_product = orders_total // products
    order_ids: list[int] = []
    for product in pools:
        add_keys(product, per_product)
        for _ in range(per_product):
            order_ids.append(_order(product).pk)
    Order.objects.filter(pk__in=order_ids).update(status=OrderStatus.PAID)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE fulfillment_licensekey")
    queue = list(order_ids)
    lock = threading.Lock()
    deadline = time.monotonic() + budget_s
    done = [0]

    def worker() -> None:
        try:
            while time.monotonic() < deadline:
                with lock:
                    if not queue:
                        return
                    order_id = queue.pop()
                if full_delivery:
                    order_deliver(order_id=order_id)
                else:
                    with transaction.atomic():
                        line = OrderLine.objects.get(order_id=order_id)
                        keys_claim_for_line(line=line, units=[0])
                with lock:
                    done[0] += 1
        finally:
            connection.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(buyers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    claimed = LicenseKey.objects.filter(product__in=pools, order_line__isnull=False).count()
    distinct_lines = (
        LicenseKey.objects.filter(product__in=pools).exclude(order_line=None).values("order_line").distinct()
    )
    if claimed != done[0] or distinct_lines.count() != claimed:
        raise SystemExit(f"exactly-once violated: {done[0]} deliveries, {claimed} keys claimed")
    return {
        "buyers": buyers,
        "products": products,
        "orders": done[0],
        "seconds": elapsed,
        "keys_per_s": done[0] / elapsed,
    }


def main() -> None:
    from devtools.localstripe_process import localstripe_start
    from tests.load.stack import Stack

    only = set(sys.argv[1:])  # e.g. `tests/harness.py --bench load` runs only the load and fault runs
    # `fault:<name>` (e.g. fault:redis_killed) starts the stack and runs only that fault; no report is written
    faults_only = {arg.split(":", 1)[1] for arg in only if arg.startswith("fault:")}
    stripe = localstripe_start()
    stack = Stack(database_url=os.environ["DATABASE_URL"], secrets={})
    stack.start_redis()
    os.environ.update(
        REDIS_URL=stack.redis_url,
        STRIPE_API_BASE=stripe.url,
        FULFILMENT_SWEEP_AFTER_MINUTES="0",
        RISK_VELOCITY_PREFIX=f"risk:bench{os.getpid()}",
    )
    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()  # locmem email, like the suite
    import logging

    logging.getLogger().setLevel(logging.WARNING)  # the figures, not every request to localstripe
    for noisy in ("stripe", "riskengine.velocity", "payments", "fulfillment.stock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    call_command("migrate", verbosity=0)
    results: dict = {"when": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine()}
    print(f"# Benchmarks {results['when']}: {results['machine']}")
    try:
        if not only or "inprocess" in only:
            results["inprocess"] = in_process_figures(stripe)
        elif "cost" in only:  # `tests/harness.py --bench cost`: one paid order's cost alone, no report written
            order_cost_figures(stripe)
        elif "risk" in only:  # `tests/harness.py --bench risk`: the risk scoring figures alone, no report written
            risk_figures()
        if "nodes" in only:  # `tests/harness.py --bench nodes`: the two-node run alone
            _stack_started(stack, stripe)
            nodes_figures(stack)
        if "page" in only:  # `tests/harness.py --bench page`: the product page beside the bare view, alone
            from tests.load import scenarios

            _stack_started(stack, stripe)
            page, bare = scenarios.product_page(stack), scenarios.bare_view(stack)
            print(
                f"product page {page['requests_per_s']:.0f} req/s (p50 {page['p50_ms']:.1f} ms); bare one-query view "
                f"on the same gunicorn {bare['requests_per_s']:.0f} req/s (p50 {bare['p50_ms']:.1f} ms)"
            )
        if "stackcost" in only:  # `tests/harness.py --bench stackcost`: one paid order on the real stack alone
            from tests.load.stack_cost import paid_orders_on_the_stack

            _stack_started(stack, stripe)
            cost = paid_orders_on_the_stack(stack, localstripe_url=stripe.url, localstripe_pid=stripe.process.pid)
            print(
                f"one paid order on the stack, every process: {cost['cpu_ms']:.1f} ms CPU to key delivered "
                f"(p50 {cost['cpu_ms_p50']:.1f}), {cost['cpu_ms_with_email']:.1f} ms with the email sent; by process "
                + ", ".join(f"{k} {v:.1f}" for k, v in cost["by_process_ms"].items())
            )
        if not only or "load" in only or faults_only:
            _stack_started(stack, stripe)
            results["load"] = load_figures(
                stack, localstripe_url=stripe.url, localstripe_pid=stripe.process.pid, faults_only=faults_only
            )
        # last: ten thousand renewals leave localstripe holding 10,000 more customers and intents, and the fake's
        # own lookups grow with what it holds (its CPU per paid order went from 6 to 159 ms when this ran first)
        if (not only or "renewals" in only) and not faults_only:  # `--bench renewals`: 10,000 subscriptions due at once
            results["renewals"] = renewal_figures(stripe)
    finally:
        stack.stop()
        stripe.stop()
    if faults_only:
        print(f"\n(only {', '.join(sorted(faults_only))}: docs/benchmarks.md left as it was; logs in {stack.dir})")
        return
    if only in ({"risk"}, {"cost"}, {"stackcost"}, {"nodes"}, {"renewals"}, {"page"}):
        print(f"\n(only the {next(iter(only))} figures: docs/benchmarks.md left as it was)")
        return
    from tests.load.report import write_report

    path = write_report(results)
    print(f"\nwritten to {path.relative_to(ROOT)} (logs of the run's processes in {stack.dir})")


RENEWAL_SUBSCRIPTIONS = int(os.environ.get("BENCH_RENEWALS", "10000"))


def renewal_figures(stripe) -> dict:
    """Issue 17: ten thousand subscriptions due at the same minute, renewed by four workers (tests/load/renewals.py)."""
    from tests.load.renewals import renew_all, subscriptions_due

    ids = subscriptions_due(count=RENEWAL_SUBSCRIPTIONS, localstripe_url=stripe.url, label=str(os.getpid()))
    figures = renew_all(subscription_ids=ids, workers=4)
    print(
        f"renewals: {figures['subscriptions']} subscriptions due at the same minute, {figures['workers']} workers: "
        f"{figures['renewals_per_s']:.1f} renewals/s ({figures['seconds']:.0f} s; claimed and handed out in "
        f"{figures['sweep_s']:.1f} s), each charged once"
    )
    return figures


def _stack_started(stack, stripe) -> None:
    """gunicorn and a Celery worker on the bench's database and Redis, with this run's secrets."""
    from django.conf import settings

    from storefront.celery import app as celery_app

    celery_app.conf.task_always_eager = False  # the real worker delivers from here on
    stack.env.update(
        SECRET_KEY=settings.SECRET_KEY,
        KEY_ENCRYPTION_KEYS=",".join(settings.KEY_ENCRYPTION_KEYS),
        KEY_FINGERPRINT_SECRET=settings.KEY_FINGERPRINT_SECRET,
        STRIPE_WEBHOOK_SECRET=settings.STRIPE_WEBHOOK_SECRET,
        STRIPE_API_BASE=stripe.url,
        REDIS_URL=stack.redis_url,
        RISK_VELOCITY_PREFIX=settings.RISK_VELOCITY_PREFIX,
    )
    stack.collect_static()
    stack.start_web()
    stack.start_worker()


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory = next(
            int(line.split()[1]) // 1024 // 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration, ValueError):
        memory = 0
    import psycopg
    import redis

    with psycopg.connect(BASE_URL.rsplit("/", 1)[0] + "/postgres") as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    redis_version = redis.Redis.from_url(os.environ["REDIS_URL"]).info("server")["redis_version"]
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, PostgreSQL {pg}, Redis {redis_version}, all on 127.0.0.1"
    )


def in_process_figures(stripe) -> dict:
    from tests.bench_import import bench_key_import

    figures: dict = {}
    figures["order_cost"] = order_cost_figures(stripe)
    figures["import"] = imported = bench_key_import()
    print(f"key import: {imported['keys_per_s']:.0f} keys/s ({imported['keys']} keys in {imported['seconds']:.1f} s)")
    figures["webhook"] = latency = bench_webhook_to_key_visible()
    print(
        f"webhook -> key visible (in-process, sequential, {latency['orders']} orders): "
        f"p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms"
    )
    figures["claims"] = []
    for full in (False, True):
        for products in (1, 10):
            claims = bench_key_claims(products=products, full_delivery=full)
            figures["claims"].append({"full": full, **claims})
            what = "paid orders delivered (claim + status + events + email)" if full else "keys claimed"
            print(
                f"{what}, {claims['buyers']} concurrent buyers, {products} product(s): "
                f"{claims['keys_per_s']:.0f}/s ({claims['orders']} in {claims['seconds']:.1f} s)"
            )
    figures.update(risk_figures())
    return figures


# Issue 12's ceilings for one paid order, checkout to key delivered and email queued (the email task apart).
ORDER_SQL_MAX, ORDER_CPU_MS_MAX = 25, 60.0
TO_KEY = ("checkout", "webhook", "deliver_task")


def order_cost_figures(stripe) -> dict:
    """What one paid order costs, by stage, beside the floors measured in the same run: a SKIP LOCKED claim in
    plain SQL and a bare one-query Django view (tests/load/order_cost.py)."""
    import redis

    from payments.providers import provider_cache_clear
    from tests.load.order_cost import ceiling_claim, ceiling_view, cost_table, paid_order_cost, scale_up

    redis_client = redis.Redis.from_url(os.environ["REDIS_URL"])
    cost = paid_order_cost(orders=60, localstripe=stripe, redis_client=redis_client)
    claim, view = ceiling_claim(), ceiling_view()
    to_key = {key: sum(cost["stages"][stage][key] for stage in TO_KEY) for key in cost["total"]}
    print(f"one paid order, by stage (mean of {cost['orders']}; CPU of this process, its PostgreSQL backend, Redis and")
    print("localstripe; the email task runs after the key is out):")
    print(cost_table(cost))
    print(
        f"checkout to key delivered: {to_key['statements']:.1f} SQL statements (ceiling {ORDER_SQL_MAX}), "
        f"{to_key['cpu_ms']:.1f} ms CPU (ceiling {ORDER_CPU_MS_MAX:.0f}), {to_key['transactions']:.1f} transactions, "
        f"{to_key['redis_commands']:.0f} Redis commands"
    )
    print(
        f"floors in this run: a SKIP LOCKED claim in plain SQL {claim['cpu_ms']:.2f} ms CPU ({claim['per_s']:.0f}/s "
        f"on one connection); a bare one-query Django view {view['cpu_ms']:.2f} ms CPU ({view['per_s']:.0f}/s); "
        f"a paid order = {to_key['cpu_ms'] / view['cpu_ms']:.1f} bare views, "
        f"{to_key['cpu_ms'] / claim['cpu_ms']:.0f} claims"
    )
    product = scale_up()
    provider_cache_clear()  # new connections to localstripe: it closed the idle ones while the data went in
    scaled = paid_order_cost(orders=60, localstripe=stripe, redis_client=redis_client, product=product)
    scaled_to_key = {key: sum(scaled["stages"][stage][key] for stage in TO_KEY) for key in scaled["total"]}
    print("the same with 100,000 keys in stock and a million provider calls in the health window:")
    print(cost_table(scaled))
    worse = {key: scaled_to_key[key] / to_key[key] - 1 for key in ("cpu_ms", "statements") if to_key[key]}
    print(
        "checkout to key delivered at scale: "
        + ", ".join(f"{key} {100 * change:+.0f}%" for key, change in worse.items())
        + " (a figure more than 10% worse would mean something grows with the data)"
    )
    return {
        "cost": cost,
        "to_key": to_key,
        "ceiling_claim": claim,
        "ceiling_view": view,
        "at_scale": scaled,
        "at_scale_to_key": scaled_to_key,
    }


def risk_figures() -> dict:
    """Risk scoring latency with the rules alone, then with a trained risk model active."""
    from tests.bench_risk import bench_risk_scoring
    from tests.bench_risk import report as risk_report

    n = int(os.environ.get("BENCH_RISK_ORDERS", "1000"))
    figures = {"risk": bench_risk_scoring(n=n, history=20000)}
    print(risk_report(figures["risk"]))
    figures["risk_model"] = bench_risk_with_model(n=n)
    print(f"with risk model v{figures['risk_model']['model']} active (features computed, stored and scored):")
    print(risk_report(figures["risk_model"]))
    return figures


def bench_risk_with_model(*, n: int) -> dict:
    """bench_risk_scoring with a risk model active: every paid assessment also computes and stores the order's
    features and the model scores it. The model is trained on a labelled history of stored features (60 fraud,
    340 good orders) that is deleted afterwards, and retired, so the load runs that follow see the rules alone."""
    from orders.models import Order
    from riskengine.learning import risk_model_retire, risk_model_train
    from riskengine.models import ListEntry
    from tests.bench_risk import bench_risk_scoring
    from tests.riskengine.test_learning import labelled_history

    ListEntry.objects.filter(created_by="bench").delete()  # bench_risk_scoring lists its IPs again, untagged
    before = Order.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    labelled_history(fraud=60, good=340)
    model = risk_model_train(actor="bench", activate=True).model
    Order.objects.filter(pk__gt=before).delete()
    if model is None:
        raise SystemExit("bench: the risk model could not be trained")
    try:
        return bench_risk_scoring(n=n, history=20000) | {"model": model.version}
    finally:
        risk_model_retire(version=model.version, actor="bench")


def load_figures(stack, *, localstripe_url: str, localstripe_pid: int, faults_only: set[str] = frozenset()) -> dict:
    from tests.load import scenarios
    from tests.load.stack_cost import paid_orders_on_the_stack

    figures: dict = {"faults": {}}
    if faults_only:
        return figures | {"faults": run_faults(stack, faults_only)}
    figures["stack_cost"] = cost = paid_orders_on_the_stack(
        stack, localstripe_url=localstripe_url, localstripe_pid=localstripe_pid
    )
    print(
        f"one paid order on the stack, every process (gunicorn, worker, PostgreSQL, Redis, localstripe), checkout to "
        f"key delivered and email queued: {cost['cpu_ms']:.1f} ms CPU (p50 {cost['cpu_ms_p50']:.1f}; ceiling "
        f"{ORDER_CPU_MS_MAX:.0f}), {cost['cpu_ms_with_email']:.1f} ms with the email sent; "
        f"{cost['orders']} orders one at a time"
    )
    figures["two_nodes"] = nodes_figures(stack)
    figures["pipeline"] = scenarios.pipeline(stack, localstripe_url=localstripe_url)
    for level, row in figures["pipeline"].items():
        print(
            f"pipeline, {level} at once: {row['orders_per_s']:.1f} orders/s, "
            f"webhook -> key visible p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms ({row['orders']} orders)"
        )
    figures["product_page"] = page = scenarios.product_page(stack)
    figures["bare_view"] = bare = scenarios.bare_view(stack)
    print(
        f"product page, {page['clients']} clients: {page['requests_per_s']:.0f} req/s, "
        f"p50 {page['p50_ms']:.1f} ms, p99 {page['p99_ms']:.1f} ms, {page['errors']} errors; the bare one-query "
        f"view on the same gunicorn: {bare['requests_per_s']:.0f} req/s "
        f"(the page at {page['requests_per_s'] / bare['requests_per_s']:.0%} of it)"
    )
    figures["contention"] = contention = scenarios.contention(stack)
    print(f"contention: {contention['statuses']} in {contention['seconds']:.1f} s; exactly once: {contention['check']}")
    figures["faults"] = run_faults(stack)
    return figures


def nodes_figures(stack) -> dict:
    from tests.load.two_nodes import two_nodes

    nodes = two_nodes(stack)
    print(
        f"two nodes (2 gunicorn, 2 workers, one PostgreSQL and Redis): {nodes['orders']} orders by {nodes['webhooks']} "
        f"webhooks spread over both, a fifth to both: {nodes['statuses']}, {nodes['orders_per_s']:.0f} orders/s, "
        f"{nodes['emails']} emails; exactly once: {nodes['check']}"
    )
    return nodes


def run_faults(stack, names: set[str] | None = None) -> dict:
    from tests.load import scenarios

    runs = {
        "worker_killed": scenarios.fault_worker_killed,
        "redis_restarted": scenarios.fault_redis_restarted,
        "redis_killed": scenarios.fault_redis_killed,
        "database_connections_dropped": lambda s: scenarios.fault_database_connections_dropped(
            s, database=os.environ["DATABASE_URL"].rsplit("/", 1)[1]
        ),
        "provider_timeouts": scenarios.fault_provider_timeouts,
        "webhooks_twice_out_of_order": scenarios.fault_webhooks_twice_out_of_order,
    }
    unknown = (names or set()) - set(runs)
    if unknown:
        raise SystemExit(f"unknown fault(s) {sorted(unknown)}; known: {sorted(runs)}")
    faults: dict = {}
    for name, run in runs.items():
        if names and name not in names:
            continue
        faults[name] = result = run(stack)
        extra = ""
        if "recovery_s" in result:
            extra = (
                f"; Redis back to last order delivered {result['recovery_s']:.1f} s, worker {result['worker']}, "
                f"{result['paid_before_kill']} paid before the kill"
            )
        print(f"fault {name}: {result['statuses']}{extra}; exactly once: {result['check']}")
    return faults


if __name__ == "__main__":
    try:
        main()
    finally:
        from django.db import connections

        connections.close_all()
        recreate_database(drop_only=True)
