"""Redis killed with SIGKILL while the worker delivers: the worker survives it and the sweeper finishes.

A real `celery -A storefront worker` runs on a throwaway Redis and this run's test database. Redis is
SIGKILLed while a delivery is in progress and comes back empty; the delivery then finishes and is
acknowledged on the connection the worker lost, and an order whose delivery task died with Redis is
delivered by the sweeper, as beat runs it every minute.
"""

import contextlib

import psycopg
import pytest
from django.db import connection

from fulfillment import tasks as fulfillment_tasks
from fulfillment.keys import keys_set_state
from fulfillment.models import LicenseKey
from orders.models import Order, OrderStatus
from storefront.flow.payment import order_mark_paid
from tests.factories import ProductFactory, add_keys
from tests.faults import CeleryWorker, ThrowawayRedis, broker_client, wait_until
from tests.harness import find_binary

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not find_binary("redis-server"), reason="redis-server is not installed"),
]


@pytest.fixture
def redis_server(tmp_path):
    server = ThrowawayRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def worker(redis_server, tmp_path, transactional_db):
    # two processes: one busy with a delivery while the other waits for work (a BRPOP in flight), as under load
    process = CeleryWorker(broker_url=redis_server.url, log_dir=tmp_path, concurrency=2)
    yield process
    process.stop()


def pay(order, *, email: str):
    """The order's payment recorded (delivered with it when its product has keys; else it waits for stock)."""
    order_mark_paid(
        order_id=order.pk, amount=order.total_amount, currency=order.currency, payment_ref=f"pi_{email}", actor="test"
    )
    return order


@contextlib.contextmanager
def order_row_locked(order):
    """Hold the order's row lock in a connection of our own, so a delivery that starts waits for us."""
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"], autocommit=False
    ) as conn:
        conn.execute("SELECT id FROM orders_order WHERE id = %s FOR UPDATE", [order.pk])
        yield conn
        conn.rollback()


def deliveries_waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            [connection.settings_dict["NAME"]],
        )
        return cursor.fetchone()[0]


def status_of(order) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order.pk)


def test_the_workers_broker_connection_comes_apart_cleanly_when_redis_dies_with_work_in_flight(redis_server):
    """The teardown Celery's consumer runs before it reconnects, step by step, on the shop's broker transport:
    with kombu's own it raised AttributeError ('hostname' of None) and the worker exited for good."""
    from kombu import Exchange, Queue
    from kombu.common import ignore_errors

    from storefront.celery import app as celery_app

    tasks = Queue("faults.tasks", Exchange("faults.tasks"), "faults.tasks")
    control = Queue("faults.control", Exchange("faults.control", type="fanout"), auto_delete=True)
    with celery_app.connection_for_write(url=redis_server.url) as producer_connection:
        for n in range(2):
            producer_connection.Producer().publish(
                {"n": n}, exchange=tasks.exchange, routing_key="faults.tasks", declare=[tasks]
            )
    connection = celery_app.connection_for_read(url=redis_server.url)
    # Given a consumer like the worker's: a task received and not acknowledged yet, a BRPOP waiting for the next,
    # and the control channel's auto-delete queue (Celery's pidbox)
    received = []
    connection.Consumer(tasks, callbacks=[lambda body, message: received.append(message)], prefetch_count=2).consume()
    connection.drain_events(timeout=30)
    connection.Consumer(control, channel=connection.channel(), callbacks=[lambda body, message: None]).consume()
    connection.default_channel._brpop_start()
    assert received and connection.default_channel._in_poll

    # When Redis is killed, and the consumer tears the connection down as Celery does before reconnecting
    redis_server.kill()
    with contextlib.suppress(Exception):
        connection.collect(socket_timeout=1)

    # Then closing it raises no more than a connection error, which the consumer answers by reconnecting
    ignore_errors(connection, connection.close)


