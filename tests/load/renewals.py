"""Ten thousand subscriptions due at the same minute (issue 17): the sweep claims them in rounds and hands each to
a task; `workers` threads play the Celery workers, each renewal charging a saved card at localstripe (opened,
recorded, confirmed off-session) and delivering the membership. Then every subscription must be renewed exactly
once: one paid order for period 2 each, one successful payment per order, nothing left due.

`make bench` prints renewals per second; tests/storefront/test_subscriptions.py runs the same at a small size.
"""

import queue
import threading
import time
from datetime import timedelta

import stripe
from celery._state import _set_task_join_will_block
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from catalog.models import BillingInterval, FulfilmentKind
from orders.models import Order, OrderStatus, Subscription
from payments.models import Payment, PaymentStatus
from storefront.flow.renewals import renewals_claim_due, subscription_renew
from tests.conftest import TEST_CARD
from tests.factories import ProductFactory


def subscriptions_due(*, count: int, localstripe_url: str, label: str) -> list[int]:
    """`count` monthly subscriptions whose first period ended a minute ago, all paying with one saved card."""
    client = stripe.StripeClient("sk_test_bench", base_addresses={"api": localstripe_url}, max_network_retries=0)
    token = client.v1.tokens.create(params={"card": TEST_CARD})
    customer = client.v1.customers.create(params={"email": "bench@example.com", "source": token.id})
    product = ProductFactory(
        slug=f"renewals-{label}",
        kind=FulfilmentKind.MEMBERSHIP,
        price_amount=900,
        billing_interval=BillingInterval.MONTH,
        membership_group=Group.objects.create(name=f"renewals-{label}"),
        max_per_order=1,
    )
    now = timezone.now()
    ended = now - timedelta(minutes=1)
    created = Subscription.objects.bulk_create(
        Subscription(
            email=f"member{i}-{label}@example.com",
            product=product,
            interval=BillingInterval.MONTH,
            unit_price=900,
            currency="USD",
            provider="stripe",
            channel_code="stripe",
            customer_ref=customer.id,
            method_ref=customer.default_source,
            current_period_start=ended - timedelta(days=30),
            current_period_end=ended,
            next_attempt_at=ended,
        )
        for i in range(count)
    )
    return [s.pk for s in created]


def renew_all(*, subscription_ids: list[int], workers: int, fan_out: int = 1000) -> dict:
    """The sweep and `workers` consumers, until nothing is due; then the exactly-once check. Raises SystemExit."""
    tasks: queue.Queue = queue.Queue()
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    sweeping = threading.Event()
    sweeping.set()

    def consume() -> None:
        try:
            while True:
                try:
                    pk, claim = tasks.get(timeout=0.2)
                except queue.Empty:
                    if not sweeping.is_set():
                        return
                    continue
                outcome = subscription_renew(subscription_id=pk, claim=claim)
                with lock:
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
        finally:
            connection.close()

    consumers = [threading.Thread(target=consume) for _ in range(workers)]
    start = time.perf_counter()
    for consumer in consumers:
        consumer.start()
    handed = 0
    while claimed := renewals_claim_due(limit=fan_out):
        for item in claimed:
            tasks.put(item)
        handed += len(claimed)
    sweep_s = time.perf_counter() - start
    sweeping.clear()
    for consumer in consumers:
        consumer.join()
    elapsed = time.perf_counter() - start
    # Celery's eager mode (the suite's) guards result.get() with a process-wide flag that each eager task saves and
    # restores; threads running eager tasks at once can interleave and leave it set for whatever runs next.
    _set_task_join_will_block(False)
    _check_once(subscription_ids)
    return {
        "subscriptions": len(subscription_ids),
        "workers": workers,
        "handed_out": handed,
        "sweep_s": sweep_s,
        "seconds": elapsed,
        "renewals_per_s": outcomes.get("renewed", 0) / elapsed,
        "outcomes": outcomes,
    }


def _check_once(subscription_ids: list[int]) -> None:
    renewed = Subscription.objects.filter(pk__in=subscription_ids, periods_paid=2).count()
    orders = Order.objects.filter(subscription_id__in=subscription_ids, subscription_period=2)
    paid = orders.filter(status=OrderStatus.FULFILLED).count()
    charged_twice = (
        orders.annotate(ok=Count("payments", filter=Q(payments__status=PaymentStatus.SUCCEEDED)))
        .filter(ok__gt=1)
        .count()
    )
    succeeded = Payment.objects.filter(order__in=orders, status=PaymentStatus.SUCCEEDED).count()
    still_due = renewals_claim_due(limit=1)
    wanted = len(subscription_ids)
    if (renewed, paid, succeeded, charged_twice, still_due) != (wanted, wanted, wanted, 0, []):
        raise SystemExit(
            f"renewals not exactly once: {renewed} renewed, {paid} orders paid, {succeeded} payments, "
            f"{charged_twice} orders charged twice, {len(still_due)} still due, of {wanted}"
        )
