"""Two machines' worth: a second gunicorn and a second Celery worker (another "node") beside the bench's, against
the same PostgreSQL and Redis. Paid webhooks are spread over both nodes, a fifth of them sent to both (the
provider redelivering to another node behind the load balancer), and the exactly-once check must still pass."""

import time

from tests.load.checks import check_exactly_once, settle
from tests.load.scenarios import _paid_batch, _threads, post_webhook
from tests.load.stack import Stack


def two_nodes(stack: Stack, *, n: int = 300, concurrency: int = 16) -> dict:
    import requests

    from orders.models import OrderEvent, OrderEventType

    second = Stack(database_url=stack.env["DATABASE_URL"], secrets={})
    second.redis_port = stack.redis_port  # one Redis for both: broker, cache, counters
    second.node_name = f"{stack.node_name}-b"
    second.env = {**stack.env, "SITE_URL": second.url}
    second.start_web()
    second.start_worker()
    try:
        orders, _, events = _paid_batch("nodes", n)
        nodes = [stack, second]
        jobs = [(nodes[i % 2], event) for i, event in enumerate(events)]
        jobs += [(nodes[(i + 1) % 2], event) for i, event in enumerate(events) if i % 5 == 0]
        started = time.perf_counter()
        with _threads(concurrency) as pool:
            statuses = list(pool.map(lambda job: post_webhook(requests.Session(), job[0], job[1]), jobs))
        ids = [order.pk for order in orders]
        counts = settle(ids, timeout=120)
        elapsed = time.perf_counter() - started
        check = check_exactly_once(ids, label="two nodes")
        sent = OrderEvent.objects.filter(order_id__in=ids, type=OrderEventType.EMAIL_SENT)
        deadline = time.monotonic() + 60
        while sent.count() < len(ids) and time.monotonic() < deadline:
            time.sleep(0.2)
        emails = sent.count()
        if emails != len(ids) or sent.values("order_id").distinct().count() != len(ids):
            raise SystemExit(f"two nodes: {emails} delivery emails for {len(ids)} orders (one each expected)")
        return {
            "orders": n,
            "webhooks": len(jobs),
            "statuses": counts,
            "http": {code: statuses.count(code) for code in set(statuses)},
            "orders_per_s": n / elapsed,
            "emails": emails,
            "check": check,
        }
    finally:
        second.stop()