@pytest.mark.parametrize("delivery_ends", ["while Redis is down", "after Redis is back"])
def test_the_worker_survives_redis_killed_mid_delivery_and_the_sweeper_finishes_the_orders(
    make_order, redis_server, worker, monkeypatch, delivery_ends
):
    # Given two paid orders waiting for stock, and the stock arrived but their delivery tasks never reached the
    # broker
    product = ProductFactory()
    add_keys(product, 2)
    keys = list(LicenseKey.objects.filter(product=product).values_list("pk", flat=True))
    monkeypatch.setattr(fulfillment_tasks.deliver_order, "delay", lambda order_id: None)
    first, second = (
        make_order((product, 1), email="first@example.com"),
        make_order((product, 1), email="second@example.com"),
    )
    keys_set_state(key_ids=keys, action="lock", actor="staff")  # the keys held back while they are paid
    pay(first, email="first")
    pay(second, email="second")
    assert status_of(first) == status_of(second) == OrderStatus.AWAITING_STOCK
    keys_set_state(key_ids=keys, action="unlock", actor="staff")
    # and a worker on a Redis of our own
    worker.start()
    broker = broker_client(redis_server.url)
    try:
        # When the first order's delivery is in progress (held on the order's row lock)
        with order_row_locked(first) as lock:
            broker.send_task("fulfillment.tasks.deliver_order", args=[first.pk])
            wait_until(deliveries_waiting_on_a_lock, timeout=60, what="the delivery waiting on the order's lock")
            # and Redis is killed with SIGKILL, then comes back empty, the delivery ending meanwhile or after
            redis_server.kill()
            worker.wait_for_log("Connection to broker lost")
            if delivery_ends == "while Redis is down":
                lock.rollback()
                wait_until(lambda: status_of(first) == OrderStatus.FULFILLED, timeout=60, what="first delivered")
            redis_server.start()
            worker.wait_for_log("Connected to ", count=2, timeout=120)
        # and, Redis back, beat runs the sweeper as it does every minute
        broker.send_task("fulfillment.tasks.sweep_undelivered_orders")

        # Then both orders are delivered, by the worker that was running when Redis died
        for order in (first, second):
            wait_until(
                lambda order=order: status_of(order) == OrderStatus.FULFILLED or not worker.alive(),
                timeout=120,
                what=f"order {order.number} delivered",
            )
        assert worker.alive(), "the worker exited:\n" + worker.log_text()[-3000:]
        assert status_of(first) == status_of(second) == OrderStatus.FULFILLED
        assert "Unrecoverable error" not in worker.log_text()
    finally:
        broker.close()


def test_the_bench_stack_restarts_a_worker_that_died_by_itself_as_systemd_would(make_order, transactional_db):
    import os
    import shutil
    import signal

    from django.conf import settings

    from tests.load.stack import Stack

    # Given the bench's stack running a worker on its own Redis and this run's database
    db = connection.settings_dict
    stack = Stack(
        database_url=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        secrets={
            "SECRET_KEY": settings.SECRET_KEY,
            "KEY_ENCRYPTION_KEYS": ",".join(settings.KEY_ENCRYPTION_KEYS),
            "KEY_FINGERPRINT_SECRET": settings.KEY_FINGERPRINT_SECRET,
            "STRIPE_WEBHOOK_SECRET": settings.STRIPE_WEBHOOK_SECRET,
            "RISK_VELOCITY_PREFIX": settings.RISK_VELOCITY_PREFIX,
            "CONN_MAX_AGE": "0",
        },
    )
    broker = None
    try:
        stack.start_redis()
        stack.start_worker(concurrency=1)
        first_pid = stack.worker_pid()

        # When the worker's main process dies on its own (as after kombu's "Unrecoverable error")
        os.kill(first_pid, signal.SIGKILL)

        # Then the stack starts a new one, which delivers a paid order
        wait_until(lambda: stack.restarts["worker"] == 1, timeout=60, what="the worker restarted")
        assert stack.worker_pid() not in (None, first_pid)
        product = ProductFactory()
        add_keys(product, 1)
        order = make_order((product, 1))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(fulfillment_tasks.deliver_order, "delay", lambda order_id: None)
            pay(order, email="restarted")
        broker = broker_client(stack.redis_url)
        broker.send_task("fulfillment.tasks.deliver_order", args=[order.pk])
        wait_until(lambda: status_of(order) == OrderStatus.FULFILLED, timeout=120, what="the order delivered")
    finally:
        if broker is not None:
            broker.close()
        stack.stop()
        shutil.rmtree(stack.dir, ignore_errors=True)


