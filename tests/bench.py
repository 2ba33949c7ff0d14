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
        page = client.post(f"/order/{order.token}/reveal/", {"line": order.lines.get().pk})
        elapsed = time.perf_counter() - start
        if b'class="key"' not in page.content:
            raise SystemExit(f"order {order.number}: key not visible after its webhook")
        samples.append(elapsed * 1000)
    return {"orders": len(samples), "p50_ms": statistics.median(samples), "p99_ms": percentile(samples, 0.99)}


def _order(product, quantity: int = 1):
    from orders.cart import CartLine
    from orders.services import checkout_create_order

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
    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()  # locmem email, like the suite
    call_command("migrate", verbosity=0)
    print(
        f"# Benchmarks {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, PostgreSQL + Redis on 127.0.0.1"
    )
    from tests.bench_import import bench_key_import

    imported = bench_key_import()
    print(f"key import: {imported['keys_per_s']:.0f} keys/s ({imported['keys']} keys in {imported['seconds']:.1f} s)")
    latency = bench_webhook_to_key_visible()
    print(
        f"webhook -> key visible (in-process, sequential, {latency['orders']} orders): "
        f"p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms"
    )
    for full in (False, True):
        for products in (1, 10):
            claims = bench_key_claims(products=products, full_delivery=full)
            what = "paid orders delivered (claim + status + events + email)" if full else "keys claimed"
            print(
                f"{what}, {claims['buyers']} concurrent buyers, {products} product(s): "
                f"{claims['keys_per_s']:.0f}/s ({claims['orders']} in {claims['seconds']:.1f} s)"
            )
    from tests.bench_risk import bench_risk_scoring
    from tests.bench_risk import report as risk_report

    print(risk_report(bench_risk_scoring(n=int(os.environ.get("BENCH_RISK_ORDERS", "500")), history=5000)))


if __name__ == "__main__":
    try:
        main()
    finally:
        from django.db import connections

        connections.close_all()
        recreate_database(drop_only=True)
