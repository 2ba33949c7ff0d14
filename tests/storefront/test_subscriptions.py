"""Subscriptions end to end against localstripe: the first purchase keeps the card, each period is one more order
through the same flow (scored, paid once, delivered), a failed renewal is retried on the schedule and then
cancelled, and the shopper manages it from a link. Time moves with time-machine; localstripe is real."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group

from catalog.models import FulfilmentKind
from fulfillment.models import Membership
from orders.models import Order, OrderStatus, Subscription, SubscriptionEventType, SubscriptionStatus
from payments.models import Payment, PaymentStatus
from storefront.flow.jobs import renew_due_subscriptions, subscriptions_housekeeping
from tests.conftest import TEST_CARD
from tests.factories import ProductFactory
from tests.riskengine.test_rules import use_shipped_rules

pytestmark = pytest.mark.django_db(transaction=True)

DECLINED = {**TEST_CARD, "number": "4000000000000341"}  # attaches to a customer, then every charge is declined


@pytest.fixture(autouse=True)
def shipped_rules(db):
    use_shipped_rules()  # renewals are scored by the rules a shop runs with


def subscribe(client, stripe_client, make_order, product, *, card=TEST_CARD, email="member@example.com") -> Order:
    order = make_order((product, 1), email=email)
    token = stripe_client.v1.tokens.create(params={"card": card}).id
    client.get(f"/pay/{order.token}/")  # opens the payment
    answer = client.post(
        f"/api/orders/{order.token}/pay/", data=json.dumps({"card_token": token}), content_type="application/json"
    )
    assert answer.status_code in (200, 201, 202), answer.content
    order.refresh_from_db()
    return order


def sweep() -> int:
    return renew_due_subscriptions()


def test_the_first_purchase_starts_a_subscription_with_the_card_kept(
    client, localstripe, stripe_client, make_order, membership
):
    order = subscribe(client, stripe_client, make_order, membership)

    assert order.status == OrderStatus.FULFILLED
    subscription = Subscription.objects.get()
    assert order.subscription_id == subscription.pk and order.subscription_period == 1
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert subscription.customer_ref.startswith("cus_") and subscription.method_ref
    assert subscription.current_period_end.month != subscription.current_period_start.month
    membership_row = Membership.objects.get(line__order=order)
    assert membership_row.ends_at == subscription.current_period_end + timedelta(days=8)


def test_a_year_of_renewals_charges_each_period_once(client, localstripe, stripe_client, make_order, membership):
    subscribe(client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    start = subscription.current_period_start
    for month in range(1, 13):
        with time_machine.travel(subscription.current_period_end + timedelta(minutes=1), tick=False):
            assert sweep() == 1
            assert sweep() == 0  # claimed: the next sweep does not hand it out again
        subscription.refresh_from_db()
        assert subscription.periods_paid == month + 1
    orders = list(Order.objects.filter(subscription=subscription).order_by("subscription_period"))
    assert [o.subscription_period for o in orders] == list(range(1, 14))
    assert all(o.status == OrderStatus.FULFILLED for o in orders)
    succeeded = Payment.objects.filter(order__subscription=subscription, status=PaymentStatus.SUCCEEDED)
    assert succeeded.count() == 13  # one per period, never two
    assert (
        subscription.current_period_end.year == start.year + 1 or subscription.current_period_end.month != start.month
    )
    assert Membership.objects.filter(line__order__subscription=subscription, ended=False).count() == 13


def card_token(stripe_client, card=TEST_CARD) -> str:
    return stripe_client.v1.tokens.create(params={"card": card}).id


def change_card(stripe_client, subscription, card) -> None:
    from storefront.flow.renewals import subscription_update_card

    subscription_update_card(subscription=subscription, card_token=card_token(stripe_client, card), actor="shopper")


def test_a_declined_renewal_is_retried_on_schedule_then_cancelled(
    client, localstripe, stripe_client, make_order, membership, mailoutbox
):
    subscribe(client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    change_card(stripe_client, subscription, DECLINED)
    period_end = subscription.current_period_end
    mailoutbox.clear()

    with time_machine.travel(period_end + timedelta(minutes=1), tick=False):
        assert sweep() == 1
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAST_DUE and subscription.failed_attempts == 1
    assert subscription.next_attempt_at == period_end + timedelta(days=1)
    assert "needs your attention" in mailoutbox[-1].subject
    renewal = Order.objects.get(subscription=subscription, subscription_period=2)
    assert (
        f"/pay/{renewal.token}/" in mailoutbox[-1].body
        and f"/subscription/{subscription.token}/" in mailoutbox[-1].body
    )
    # Access lasts through the retries
    assert Membership.objects.filter(line__order__subscription=subscription, ended=False).count() == 1

    for day, attempts in ((1, 2), (3, 3), (5, 4)):
        with time_machine.travel(period_end + timedelta(days=day, minutes=1), tick=False):
            assert sweep() == 1
            assert sweep() == 0
        subscription.refresh_from_db()
        assert subscription.failed_attempts == attempts and subscription.status == SubscriptionStatus.PAST_DUE

    with time_machine.travel(period_end + timedelta(days=7, minutes=1), tick=False):
        assert sweep() == 1
    subscription.refresh_from_db()
    renewal.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELLED
    assert renewal.status == OrderStatus.CANCELLED
    assert not Membership.objects.filter(line__order__subscription=subscription, ended=False).exists()
    assert not Group.objects.get(name="members").user_set.exists()
    assert "has ended" in mailoutbox[-1].subject
    assert Payment.objects.filter(order=renewal, status=PaymentStatus.SUCCEEDED).count() == 0
    assert Payment.objects.filter(order=renewal).count() == 5  # the first try and four retries, each once
    with time_machine.travel(period_end + timedelta(days=40), tick=False):
        assert sweep() == 0


def test_a_new_card_recovers_a_past_due_subscription_at_once(
    client, localstripe, stripe_client, make_order, membership
):
    subscribe(client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    change_card(stripe_client, subscription, DECLINED)
    period_end = subscription.current_period_end
    with time_machine.travel(period_end + timedelta(minutes=1), tick=False):
        sweep()
    with time_machine.travel(period_end + timedelta(hours=5), tick=False):
        subscription.refresh_from_db()
        change_card(stripe_client, subscription, TEST_CARD)
        assert sweep() == 1
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ACTIVE and subscription.periods_paid == 2
    assert subscription.events.filter(type=SubscriptionEventType.RECOVERED).count() == 1
    # the next period is counted from the first period's start, not from the day it was recovered
    assert subscription.current_period_start == period_end


def test_paying_from_the_emailed_link_recovers_it(client, localstripe, stripe_client, make_order, membership):
    subscribe(client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    change_card(stripe_client, subscription, DECLINED)
    with time_machine.travel(subscription.current_period_end + timedelta(minutes=1), tick=False):
        sweep()
        renewal = Order.objects.get(subscription=subscription, subscription_period=2)
        client.get(f"/pay/{renewal.token}/")
        answer = client.post(
            f"/api/orders/{renewal.token}/pay/",
            data=json.dumps({"card_token": card_token(stripe_client)}),
            content_type="application/json",
        )
        assert answer.status_code in (200, 201, 202), answer.content
    renewal.refresh_from_db()
    subscription.refresh_from_db()
    assert renewal.status == OrderStatus.FULFILLED
    assert subscription.status == SubscriptionStatus.ACTIVE and subscription.periods_paid == 2
    assert subscription.failed_attempts == 0
    # the card paid with becomes the one on file
    assert Payment.objects.filter(order=renewal, status=PaymentStatus.SUCCEEDED).count() == 1
    with time_machine.travel(subscription.current_period_end - timedelta(days=1), tick=False):
        assert sweep() == 0  # nothing due before the new period ends


# --- Exactly once -------------------------------------------------------------------------------------------


def test_the_renewal_webhook_arriving_twice_acts_once(
    client, localstripe, stripe_client, make_order, membership, mailoutbox
):
    from tests.conftest import signed_stripe_event

    subscribe(client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    with time_machine.travel(subscription.current_period_end + timedelta(minutes=1), tick=False):
        sweep()
        payment = Payment.objects.get(order__subscription_period=2)
        intent = stripe_client.v1.payment_intents.retrieve(payment.provider_ref).to_dict()
        event = {
            "id": "evt_renewal_1",
            "object": "event",
            "type": "payment_intent.succeeded",
            "data": {"object": intent},
        }
        for _ in range(3):
            payload, header = signed_stripe_event(event)
            answer = client.post(
                "/payments/stripe/webhook/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
            )
            assert answer.status_code == 200
    subscription.refresh_from_db()
    assert subscription.periods_paid == 2
    assert subscription.events.filter(type=SubscriptionEventType.RENEWED).count() == 1
    assert Membership.objects.filter(line__order__subscription_period=2).count() == 1


def test_two_workers_with_the_same_claim_charge_once(client, localstripe, stripe_client, make_order, membership):
    import threading

    from django.db import connection

    from orders.subscriptions import subscriptions_claim_due
    from storefront.flow.renewals import CLAIM_LEASE, subscription_renew

    subscribe(client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    at = subscription.current_period_end + timedelta(minutes=1)
    results = []
    with time_machine.travel(at, tick=False):
        [(pk, claim)] = subscriptions_claim_due(now=at, lease=CLAIM_LEASE, limit=10)

        def work():
            try:
                results.append(subscription_renew(subscription_id=pk, claim=claim, now=at))
            finally:
                connection.close()

        workers = [threading.Thread(target=work) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert sorted(results) in (["renewed", "stale"], ["renewed", "renewed"])
    assert Payment.objects.filter(order__subscription_period=2).count() == 1
    assert Payment.objects.get(order__subscription_period=2).status == PaymentStatus.SUCCEEDED


def test_a_worker_lost_after_opening_the_payment_leaves_it_charged_once(
    client, localstripe, stripe_client, make_order, membership, monkeypatch
):
    from storefront.flow import renewals

    subscribe(client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    period_end = subscription.current_period_end

    def killed(**_):
        raise SystemExit("worker killed after opening the payment")

    with time_machine.travel(period_end + timedelta(minutes=1), tick=False):
        with monkeypatch.context() as patched:
            patched.setattr(renewals, "payment_confirm_off_session", killed)
            with pytest.raises(SystemExit):
                sweep()
        assert Payment.objects.get(order__subscription_period=2).status == PaymentStatus.CREATED
        assert sweep() == 0  # the lost task's claim holds until its lease runs out
    with time_machine.travel(period_end + renewals.CLAIM_LEASE + timedelta(minutes=2), tick=False):
        assert sweep() == 1
    subscription.refresh_from_db()
    assert subscription.periods_paid == 2
    assert Payment.objects.filter(order__subscription_period=2).count() == 1  # the same payment, confirmed once
    assert Payment.objects.get(order__subscription_period=2).status == PaymentStatus.SUCCEEDED


# --- Reminders and self-service ------------------------------------------------------------------------------


def test_a_reminder_goes_out_once_before_each_renewal(
    client, localstripe, stripe_client, make_order, membership, mailoutbox
):
    subscribe(client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    mailoutbox.clear()
    with time_machine.travel(subscription.current_period_end - timedelta(days=4), tick=False):
        assert subscriptions_housekeeping()["reminded"] == 0
    with time_machine.travel(subscription.current_period_end - timedelta(days=2), tick=False):
        assert subscriptions_housekeeping()["reminded"] == 1
        assert subscriptions_housekeeping()["reminded"] == 0
    assert len(mailoutbox) == 1 and "renews soon" in mailoutbox[0].subject
    assert "USD 9.00" in mailoutbox[0].body and f"/subscription/{subscription.token}/" in mailoutbox[0].body


def test_the_shopper_cancels_at_period_end_resumes_and_cancels_again(
    client, localstripe, stripe_client, make_order, membership, mailoutbox
):
    order = subscribe(client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    page = client.get(f"/subscription/{subscription.token}/").content.decode()
    assert order.number in page and 'id="cancel-form"' in page and 'id="card-element"' in page

    client.post(f"/subscription/{subscription.token}/change/", {"action": "cancel", "reason": "Too expensive"})
    subscription.refresh_from_db()
    assert subscription.cancel_at_period_end and subscription.cancel_reason == "Too expensive"
    client.post(f"/subscription/{subscription.token}/change/", {"action": "resume"})
    subscription.refresh_from_db()
    assert not subscription.cancel_at_period_end
    client.post(f"/subscription/{subscription.token}/change/", {"action": "cancel"})

    with time_machine.travel(subscription.current_period_end + timedelta(minutes=1), tick=False):
        assert sweep() == 0  # nothing is charged
        assert subscriptions_housekeeping()["ended"] == 1
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELLED
    assert not Membership.objects.filter(line__order=order, ended=False).exists()
    assert Order.objects.filter(subscription=subscription).count() == 1
    assert "has ended" in mailoutbox[-1].subject


def test_an_unknown_subscription_link_is_not_found(client, db):
    assert client.get("/subscription/not-a-token/").status_code == 404
    assert client.post("/subscription/not-a-token/change/", {"action": "cancel"}).status_code == 404


def test_the_api_and_the_order_page_show_the_subscription(client, localstripe, stripe_client, make_order, membership):
    order = subscribe(client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    product = client.get(f"/api/products/{membership.slug}/").json()
    assert product["billing_interval"] == "month"
    body = client.get(f"/api/orders/{order.token}/").json()
    assert body["subscription"]["status"] == "active" and body["subscription"]["cancel_at_period_end"] is False
    assert body["subscription"]["manage_url"] == f"/subscription/{subscription.token}/"
    page = client.get(f"/order/{order.token}/").content.decode()
    assert f"/subscription/{subscription.token}/" in page


def test_a_subscription_is_checked_out_on_its_own(client, db, membership):
    other = ProductFactory(kind=FulfilmentKind.SERVICE)
    answer = client.post(
        "/api/checkout/",
        data=json.dumps(
            {
                "email": "a@example.com",
                "lines": [{"product": membership.slug, "quantity": 1}, {"product": other.slug, "quantity": 1}],
            }
        ),
        content_type="application/json",
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "one_subscription_per_order"


# --- PayPal: each period paid from a link ---------------------------------------------------------------------


def paypal_pays(client, fake, order: Order) -> None:
    client.get(f"/pay/{order.token}/")
    payment = Payment.objects.filter(order=order, provider="paypal").latest("pk")
    fake.approve(payment.provider_ref)
    back = client.get(f"/pay/{order.token}/return/?token={payment.provider_ref}&PayerID=PAYER1")
    assert back.status_code == 302


def test_a_paypal_subscriber_renews_by_paying_from_the_emailed_link(client, paypal, make_order, membership, mailoutbox):
    from payments.models import PaymentChannel

    PaymentChannel.objects.filter(code="stripe").update(enabled=False)
    first = make_order((membership, 1), email="pp@example.com")
    paypal_pays(client, paypal, first)
    first.refresh_from_db()
    subscription = Subscription.objects.get()
    assert first.status == OrderStatus.FULFILLED
    assert subscription.provider == "paypal" and not subscription.saved_card

    mailoutbox.clear()
    with time_machine.travel(subscription.current_period_end + timedelta(minutes=1), tick=False):
        assert sweep() == 1
        subscription.refresh_from_db()
        assert subscription.status == SubscriptionStatus.PAST_DUE  # waiting for the shopper, access continues
        renewal = Order.objects.get(subscription=subscription, subscription_period=2)
        assert f"/pay/{renewal.token}/" in mailoutbox[-1].body
        assert not Payment.objects.filter(order=renewal).exists()  # nothing was charged without the shopper
        paypal_pays(client, paypal, renewal)
    renewal.refresh_from_db()
    subscription.refresh_from_db()
    assert renewal.status == OrderStatus.FULFILLED
    assert subscription.status == SubscriptionStatus.ACTIVE and subscription.periods_paid == 2


# --- Many at once ---------------------------------------------------------------------------------------------


def test_subscriptions_due_at_the_same_minute_renew_once_each_through_the_fan_out(localstripe, db):
    from tests.load.renewals import renew_all, subscriptions_due

    ids = subscriptions_due(count=40, localstripe_url=localstripe.url, label="suite")
    figures = renew_all(subscription_ids=ids, workers=4, fan_out=7)  # rounds of 7: the sweep goes round
    assert figures["outcomes"] == {"renewed": 40}
    assert figures["handed_out"] == 40


def test_a_year_with_declines_and_recoveries_never_charges_a_period_twice(
    client, localstripe, stripe_client, make_order, membership
):
    """Month 3: declined at the period's end and at the first retry, then a new card. Month 7: declined three
    times, then a new card. Month 10: declined at every retry, cancelled. A sweep every six hours throughout."""
    subscribe(client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    plan = {3: 1, 7: 2, 10: None}  # month -> retries failed before a new card (None: never)
    for month in range(1, 13):
        subscription.refresh_from_db()
        if subscription.status == SubscriptionStatus.CANCELLED:
            break
        due = subscription.current_period_end
        if month in plan:
            change_card(stripe_client, subscription, DECLINED)
        for hours in range(0, 9 * 24, 6):  # a sweep every six hours for nine days
            with time_machine.travel(due + timedelta(hours=hours, minutes=1), tick=False):
                sweep()
                subscription.refresh_from_db()
                failures = plan.get(month)
                if failures is not None and subscription.failed_attempts == failures + 1 and month in plan:
                    change_card(stripe_client, subscription, TEST_CARD)
                    plan.pop(month)
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELLED
    assert subscription.periods_paid == 10  # paid through month 10's start; month 10's renewal never paid
    orders = Order.objects.filter(subscription=subscription)
    paid = orders.filter(status=OrderStatus.FULFILLED)
    assert sorted(paid.values_list("subscription_period", flat=True)) == list(range(1, 11))
    for order in orders:
        assert Payment.objects.filter(order=order, status=PaymentStatus.SUCCEEDED).count() <= 1
    assert Payment.objects.filter(order__subscription=subscription, status=PaymentStatus.SUCCEEDED).count() == 10
    assert subscription.events.filter(type=SubscriptionEventType.RECOVERED).count() == 2
    assert orders.get(subscription_period=11).status == OrderStatus.CANCELLED
