"""What one paid order costs, stage by stage, in one process: CPU of every process involved, SQL statements,
transactions and Redis commands.

The stages are what a real order goes through on the stack: checkout (the API: the order, its keys held,
its payment opened at localstripe), the shopper confirming at Stripe (localstripe only: not ours, not counted), the
signed payment webhook, then the tasks the shop queued (delivery, the email), run here as a worker would.
Tasks are captured instead of published, so the broker's own commands (about two per task) are not counted.

CPU is read for every process that works for the order: this one (web and worker roles), its PostgreSQL
backend, the Redis server and localstripe (from /proc, Linux). Statements are counted by Django's execute
wrapper on this process's connection, transactions as autocommit statements plus commits. Redis commands
come from the server's own counter (INFO), less the INFO calls themselves.
"""

import json
import os
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

STAGES = ("checkout", "webhook", "deliver_task", "email_task")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


class Meter:
    """Counts statements and transactions on the default connection, and reads every process's CPU."""

    def __init__(self, *, redis_client, localstripe_pid: int | None):
        from django.db import connection

        self.connection = connection
        self.redis = redis_client
        self.localstripe_pid = localstripe_pid
        self.statements = 0
        self.transactions = 0
        self.trace: list[str] | None = None  # set to a list to record each statement (a stage's SQL, to read)

    def _execute(self, execute, sql, params, many, context):
        self.statements += 1
        if self.trace is not None:
            self.trace.append(("  " if self.connection.in_atomic_block else "* ") + sql[:160])
        if not self.connection.in_atomic_block:
            self.transactions += 1  # autocommit: a transaction of its own
        return execute(sql, params, many, context)

    @contextmanager
    def installed(self):
        connection = self.connection
        connection.ensure_connection()
        original_commit = connection.commit

        def commit():
            self.transactions += 1
            return original_commit()

        with connection.execute_wrapper(self._execute), mock.patch.object(connection, "commit", commit):
            yield self

    def _redis_counters(self) -> tuple[int, float]:
        stats = self.redis.info("stats")
        cpu = self.redis.info("cpu")
        return stats["total_commands_processed"], cpu["used_cpu_user"] + cpu["used_cpu_sys"]

    def reading(self) -> dict:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        self.statements -= 1  # the pid query above
        if not self.connection.in_atomic_block:
            self.transactions -= 1
        commands, redis_cpu = self._redis_counters()
        return {
            "cpu_self": time.process_time(),
            "cpu_postgres": _proc_cpu_s(backend),
            "cpu_redis": redis_cpu,
            "cpu_localstripe": _proc_cpu_s(self.localstripe_pid) if self.localstripe_pid else 0.0,
            "statements": self.statements,
            "transactions": self.transactions,
            "redis_commands": commands,
        }


def _delta(before: dict, after: dict) -> dict:
    d = {key: after[key] - before[key] for key in before}
    d["redis_commands"] -= 2  # the two INFO calls of the reading itself
    d["cpu_ms"] = 1000 * sum(d.pop(key) for key in ("cpu_self", "cpu_postgres", "cpu_redis", "cpu_localstripe"))
    return d


