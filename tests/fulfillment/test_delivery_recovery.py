import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from fulfillment import services as fulfillment_services
from fulfillment.models import KeyStatus, LicenseKey
from fulfillment.tasks import sweep_undelivered_orders
from orders.models import Order, OrderStatus
from payments.models import Payment
from tests.conftest import payment_intent_event, signed_stripe_event
from tests.factories import ProductFactory, add_keys


def paid_but_undelivered(make_order, *, minutes_ago: int, quantity: int = 1) -> Order:
    """An order whose payment was recorded but whose delivery task never ran (lost or killed)."""
    product = ProductFactory()
    add_keys(product, 3)
    order = make_order((product, quantity))
    Order.objects.filter(pk=order.pk).update(
        status=OrderStatus.PAID, payment_state="paid", paid_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    return order


def test_sweeper_finishes_an_order_whose_task_was_lost(db, make_order, django_capture_on_commit_callbacks):
    order = paid_but_undelivered(make_order, minutes_ago=10)

    with django_capture_on_commit_callbacks(execute=True):
        swept = sweep_undelivered_orders()

    assert swept == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert LicenseKey.objects.filter(order_line__order=order).count() == 1


def test_sweeper_leaves_fresh_orders_to_their_own_task_and_is_safe_to_repeat(
    db, make_order, django_capture_on_commit_callbacks, time_machine
):
    time_machine.move_to(timezone.now(), tick=False)  # "fresh" stays younger than FULFILMENT_SWEEP_AFTER
    fresh = paid_but_undelivered(make_order, minutes_ago=0)
    stale = paid_but_undelivered(make_order, minutes_ago=10, quantity=2)

    for _ in range(5):
        with django_capture_on_commit_callbacks(execute=True):
            sweep_undelivered_orders()

    fresh.refresh_from_db()
    stale.refresh_from_db()
    assert fresh.status == OrderStatus.PAID
    assert stale.status == OrderStatus.FULFILLED
    assert LicenseKey.objects.filter(order_line__order=stale).count() == 2


def test_sweeper_fills_orders_awaiting_stock_once_keys_arrive(db, make_order, django_capture_on_commit_callbacks):
    product = ProductFactory()
    add_keys(product, 1)
    order = make_order((product, 1))
    LicenseKey.objects.filter(product=product).update(status=KeyStatus.RETIRED)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.AWAITING_STOCK, paid_at=timezone.now())
    assert sweep_undelivered_orders() == 0

    add_keys(product, 1, prefix="NEW")
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_undelivered_orders() == 1

    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED


def test_a_delivery_that_dies_midway_leaves_nothing_half_done(
    db, make_order, monkeypatch, django_capture_on_commit_callbacks
):
    # Given a paid order for 2 keys, and a worker that crashes after claiming the first key
    order = paid_but_undelivered(make_order, minutes_ago=10, quantity=2)
    real_claim = fulfillment_services.keys_claim_for_line

    def claim_then_crash(*, line, units):
        real_claim(line=line, units=units[:1])
        raise SystemExit("worker killed")

    monkeypatch.setattr(fulfillment_services, "keys_claim_for_line", claim_then_crash)
    with pytest.raises(SystemExit):
        fulfillment_services.order_deliver(order_id=order.pk)

    # Then the claim rolled back with the task: the order is still paid, no key left the pool
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert not LicenseKey.objects.filter(order_line__order=order).exists()

    # And the sweeper's retry completes it
    monkeypatch.setattr(fulfillment_services, "keys_claim_for_line", real_claim)
    with django_capture_on_commit_callbacks(execute=True):
        sweep_undelivered_orders()
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert LicenseKey.objects.filter(order_line__order=order).count() == 2


@pytest.mark.django_db(transaction=True)
def test_webhook_hands_delivery_to_a_real_worker_through_redis(make_order, celery_worker_on_redis):
    product = ProductFactory()
    add_keys(product, 2)
    order = make_order((product, 1))
    Payment.objects.create(
        order=order, provider="stripe", provider_ref="pi_worker", amount=order.total_amount, currency="USD"
    )
    payload, header = signed_stripe_event(
        payment_intent_event(event_id="evt_worker", intent_id="pi_worker", amount=order.total_amount)
    )

    response = Client().post(
        "/payments/stripe/webhook/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 200

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        order.refresh_from_db()
        if order.status == OrderStatus.FULFILLED:
            break
        time.sleep(0.1)
    assert order.status == OrderStatus.FULFILLED
    assert LicenseKey.objects.filter(order_line__order=order).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_never_fails_the_payment_or_the_order_page(make_order, monkeypatch):
    # Given the queue is down when the payment webhook arrives
    from fulfillment import tasks as fulfillment_tasks
    from orders import tasks as order_tasks

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(fulfillment_tasks.deliver_order, "delay", broker_down)
    monkeypatch.setattr(order_tasks.send_order_email, "delay", broker_down)
    product = ProductFactory()
    add_keys(product, 2)
    order = make_order((product, 1))
    Payment.objects.create(
        order=order, provider="stripe", provider_ref="pi_broker", amount=order.total_amount, currency="USD"
    )
    payload, header = signed_stripe_event(
        payment_intent_event(event_id="evt_broker", intent_id="pi_broker", amount=order.total_amount)
    )

    # When it is processed, the payment is recorded and the shop answers normally
    response = Client().post(
        "/payments/stripe/webhook/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 200

    # Then the key was delivered with the payment (no task needed), and the page shows the order
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert LicenseKey.objects.filter(order_line__order=order, status=KeyStatus.SOLD).count() == 1
    assert Client().get(f"/order/{order.token}/").status_code == 200
