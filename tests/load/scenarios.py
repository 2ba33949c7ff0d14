"""Load, contention and fault runs against the real stack (tests/load/stack.py). Figures, plus the
exactly-once check (tests/load/checks.py) at the end of each run, which fails loudly.

Orders are placed by the bench in the database (checkout itself is measured by the suite), each by a
shopper of its own (email, IP, device), so the risk engine's velocity rules see ordinary traffic.
Payments arrive as signed webhooks posted to gunicorn, redelivered on any non-2xx answer the way
Stripe redelivers them; a real Celery worker delivers.
"""

import random
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.load.checks import check_exactly_once, settle
from tests.load.stack import Stack, free_port, wait_for

WEBHOOK = "/payments/stripe/webhook/"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def _shopper(i: int, tag: str) -> dict:
    rng = random.Random(f"{tag}-{i}")
    ip = f"{rng.randint(11, 190)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return {"email": f"load-{tag}-{i}@example.com", "ip": ip, "device": f"dev-{tag}-{i}"}


def product_with_keys(slug: str, keys: int, *, price: int = 1500):
    from tests.factories import ProductFactory, add_keys

    product = ProductFactory(slug=slug, max_per_order=5, price_amount=price, low_stock_threshold=0)
    if keys:
        add_keys(product, keys, prefix=f"LOAD-{slug}")
    return product


def place_orders(product, n: int, *, tag: str) -> list:
    from orders.cart import CartLine
    from storefront.flow.checkout import checkout_create_order

    orders = []
    for i in range(n):
        who = _shopper(i, tag)
        orders.append(
            checkout_create_order(
                lines=[CartLine(product=product, quantity=1)],
                email=who["email"],
                shipping=None,
                locale="en",
                purchase_ip=who["ip"],
                user_agent="bench",
                device_id=who["device"],
            )
        )
    return orders


def open_payments(orders: list, *, tag: str) -> list:
    """A Payment row per order, as payment_start_for_order leaves it (the intent id is ours to invent)."""
    from payments.models import Payment, PaymentChannel

    channel = PaymentChannel.objects.get(code="stripe")
    return [
        Payment.objects.create(
            order=order,
            channel=channel,
            provider="stripe",
            provider_ref=f"pi_{tag}_{i}",
            amount=order.total_amount,
            currency=order.currency,
        )
        for i, order in enumerate(orders)
    ]


def succeeded_event(payment, *, event_id: str, expanded: bool) -> dict:
    """payment_intent.succeeded as Stripe sends it; `expanded` carries the charge (card, Radar, fee) inline,
    which spares the shop its fetch of the charge (used where the provider is not what is measured)."""
    intent = {
        "id": payment.provider_ref,
        "object": "payment_intent",
        "amount": payment.amount,
        "amount_received": payment.amount,
        "currency": payment.currency.lower(),
        "status": "succeeded",
        "metadata": {"order_number": payment.order.number},
        "latest_charge": f"ch_{payment.provider_ref[3:]}",
    }
    if expanded:
        intent["latest_charge"] = {
            "id": f"ch_{payment.provider_ref[3:]}",
            "outcome": {"type": "authorized", "risk_level": "normal", "risk_score": 8},
            "balance_transaction": {"fee": round(payment.amount * 0.029) + 30},
            "payment_method_details": {"card": {"fingerprint": f"fp{payment.pk}", "country": "US"}},
        }
    return {"id": event_id, "object": "event", "type": "payment_intent.succeeded", "data": {"object": intent}}


def failed_event(payment, *, event_id: str) -> dict:
    intent = {
        "id": payment.provider_ref,
        "object": "payment_intent",
        "amount": payment.amount,
        "currency": payment.currency.lower(),
        "status": "requires_payment_method",
        "last_payment_error": {"message": "Your card was declined.", "charge": f"ch_fail_{event_id}"},
        "metadata": {"order_number": payment.order.number},
    }
    return {"id": event_id, "object": "event", "type": "payment_intent.payment_failed", "data": {"object": intent}}


def post_webhook(session: requests.Session, stack: Stack, event: dict, *, retries: int = 40) -> int:
    """Deliver like Stripe: again after any error or non-2xx, with a short backoff. Returns the attempts."""
    from tests.conftest import signed_stripe_event

    for attempt in range(1, retries + 1):
        payload, header = signed_stripe_event(event)
        try:
            response = session.post(
                stack.url + WEBHOOK,
                data=payload,
                headers={"Content-Type": "application/json", "Stripe-Signature": header},
                timeout=30,
            )
            if response.status_code < 300:
                return attempt
        except requests.RequestException:
            pass
        time.sleep(min(2.0, 0.05 * attempt))
    raise SystemExit(f"webhook {event['id']} was never accepted after {retries} attempts")


def _threads(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n)