def paid_order_cost(
    *, orders: int = 40, warmup: int = 5, localstripe, redis_client, trace: bool = False, product=None
) -> dict:
    """Run `warmup` + `orders` paid orders one by one (of `product`, or a new one); per stage, the mean cost of the
    measured ones."""
    import stripe
    from celery.app.task import Task
    from django.test import Client, override_settings

    from payments.models import Payment
    from tests.conftest import TEST_CARD, signed_stripe_event
    from tests.factories import ProductFactory, add_keys
    from tests.load.scenarios import _shopper, succeeded_event

    if product is None:
        product = ProductFactory(slug=f"cost-{time.monotonic_ns()}", max_per_order=1)
        add_keys(product, warmup + orders)
    queued: list[tuple] = []

    def capture(task, args=None, kwargs=None, **options):
        queued.append((task, tuple(args or ()), dict(kwargs or {})))

    client = Client()
    stripe_client = stripe.StripeClient("sk_test_bench", base_addresses={"api": localstripe.url})
    meter = Meter(redis_client=redis_client, localstripe_pid=localstripe.process.pid)
    run = time.monotonic_ns()  # shoppers and events of this run only
    samples = {stage: [] for stage in STAGES}
    traced: list[str] = []
    production = override_settings(RISK_CONFIG_RECHECK_SECONDS=1.0, DEBUG=False)  # as storefront.settings has it
    with mock.patch.object(Task, "apply_async", capture), meter.installed(), production:
        for i in range(warmup + orders):
            stage_costs = {}
            meter.trace = [] if trace and i == warmup else None
            shopper = _shopper(i, f"cost{run}")
            client.cookies.clear()  # each shopper's own browser (device cookie); one handler, as a server has
            before = meter.reading()
            response = client.post(
                "/api/checkout/",
                data=json.dumps({"email": shopper["email"], "lines": [{"product": product.slug, "quantity": 1}]}),
                content_type="application/json",
                REMOTE_ADDR=shopper["ip"],
            )
            assert response.status_code == 201, response.content
            token = response.json()["order_token"]
            assert response.json()["payment"], (response.json(), localstripe.process.poll())  # opened at localstripe
            stage_costs["checkout"] = _delta(before, meter.reading())
            _mark(meter, "webhook")
            payment = Payment.objects.select_related("order").get(order__token=token)
            card = stripe_client.v1.tokens.create(params={"card": TEST_CARD})  # the shopper, at Stripe
            stripe_client.v1.payment_intents.update(payment.provider_ref, params={"payment_method": card.card.id})
            stripe_client.v1.payment_intents.confirm(payment.provider_ref)
            payload, header = signed_stripe_event(
                succeeded_event(payment, event_id=f"evt_cost_{run}_{i}", expanded=False)
            )
            before = meter.reading()
            response = client.post(
                "/payments/webhook/stripe/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
            )
            assert response.status_code == 200, response.content
            after = meter.reading()
            stage_costs["webhook"] = _delta(before, after)
            for stage, name in (("deliver_task", "deliver_order"), ("email_task", "send_order_email")):
                _mark(meter, stage)
                before = meter.reading()
                for task, args, kwargs in [q for q in queued if q[0].name.endswith(name)]:
                    queued.remove((task, args, kwargs))
                    task.apply(args=args, kwargs=kwargs, throw=True)
                stage_costs[stage] = _delta(before, meter.reading())
            traced = traced or meter.trace
            meter.trace = None
            payment.order.refresh_from_db()
            assert payment.order.status == "fulfilled", (
                payment.order.status,
                list(payment.order.events.values_list("note", flat=True)),
            )
            if i >= warmup:
                for stage in STAGES:
                    samples[stage].append(stage_costs[stage])
    per_stage = {
        stage: {key: statistics.fmean(s[key] for s in samples[stage]) for key in samples[stage][0]} for stage in STAGES
    }
    total = {key: sum(per_stage[stage][key] for stage in STAGES) for key in per_stage[STAGES[0]]}
    return {
        "orders": orders,
        "stages": per_stage,
        "total": total,
        "left_queued": [q[0].name for q in queued],
        "trace": traced,
    }


def _mark(meter: Meter, stage: str) -> None:
    if meter.trace is not None:
        meter.trace.append(f"## {stage}")


def cost_table(cost: dict) -> str:
    rows = [f"{'stage':<14}{'CPU ms':>9}{'SQL':>7}{'xacts':>7}{'Redis':>7}"]
    for stage, c in [*cost["stages"].items(), ("total", cost["total"])]:
        rows.append(
            f"{stage:<14}{c['cpu_ms']:>9.1f}{c['statements']:>7.1f}{c['transactions']:>7.1f}{c['redis_commands']:>7.1f}"
        )
    return "\n".join(rows)


