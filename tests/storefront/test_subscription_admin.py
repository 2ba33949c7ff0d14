"""Subscriptions from the merchant's side: the admin list and its figures, a free period, cancelling now,
refunding the last period (a staff job through the refund flow, which ends the subscription)."""

from datetime import timedelta

import pytest
import time_machine

from fulfillment.models import Membership
from orders.models import Order, OrderStatus, Subscription, SubscriptionStatus
from tests.riskengine.test_rules import use_shipped_rules
from tests.storefront.test_subscriptions import subscribe, sweep

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def shipped_rules(db):
    use_shipped_rules()


# --- Merchant -------------------------------------------------------------------------------------------------


@pytest.fixture
def merchant_client(client, db):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("merchant", "m@example.com", "pw-merchant-1"))
    return client


def admin_action(merchant_client, action: str, subscription):
    return merchant_client.post(
        "/admin/orders/subscription/", {"action": action, "_selected_action": [subscription.pk]}, follow=True
    )


def test_admin_lists_subscriptions_with_their_figures(
    merchant_client, localstripe, stripe_client, make_order, membership
):
    subscribe(merchant_client, stripe_client, make_order, membership)
    page = merchant_client.get("/admin/orders/subscription/").content.decode()
    assert "member@example.com" in page and 'id="subscription-figures"' in page
    assert "USD 9.00" in page  # monthly recurring revenue
    subscription = Subscription.objects.get()
    detail = merchant_client.get(f"/admin/orders/subscription/{subscription.pk}/change/").content.decode()
    assert subscription.token not in detail


def test_the_merchant_gives_a_free_period_then_cancels(
    merchant_client, localstripe, stripe_client, make_order, membership
):
    order = subscribe(merchant_client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    first_end = subscription.current_period_end
    admin_action(merchant_client, "give_free_period", subscription)
    subscription.refresh_from_db()
    assert subscription.periods_paid == 2 and subscription.current_period_end > first_end
    assert Membership.objects.get(line__order=order).ends_at == subscription.current_period_end + timedelta(days=8)
    with time_machine.travel(first_end + timedelta(minutes=1), tick=False):
        assert sweep() == 0  # the free period is not charged
    admin_action(merchant_client, "cancel_now", subscription)
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELLED
    assert not Membership.objects.filter(line__order=order, ended=False).exists()


def test_refunding_the_last_period_refunds_it_and_ends_the_subscription(
    merchant_client, localstripe, stripe_client, make_order, membership
):
    subscribe(merchant_client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    with time_machine.travel(subscription.current_period_end + timedelta(minutes=1), tick=False):
        sweep()
    admin_action(merchant_client, "refund_last_period", subscription)
    renewal = Order.objects.get(subscription=subscription, subscription_period=2)
    first = Order.objects.get(subscription=subscription, subscription_period=1)
    subscription.refresh_from_db()
    assert renewal.status == OrderStatus.REFUNDED and first.status == OrderStatus.FULFILLED
    assert subscription.status == SubscriptionStatus.CANCELLED
    assert not Membership.objects.filter(line__order__subscription=subscription, ended=False).exists()


def test_the_dashboard_shows_subscriptions_mrr_and_renewals(
    merchant_client, localstripe, stripe_client, make_order, membership
):
    subscribe(merchant_client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    with time_machine.travel(subscription.current_period_end + timedelta(minutes=1), tick=False):
        sweep()
        page = merchant_client.get("/admin/dashboard/")
    figures = page.context["subscriptions"]
    assert (figures["active"], figures["past_due"], figures["renewed"], figures["failed"]) == (1, 0, 1, 0)
    assert figures["mrr"] == {"USD": 900}
    assert 'id="subscriptions"' in page.content.decode()


def test_refunding_a_past_due_subscriptions_last_period_cancels_its_unpaid_renewal(
    merchant_client, localstripe, stripe_client, make_order, membership
):
    from tests.storefront.test_subscriptions import DECLINED, change_card

    subscribe(merchant_client, stripe_client, make_order, membership)
    subscription = Subscription.objects.get()
    change_card(stripe_client, subscription, DECLINED)
    with time_machine.travel(subscription.current_period_end + timedelta(minutes=1), tick=False):
        sweep()  # period 2 declined: its order waits for the shopper's link
    unpaid = Order.objects.get(subscription=subscription, subscription_period=2)
    assert unpaid.status == OrderStatus.PENDING_PAYMENT

    admin_action(merchant_client, "refund_last_period", subscription)

    subscription.refresh_from_db()
    unpaid.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELLED
    assert unpaid.status == OrderStatus.CANCELLED  # the emailed link can no longer pay a cancelled subscription
