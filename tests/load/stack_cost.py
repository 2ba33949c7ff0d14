"""What one paid order costs on the real stack, every process counted: gunicorn (2 workers x 4 threads), the Celery
worker and its pool, every PostgreSQL process, the stack's Redis and localstripe, read from /proc (Linux).

Orders go one at a time, so nothing else runs meanwhile: checkout through gunicorn's API (the order, its keys
held, its payment opened at localstripe), the shopper's confirmation at localstripe (not counted: it is Stripe's
work and the shopper's), then the signed webhook, until the order is delivered and its email sent by the worker.
The bench's own PostgreSQL connection, which watches for the email, is left out.
"""

import os
import statistics
import time
from pathlib import Path

import requests

from tests.load.order_cost import _proc_cpu_s
from tests.load.stack import Stack


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _tree(root: int, tree: dict[int, list[int]]) -> list[int]:
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def stack_cpu_s(stack: Stack, *, localstripe_pid: int, exclude: set[int]) -> float:
    tree = _children()
    pids = set(_postgres_pids()) - exclude
    for process in (stack.web, stack.worker):
        if process is not None:
            pids.update(_tree(process.pid, tree))
    pids.update(pid for pid in (getattr(stack.redis, "pid", None), localstripe_pid) if pid)
    return sum(_proc_cpu_s(pid) for pid in pids)


def paid_orders_on_the_stack(stack: Stack, *, localstripe_url: str, localstripe_pid: int, orders: int = 40) -> dict:
    """Mean CPU ms of every process per paid order, checkout to delivered and emailed (sequential)."""
    import stripe
    from django.db import connection

    from orders.models import Order, OrderEventType
    from payments.models import Payment
    from tests.conftest import TEST_CARD
    from tests.load.scenarios import _shopper, post_webhook, product_with_keys, succeeded_event

    client = stripe.StripeClient("sk_test_bench", base_addresses={"api": localstripe_url}, max_network_retries=0)
    product = product_with_keys(f"stackcost-{time.monotonic_ns()}", orders + 5)
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        ours = {cursor.fetchone()[0]}
    samples: list[float] = []
    for i in range(orders + 3):
        shopper = _shopper(i, f"stackcost{os.getpid()}")
        session = requests.Session()
        before = stack_cpu_s(stack, localstripe_pid=localstripe_pid, exclude=ours)
        response = session.post(
            f"{stack.url}/api/checkout/",
            json={"email": shopper["email"], "lines": [{"product": product.slug, "quantity": 1}]},
            headers={"X-Forwarded-For": shopper["ip"]},
            timeout=30,
        )
        response.raise_for_status()
        used = stack_cpu_s(stack, localstripe_pid=localstripe_pid, exclude=ours) - before
        payment = Payment.objects.select_related("order").get(order__token=response.json()["order_token"])
        card = client.v1.tokens.create(params={"card": TEST_CARD})  # the shopper, at Stripe: not counted
        client.v1.payment_intents.update(payment.provider_ref, params={"payment_method": card.card.id})
        client.v1.payment_intents.confirm(payment.provider_ref)
        before = stack_cpu_s(stack, localstripe_pid=localstripe_pid, exclude=ours)
        post_webhook(session, stack, succeeded_event(payment, event_id=f"evt_stackcost_{i}", expanded=False))
        deadline = time.monotonic() + 30
        while not payment.order.events.filter(type=OrderEventType.EMAIL_SENT).exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"order {payment.order.number}: no email 30 s after its webhook")
            time.sleep(0.01)
        used += stack_cpu_s(stack, localstripe_pid=localstripe_pid, exclude=ours) - before
        assert Order.objects.get(pk=payment.order_id).status == "fulfilled"
        if i >= 3:  # the first orders warm up every process
            samples.append(used * 1000)
    return {"orders": len(samples), "cpu_ms": statistics.fmean(samples), "cpu_ms_p50": statistics.median(samples)}