def ceiling_claim(*, n: int = 300) -> dict:
    """The floor under a paid order: one key claimed with SKIP LOCKED in its own transaction, in plain SQL on a
    connection of its own (no Django). CPU of this process and its backend per transaction."""
    import psycopg
    from django.db import connection

    from fulfillment.models import LicenseKey
    from tests.factories import ProductFactory, add_keys

    product = ProductFactory(slug=f"ceiling-{time.monotonic_ns()}")
    add_keys(product, n)
    db = connection.settings_dict
    sql = (
        f"UPDATE {LicenseKey._meta.db_table} SET status = 'sold' WHERE id = (SELECT id FROM {LicenseKey._meta.db_table}"
        " WHERE product_id = %s AND status = 'available' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
    )
    with psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"]) as conn:
        backend = conn.info.backend_pid
        cpu, backend_cpu, started = time.process_time(), _proc_cpu_s(backend), time.perf_counter()
        for _ in range(n):
            with conn.transaction():
                conn.execute(sql, [product.pk]).fetchone()
        wall = time.perf_counter() - started
        used = (time.process_time() - cpu) + (_proc_cpu_s(backend) - backend_cpu)
    return {"transactions": n, "cpu_ms": 1000 * used / n, "per_s": n / wall}


def ceiling_view(*, n: int = 500) -> dict:
    """A bare one-query Django view through the whole middleware stack (tests/load/bare_urls.py), in this process:
    CPU of this process and its backend per request."""
    from django.db import connection
    from django.test import Client, override_settings

    with override_settings(ROOT_URLCONF="tests.load.bare_urls"):
        client = Client()
        client.get("/bare/")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        cpu, backend_cpu, started = time.process_time(), _proc_cpu_s(backend), time.perf_counter()
        for _ in range(n):
            assert client.get("/bare/").status_code == 200
        wall = time.perf_counter() - started
        used = (time.process_time() - cpu) + (_proc_cpu_s(backend) - backend_cpu)
    return {"requests": n, "cpu_ms": 1000 * used / n, "per_s": n / wall}


def scale_up(*, keys: int = 100_000, provider_calls: int = 1_000_000) -> "Product":  # noqa: F821
    """A product with `keys` keys in stock, and `provider_calls` calls to the Stripe channel in the last 30 minutes
    (rows in the table and in the health counters): what 300 orders a second leave behind. Written in bulk SQL;
    the keys are placeholders that are sold, never shown."""
    from django.db import connection
    from django.utils import timezone

    from catalog.models import Product
    from fulfillment.models import LicenseKey
    from payments.health import health_counters_add
    from payments.models import PaymentChannel, ProviderCall
    from tests.factories import ProductFactory

    product = ProductFactory(slug=f"scale-{time.monotonic_ns()}", max_per_order=1)
    stripe = PaymentChannel.objects.get(code="stripe")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {LicenseKey._meta.db_table} (product_id, ciphertext, fingerprint, status, note, created_at)"
            " SELECT %s, '\\x00'::bytea, 'scale-' || %s || '-' || i, 'available', '', %s FROM generate_series(1, %s) i",
            [product.pk, product.pk, timezone.now(), keys],
        )
        cursor.execute(
            f"INSERT INTO {ProviderCall._meta.db_table} (channel_id, operation, outcome, latency_ms, error, created_at)"
            " SELECT %s, 'fetch', 'success', 120, '', %s - (i %% 1800) * interval '1 second'"
            " FROM generate_series(1, %s) i",
            [stripe.pk, timezone.now(), provider_calls],
        )
    Product.objects.filter(pk=product.pk).update(keys_available=keys)
    # the counters the router reads: the same calls in them
    health_counters_add(
        channel_id=stripe.pk, outcome="success", latency_us=120_000 * provider_calls, calls=provider_calls
    )
    product.refresh_from_db()
    return product
