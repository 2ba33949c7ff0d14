"""What one paid order costs on the real stack, every process counted: gunicorn (2 workers x 4 threads), the Celery
worker and its pool, every PostgreSQL process, the stack's Redis and localstripe, read from /proc (Linux).

Orders go one at a time, so nothing else runs meanwhile: checkout through gunicorn's API (the order, its keys
held, its payment opened at localstripe), the shopper's confirmation at localstripe (not counted: it is Stripe's
work and the shopper's), then the signed webhook, until the order is delivered (its email queued), and again
until the worker sent the email.
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
    """The PostgreSQL processes that work for the stack: the backends connected to its database and the server's
    own processes (WAL writer, checkpointer...), not the backends of other databases on the same server (another
    suite running beside the bench would be counted otherwise)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL")
        return [row[0] for row in cursor.fetchall()]


def stack_cpu_by_process(stack: Stack, *, localstripe_pid: int, exclude: set[int]) -> dict[str, float]:
    """CPU seconds so far of each part of the stack (processes that ended meanwhile are not counted)."""
    tree = _children()
    groups = {
        "gunicorn": _tree(stack.web.pid, tree) if stack.web is not None else [],
        "worker": _tree(stack.worker.pid, tree) if stack.worker is not None else [],
        "postgres": [pid for pid in _postgres_pids() if pid not in exclude],
        "redis": [stack.redis.pid] if stack.redis is not None else [],
        "localstripe": [localstripe_pid],
    }
    return {name: sum(_proc_cpu_s(pid) for pid in pids) for name, pids in groups.items()}


def stack_cpu_s(stack: Stack, *, localstripe_pid: int, exclude: set[int]) -> float:
    return sum(stack_cpu_by_process(stack, localstripe_pid=localstripe_pid, exclude=exclude).values())


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
    split_start: dict[str, float] = {}
    samples: list[float] = []  # checkout to key delivered (the email task queued, maybe under way)
    with_email: list[float] = []  # and until the worker sent the email
    for i in range(orders + 3):
        if i == 3:
            split_start = stack_cpu_by_process(stack, localstripe_pid=localstripe_pid, exclude=ours)
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
        delivered = Order.objects.filter(pk=payment.order_id, status="fulfilled")
        _wait(delivered.exists, payment, "delivered")
        to_key = used + stack_cpu_s(stack, localstripe_pid=localstripe_pid, exclude=ours) - before
        _wait(payment.order.events.filter(type=OrderEventType.EMAIL_SENT).exists, payment, "emailed")
        emailed = used + stack_cpu_s(stack, localstripe_pid=localstripe_pid, exclude=ours) - before
        if i >= 3:  # the first orders warm up every process
            samples.append(to_key * 1000)
            with_email.append(emailed * 1000)
    split_end = stack_cpu_by_process(stack, localstripe_pid=localstripe_pid, exclude=ours)
    return {
        # every process's CPU over the measured orders, the shopper's confirmations at localstripe included
        "by_process_ms": {k: 1000 * (split_end[k] - split_start[k]) / len(samples) for k in split_end},
        "orders": len(samples),
        "cpu_ms": statistics.fmean(samples),
        "cpu_ms_p50": statistics.median(samples),
        "cpu_ms_with_email": statistics.fmean(with_email),
    }


def _wait(done, payment, what: str) -> None:
    deadline = time.monotonic() + 30
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"order {payment.order.number}: not {what} 30 s after its webhook")
        time.sleep(0.005)