def test_a_key_import_whose_worker_is_sigkilled_mid_run_is_resumed_by_beat_without_a_duplicate(
    redis_server, tmp_path, transactional_db, settings
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from fulfillment.imports import BATCH_LINES, key_import_create
    from fulfillment.models import ImportStatus, KeyEvent, KeyImport, LicenseKey

    # Given a merchant's file of 8 batches' worth of keys (a few repeated), uploaded to a worker of our own
    lines = [f"BIG-{i:06d}" for i in range(8 * BATCH_LINES)]
    lines[7] = lines[3]  # a repeat inside the file
    product = ProductFactory()
    media = settings.STORAGES["default"]["OPTIONS"]["location"]
    worker = CeleryWorker(
        broker_url=redis_server.url,
        log_dir=tmp_path,
        extra_env={"PRIVATE_MEDIA_ROOT": media, "KEY_IMPORT_STALL_AFTER_MINUTES": "0"},
    )
    broker = broker_client(redis_server.url)
    with pytest.MonkeyPatch.context() as patch:  # the task goes to our Redis, not to the eager test app
        patch.setattr(fulfillment_tasks.run_key_import, "delay", lambda import_id: None)
        key_import = key_import_create(
            product=product, upload=SimpleUploadedFile("big.txt", "\n".join(lines).encode()), actor="staff:ada"
        )
    try:
        worker.start()
        broker.send_task("fulfillment.imports.run_key_import", args=[key_import.pk])

        def committed() -> int:
            return KeyImport.objects.values_list("processed_lines", flat=True).get(pk=key_import.pk)

        # When the worker has committed a batch, is held before its next one (we lock the import's row, so it
        # cannot finish meanwhile), and is killed with SIGKILL, pool and all
        wait_until(lambda: committed() >= BATCH_LINES, timeout=120, what="a first batch committed")
        with psycopg.connect(**_db_params(), autocommit=False) as conn:
            conn.execute("SELECT id FROM fulfillment_keyimport WHERE id = %s FOR UPDATE", [key_import.pk])
            wait_until(deliveries_waiting_on_a_lock, timeout=60, what="the import waiting for its next batch")
            worker.kill()
            conn.rollback()
        stopped_at = committed()
        assert KeyImport.objects.get(pk=key_import.pk).status == ImportStatus.RUNNING
        assert BATCH_LINES <= stopped_at < len(lines)

        # and a new worker starts, and beat runs its stalled-import job (stall limit 0 here: no waiting)
        worker.start()
        broker.send_task("fulfillment.tasks.resume_stalled_key_imports")

        # Then the import finishes after the batches it had committed, every key once
        wait_until(
            lambda: KeyImport.objects.get(pk=key_import.pk).status == ImportStatus.DONE,
            timeout=180,
            what="the import finished",
        )
        done = KeyImport.objects.get(pk=key_import.pk)
        assert (done.processed_lines, done.added, done.duplicates_in_file) == (len(lines), len(lines) - 1, 1)
        pool = LicenseKey.objects.filter(product=product)
        assert pool.count() == len(set(lines))
        assert pool.values("fingerprint").distinct().count() == len(set(lines))
        assert KeyEvent.objects.filter(key__product=product, type="imported").count() == len(set(lines))
    finally:
        broker.close()
        worker.stop()


def _db_params() -> dict:
    db = connection.settings_dict
    return {"host": db["HOST"], "port": db["PORT"] or 5432, "user": db["USER"], "dbname": db["NAME"]}