def _close_db(fn: Callable) -> Callable:
    def run(*args, **kwargs):
        from django.db import connection

        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return run


def sweep() -> None:
    """What beat does every minute: re-enqueue paid orders nobody finished (the bench sweeps at once)."""
    from fulfillment.tasks import sweep_undelivered_orders

    sweep_undelivered_orders()


# --- pipeline: paid webhook to key visible ----------------------------------------------------------------


def pipeline(stack: Stack, *, localstripe_url: str, levels=(1, 4, 16), per_level: int = 96, budget_s=60.0) -> dict:
    """Orders paid at localstripe, then their signed webhook posted to gunicorn; the shop fetches the
    charge from localstripe, assesses risk, and the worker delivers. Timed from the webhook POST until
    the key comes back from the order's reveal API, with `level` shoppers at once."""
    import stripe

    client = stripe.StripeClient("sk_test_bench", base_addresses={"api": localstripe_url}, max_network_retries=0)
    return {level: _pipeline_level(stack, client, level, per_level, budget_s) for level in levels}


def _pipeline_level(stack: Stack, client, level: int, per_level: int, budget_s: float) -> dict:
    from storefront.flow.checkout import payment_start_for_order
    from tests.conftest import TEST_CARD

    product = product_with_keys(f"pipe-{level}", per_level)
    orders = place_orders(product, per_level, tag=f"pipe{level}")

    @_close_db
    def prepare(order):
        payment = payment_start_for_order(order=order)
        token = client.v1.tokens.create(params={"card": TEST_CARD})
        client.v1.payment_intents.update(payment.provider_ref, params={"payment_method": token.card.id})
        client.v1.payment_intents.confirm(payment.provider_ref)
        return payment

    with _threads(8) as pool:
        payments = list(pool.map(prepare, orders))
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + budget_s

    posted: list[int] = []

    def buyer(payment) -> None:
        if time.monotonic() > deadline:
            return
        with lock:
            posted.append(payment.order_id)
        session = requests.Session()
        order, line = payment.order, payment.order.lines.first()
        event = succeeded_event(payment, event_id=f"evt_pipe_{payment.provider_ref}", expanded=False)
        start = time.perf_counter()
        post_webhook(session, stack, event)
        while time.perf_counter() - start < 30:
            body = session.get(f"{stack.url}/api/orders/{order.token}/", timeout=10).json()
            if body["lines"][0]["delivered"]:
                keys = session.post(f"{stack.url}/api/orders/{order.token}/reveal/", json={"line": line.pk}, timeout=10)
                if keys.status_code == 200 and keys.json()["keys"]:
                    with lock:
                        latencies.append((time.perf_counter() - start) * 1000)
                    return
            time.sleep(0.02)
        raise SystemExit(f"order {order.number}: key not visible 30 s after its webhook")

    started = time.perf_counter()
    with _threads(level) as pool:
        list(pool.map(_close_db(buyer), payments))
    wall = time.perf_counter() - started
    return {
        "orders": len(latencies),
        "orders_per_s": len(latencies) / wall,
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 0.99),
        "check": check_exactly_once(posted, label=f"pipeline x{level}"),
    }


def product_page(stack: Stack, *, clients: int = 16, seconds: float = 10.0) -> dict:
    """The storefront's product page under `clients` concurrent browsers for `seconds` (bounded)."""
    product = product_with_keys("page-load", 20)
    return page_load(f"{stack.url}/p/{product.slug}/", clients=clients, seconds=seconds)


def bare_view(stack: Stack, *, clients: int = 16, seconds: float = 10.0) -> dict:
    """The ceiling beside the product page: a one-query view on a second gunicorn of the same shape, settings,
    middleware and database (tests/load/bare_settings.py), loaded by the same client. Started and stopped here."""
    port = free_port()
    env = {**stack.env, "DJANGO_SETTINGS_MODULE": "tests.load.bare_settings"}
    web = stack.spawn_web(port=port, workers=2, threads=4, env=env, name="gunicorn-bare")
    url = f"http://127.0.0.1:{port}/bare/"
    try:
        wait_for(lambda: requests.get(url, timeout=2).status_code == 200, timeout=30, what="bare gunicorn")
        return page_load(url, clients=clients, seconds=seconds)
    finally:
        web.terminate()
        web.wait(30)


