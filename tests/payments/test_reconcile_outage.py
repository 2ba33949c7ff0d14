"""A payment that succeeded while PostgreSQL was away is applied within a minute of its return.

Its webhook answered 503 (Stripe would retry, but only much later), so beat's reconciliation must find it:
a job that runs at least every minute and looks at payments that young.
"""

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

import storefront.flow.jobs  # noqa: F401  (registers the beat jobs' tasks)
from fulfillment.models import KeyStatus, LicenseKey
from orders.models import Order, OrderStatus
from storefront.celery import app as celery_app
from storefront.flow.checkout import payment_start_for_order
from tests.conftest import TEST_CARD, payment_intent_event, signed_stripe_event
from tests.factories import ProductFactory, add_keys
from tests.faults import database_unreachable


def beat_jobs_applying_payments_every_minute() -> list[str]:
    """The scheduled reconciliation tasks that run at least once a minute."""
    return [
        entry["task"]
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"].startswith("storefront.flow.jobs.reconcile") and entry["schedule"] <= timedelta(minutes=1)
    ]


@pytest.mark.django_db(transaction=True)
def test_a_payment_whose_webhook_met_the_database_down_is_applied_within_a_minute_of_its_return(
    localstripe, stripe_client, make_order, time_machine
):
    # Given an order whose payment the shopper opened a moment ago
    start = timezone.now()
    time_machine.move_to(start, tick=False)
    product = ProductFactory(price_amount=2000)
    add_keys(product, 1)
    order = make_order((product, 1))
    payment = payment_start_for_order(order=order)

    # When the card is charged 20 s later, while PostgreSQL is away, and the webhook is refused with a 503
    time_machine.move_to(start + timedelta(seconds=20), tick=False)
    token = stripe_client.v1.tokens.create(params={"card": TEST_CARD})
    stripe_client.v1.payment_intents.update(payment.provider_ref, params={"payment_method": token.card.id})
    stripe_client.v1.payment_intents.confirm(payment.provider_ref)
    payload, header = signed_stripe_event(
        payment_intent_event(event_id="evt_during_outage", intent_id=payment.provider_ref, amount=2000)
    )
    with database_unreachable():
        webhook = Client().post(
            "/payments/stripe/webhook/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
        )
    assert webhook.status_code == 503
    # and PostgreSQL is back at once, the order still waiting for its payment
    back = start + timedelta(seconds=25)
    time_machine.move_to(back, tick=False)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.PENDING_PAYMENT

    # Then beat has a reconciliation job that runs at least every minute
    jobs = beat_jobs_applying_payments_every_minute()
    assert jobs, "no reconciliation job runs every minute"
    # and its next run, at most a minute after the database came back, applies the payment and delivers
    time_machine.move_to(back + timedelta(minutes=1), tick=False)
    for task in jobs:
        result = celery_app.tasks[task].apply()
        assert result.successful(), result.traceback
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert LicenseKey.objects.filter(order_line__order=order, status=KeyStatus.SOLD).count() == 1


@pytest.mark.django_db
def test_the_every_minute_pass_leaves_older_payments_and_quiet_runs_to_the_five_minute_one(
    localstripe, make_order, time_machine
):
    from payments.models import ReconciliationRun
    from storefront.flow.reconcile import reconcile_all

    # Given a payment opened two hours ago and never paid
    start = timezone.now()
    time_machine.move_to(start, tick=False)
    product = ProductFactory(price_amount=2000)
    add_keys(product, 1)
    payment_start_for_order(order=make_order((product, 1)))
    time_machine.move_to(start + timedelta(hours=2), tick=False)

    # When the every-minute pass runs
    runs = reconcile_all(recent_only=True)

    # Then it did not ask about it (the 5-minute pass does), and kept no run row for a pass that found nothing
    assert [run.checked for run in runs] == [0]
    assert not ReconciliationRun.objects.exists()