def page_load(url: str, *, clients: int, seconds: float) -> dict:
    """GET `url` from `clients` threads for `seconds`: requests per second, latency, errors."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def browse() -> None:
        session = requests.Session()
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            response = session.get(url, timeout=10)
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                if response.status_code == 200:
                    latencies.append(elapsed)
                else:
                    errors[0] += 1

    requests.get(url, timeout=10)  # warm
    started = time.perf_counter()
    with _threads(clients) as pool:
        for _ in range(clients):
            pool.submit(browse)
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 0.99),
        "errors": errors[0],
    }


# --- contention -------------------------------------------------------------------------------------------


def contention(stack: Stack, *, buyers: int = 200, keys: int = 50, concurrency: int = 32) -> dict:
    """`buyers` paid orders for the last `keys` keys of one product, their webhooks all at once."""
    product = product_with_keys("last-keys", keys)
    orders = place_orders(product, buyers, tag="cont")
    payments = open_payments(orders, tag="cont")
    events = [succeeded_event(p, event_id=f"evt_cont_{i}", expanded=True) for i, p in enumerate(payments)]
    started = time.perf_counter()
    with _threads(concurrency) as pool:
        list(pool.map(lambda e: post_webhook(requests.Session(), stack, e), events))
    counts = settle([o.pk for o in orders], timeout=120, sweep=sweep)
    elapsed = time.perf_counter() - started
    checked = check_exactly_once([o.pk for o in orders], label="contention")
    from orders.models import OrderStatus

    if counts.get(OrderStatus.FULFILLED) != keys or counts.get(OrderStatus.AWAITING_STOCK) != buyers - keys:
        raise SystemExit(f"contention: expected {keys} delivered and {buyers - keys} awaiting stock, got {counts}")
    return {"buyers": buyers, "keys": keys, "seconds": elapsed, "statuses": counts, "check": checked}


# --- faults -----------------------------------------------------------------------------------------------


def _paid_batch(tag: str, n: int, *, keys: int | None = None, expanded: bool = True):
    product = product_with_keys(f"fault-{tag}", n if keys is None else keys)
    orders = place_orders(product, n, tag=tag)
    payments = open_payments(orders, tag=tag)
    events = [succeeded_event(p, event_id=f"evt_{tag}_{i}", expanded=expanded) for i, p in enumerate(payments)]
    return orders, payments, events


def _post_all(stack: Stack, events: list[dict], *, concurrency: int = 16) -> list[int]:
    with _threads(concurrency) as pool:
        return list(pool.map(lambda e: post_webhook(requests.Session(), stack, e), events))


def fault_worker_killed(stack: Stack, *, n: int = 150) -> dict:
    """SIGKILL the Celery worker in the middle of delivering, restart it; retries and the sweeper finish."""
    from orders.models import OrderStatus

    orders, _, events = _paid_batch("kill", n)
    stack.stop_worker()
    _post_all(stack, events)  # every order paid; its delivery task waits in Redis
    stack.start_worker()
    time.sleep(0.4)
    delivered_before = _count(orders, OrderStatus.FULFILLED)
    stack.kill_worker()
    stack.start_worker()
    counts = settle([o.pk for o in orders], timeout=120, sweep=sweep)
    return {
        "orders": n,
        "delivered_before_kill": delivered_before,
        "statuses": counts,
        "check": check_exactly_once([o.pk for o in orders], label="worker SIGKILL"),
    }


def fault_redis_restarted(stack: Stack, *, n: int = 120) -> dict:
    """Stop Redis (broker, cache, velocity counters) while webhooks arrive, start it again, empty."""
    orders, _, events = _paid_batch("redis", n)
    half = n // 2
    attempts = _post_all(stack, events[:half])
    stack.stop_redis()
    down_at = time.perf_counter()
    attempts += _post_all(stack, events[half:])  # accepted meanwhile: payments recorded, tasks not queued
    time.sleep(max(0.0, 2.0 - (time.perf_counter() - down_at)))
    stack.start_redis()
    counts = settle([o.pk for o in orders], timeout=120, sweep=sweep)
    return {
        "orders": n,
        "webhook_attempts": sum(attempts),
        "statuses": counts,
        "check": check_exactly_once([o.pk for o in orders], label="Redis restart"),
    }


def fault_redis_killed(stack: Stack, *, n: int = 120, down_s: float = 2.0) -> dict:
    """SIGKILL Redis (broker, cache, velocity counters) mid-burst and start it again, empty, `down_s` later.

    Nobody restarts anything by hand and the bench does not sweep: Celery beat runs the sweeper (every few
    seconds here, every minute in production) and the stack restarts a worker that died, as systemd or
    compose would. Timed from Redis answering again until the last of the burst's orders was delivered.
    """
    from orders.models import OrderLine, OrderStatus

    orders, _, events = _paid_batch("rkill", n)
    stack.start_beat()
    restarts_before = dict(stack.restarts)
    worker_before = stack.worker_pid()
    burst: dict = {}

    def post() -> None:
        burst["attempts"] = _post_all(stack, events, concurrency=8)

    poster = threading.Thread(target=_close_db(post))
    poster.start()
    deadline = time.monotonic() + 60
    while _count_paid(orders) < n // 3 and time.monotonic() < deadline and poster.is_alive():
        time.sleep(0.05)
    paid_before = _count_paid(orders)
    stack.kill_redis()
    time.sleep(down_s)
    stack.start_redis()
    back_at = time.time()
    poster.join()
    counts = settle([o.pk for o in orders], timeout=180)  # no sweep from here: beat's sweeper finishes them
    stack.stop_beat()
    last = OrderLine.objects.filter(order__in=[o.pk for o in orders]).order_by("-delivered_at").first()
    recovery = max(0.0, last.delivered_at.timestamp() - back_at) if last and last.delivered_at else float("nan")
    worker_restarts = stack.restarts["worker"] - restarts_before["worker"]
    worker_survived = stack.worker_pid() == worker_before and not worker_restarts
    return {
        "orders": n,
        "paid_before_kill": paid_before,
        "webhook_attempts": sum(burst.get("attempts", [])),
        "recovery_s": recovery,
        "worker": "survived" if worker_survived else f"died, restarted by the stack {worker_restarts}x",
        "statuses": counts,
        "delivered": counts.get(OrderStatus.FULFILLED, 0),
        "check": check_exactly_once([o.pk for o in orders], label="Redis SIGKILL"),
    }


def fault_database_connections_dropped(stack: Stack, *, n: int = 120, database: str) -> dict:
    """Terminate every other connection to the shop's database, twice, while webhooks arrive."""
    orders, _, events = _paid_batch("pgdrop", n)
    done = threading.Event()
    dropped = [0]

    def killer() -> None:
        import psycopg

        with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
            for _ in range(2):
                time.sleep(0.5)
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    [database],
                ).fetchall()
                dropped[0] += len(rows)
        done.set()

    thread = threading.Thread(target=killer)
    thread.start()
    attempts = _post_all(stack, events, concurrency=8)
    thread.join()
    from django.db import connection

    connection.close()  # ours was terminated too
    counts = settle([o.pk for o in orders], timeout=120, sweep=_close_db(sweep))
    return {
        "orders": n,
        "connections_dropped": dropped[0],
        "webhook_attempts": sum(attempts),
        "statuses": counts,
        "check": check_exactly_once([o.pk for o in orders], label="PostgreSQL connections dropped"),
    }


def fault_provider_timeouts(stack: Stack, *, n: int = 24) -> dict:
    """The shop's Stripe stops answering: the charge fetch each webhook triggers times out. Orders are
    still delivered (Radar 'not assessed'), the timeouts are recorded, and the breaker stops the waiting."""
    from payments.health import call_log_flush
    from payments.models import PaymentChannel, ProviderCall

    hole = _black_hole()
    PaymentChannel.objects.filter(code="stripe").update(api_base=f"http://127.0.0.1:{hole.getsockname()[1]}")
    try:
        orders, _, events = _paid_batch("timeout", n, expanded=False)
        started = time.perf_counter()
        _post_all(stack, events, concurrency=8)
        counts = settle([o.pk for o in orders], timeout=120, sweep=sweep)
        elapsed = time.perf_counter() - started
    finally:
        PaymentChannel.objects.filter(code="stripe").update(api_base="", failures_in_row=0, breaker_open_until=None)
        hole.close()
    call_log_flush()  # the rows queued in Redis, written
    timeouts = ProviderCall.objects.filter(channel__code="stripe", operation="fetch", outcome="timeout").count()
    return {
        "orders": n,
        "seconds": elapsed,
        "fetch_timeouts": timeouts,
        "statuses": counts,
        "check": check_exactly_once([o.pk for o in orders], label="provider timing out"),
    }


def fault_webhooks_twice_out_of_order(stack: Stack, *, n: int = 100) -> dict:
    """Every order gets a failure and a success notification, each delivered twice, all shuffled."""
    orders, payments, successes = _paid_batch("dup", n)
    events = successes * 2 + [failed_event(p, event_id=f"evt_dupfail_{i}") for i, p in enumerate(payments)] * 2
    random.Random(7).shuffle(events)
    _post_all(stack, events)
    counts = settle([o.pk for o in orders], timeout=120, sweep=sweep)
    return {
        "orders": n,
        "webhooks": len(events),
        "statuses": counts,
        "check": check_exactly_once([o.pk for o in orders], label="webhooks twice, out of order"),
    }


def _count(orders, status) -> int:
    from orders.models import Order

    return Order.objects.filter(pk__in=[o.pk for o in orders], status=status).count()


def _count_paid(orders) -> int:
    from django.db import connection

    from orders.models import Order, OrderStatus

    try:
        return Order.objects.filter(pk__in=[o.pk for o in orders]).exclude(status=OrderStatus.PENDING_PAYMENT).count()
    finally:
        connection.close()


def _black_hole():
    """A port that accepts connections and never answers."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    return listener


def _admin_dsn() -> str:
    import os

    return os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
