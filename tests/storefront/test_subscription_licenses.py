"""A license key sold by period: the first purchase delivers one generated key that expires with the paid period
(and its grace), each renewal moves that key's expiry instead of delivering another, and the key stops working
when the subscription ends. Against localstripe, with time-machine; the admin refuses a renewing key product
whose keys are not generated."""

from datetime import timedelta

import pytest
import time_machine

from catalog.models import BillingInterval, FulfilmentKind
from fulfillment.licenses import license_validate
from fulfillment.models import License, LicenseKey
from orders.models import Order, OrderStatus, Subscription, SubscriptionStatus
from payments.models import Payment, PaymentStatus
from storefront.flow.refunds import refund_issue
from storefront.flow.renewals import subscription_cancel_now, subscription_give_free_period
from tests.conftest import signed_stripe_event
from tests.factories import ProductFactory
from tests.licensing import generated_product, order_keys
from tests.riskengine.test_rules import use_shipped_rules
from tests.storefront.test_license_admin import form_of
from tests.storefront.test_subscriptions import DECLINED, change_card, subscribe, sweep

pytestmark = pytest.mark.django_db(transaction=True)
GRACE = timedelta(days=8)


@pytest.fixture(autouse=True)
def shipped_rules(db):
    use_shipped_rules()


@pytest.fixture
def key_plan(db):
    """A monthly license at USD 12.00 whose keys the shop generates."""
    return generated_product(
        name="Linter Pro monthly",
        kind=FulfilmentKind.LICENSE_KEY,
        price_amount=1200,
        billing_interval=BillingInterval.MONTH,
        max_per_order=1,
    )


def renew_once(subscription: Subscription) -> None:
    with time_machine.travel(subscription.current_period_end + timedelta(minutes=1), tick=False):
        assert sweep() == 1


def test_renewals_move_the_first_keys_expiry_and_deliver_no_second_key(
    client, localstripe, stripe_client, make_order, key_plan
):
    first = subscribe(client, stripe_client, make_order, key_plan)
    subscription = Subscription.objects.get()
    (key,) = order_keys(first)
    license = License.objects.get()
    assert first.status == OrderStatus.FULFILLED
    assert license.expires_at == subscription.current_period_end + GRACE  # the period, not the policy's days

    for period in range(2, 5):
        renew_once(subscription)
        subscription.refresh_from_db()
        license.refresh_from_db()
        assert subscription.periods_paid == period
        assert license.expires_at == subscription.current_period_end + GRACE

    renewals = Order.objects.filter(subscription=subscription, subscription_period__gt=1)
    assert renewals.count() == 3 and all(o.status == OrderStatus.FULFILLED for o in renewals)
    assert LicenseKey.objects.count() == 1 and License.objects.count() == 1  # one key, however many periods
    assert Payment.objects.filter(order__subscription=subscription, status=PaymentStatus.SUCCEEDED).count() == 4
    # past the first period's end (and its grace) the key still works, because renewals paid for it
    with time_machine.travel(first.paid_at + timedelta(days=75), tick=False):
        assert license_validate(license_key=key).status in ("active", "inactive")

    # the renewal's own page says the first key works on, and offers no key to reveal
    renewal = renewals.order_by("subscription_period").last()
    page = client.get(f"/order/{renewal.token}/").content.decode()
    assert "keeps the key from your first order working" in page
    assert "Reveal key" not in page


def test_a_subscription_cancelled_after_its_retries_expires_its_key(
    client, localstripe, stripe_client, make_order, key_plan
):
    first = subscribe(client, stripe_client, make_order, key_plan)
    subscription = Subscription.objects.get()
    (key,) = order_keys(first)
    change_card(stripe_client, subscription, DECLINED)
    period_end = subscription.current_period_end

    for day in (0, 1, 3, 5):  # the first attempt, then the retries
        with time_machine.travel(period_end + timedelta(days=day, minutes=1), tick=False):
            assert sweep() == 1
            assert license_validate(license_key=key).status == "inactive"  # the grace keeps it working
    with time_machine.travel(period_end + timedelta(days=7, minutes=1), tick=False):
        assert sweep() == 1  # the last retry fails: cancelled
        subscription.refresh_from_db()
        assert subscription.status == SubscriptionStatus.CANCELLED
        assert license_validate(license_key=key).status == "expired"


def test_staff_give_a_free_period_and_cancel_now_through_the_key(
    client, localstripe, stripe_client, make_order, key_plan
):
    first = subscribe(client, stripe_client, make_order, key_plan)
    subscription = Subscription.objects.get()
    (key,) = order_keys(first)

    subscription_give_free_period(subscription_id=subscription.pk, actor="staff:boss")
    subscription.refresh_from_db()
    assert License.objects.get().expires_at == subscription.current_period_end + GRACE

    subscription_cancel_now(subscription_id=subscription.pk, actor="staff:boss")
    assert license_validate(license_key=key).status == "expired"
    assert "This key no longer works." in client.get(f"/order/{first.token}/").content.decode()


def test_admin_refuses_a_renewing_key_product_unless_its_keys_are_generated(admin_client):
    product = ProductFactory(name="Pool keys", kind=FulfilmentKind.LICENSE_KEY)
    url = f"/admin/catalog/product/{product.pk}/change/"
    data = form_of(admin_client.get(url).content.decode()) | {"billing_interval": "month"}

    refused = admin_client.post(url, data)
    assert refused.status_code == 200
    assert "needs a license policy with generated keys" in refused.content.decode()
    product.refresh_from_db()
    assert product.billing_interval == ""

    generated = data | {
        "license_policy-TOTAL_FORMS": "1",
        "license_policy-0-key_source": "generated",
        "license_policy-0-pattern": "PRO-XXXX-XXXX-XXXX",
        "license_policy-0-product": str(product.pk),
    }
    saved = admin_client.post(url, generated)
    assert saved.status_code == 302, form_of(saved.content.decode())
    product.refresh_from_db()
    assert product.billing_interval == BillingInterval.MONTH


def test_refunding_an_older_period_takes_back_its_money_but_not_the_key_later_periods_paid_for(
    client, localstripe, stripe_client, make_order, key_plan
):
    # Given a key subscription in its second paid period
    first = subscribe(client, stripe_client, make_order, key_plan)
    subscription = Subscription.objects.get()
    (key,) = order_keys(first)
    renew_once(subscription)

    # When staff refund the first period as a goodwill gesture
    refund_issue(order=first, actor="staff:boss", reason="goodwill for the first month")

    # Then the key keeps working for the period paid, and the subscription goes on
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert license_validate(license_key=key).status == "inactive"  # usable: not revoked


def test_a_fraud_dispute_on_a_renewal_ends_the_subscription_and_its_key(
    client, localstripe, stripe_client, make_order, key_plan, django_capture_on_commit_callbacks
):
    # Given a key subscription renewed once
    first = subscribe(client, stripe_client, make_order, key_plan)
    subscription = Subscription.objects.get()
    (key,) = order_keys(first)
    renew_once(subscription)
    renewal = Order.objects.get(subscription=subscription, subscription_period=2)
    payment = renewal.payments.get(status=PaymentStatus.SUCCEEDED)

    # When the bank opens a fraud dispute on the renewal's charge at localstripe, and Stripe's webhook says so
    dispute = localstripe.open_dispute(charge=payment.capture_ref, reason="fraudulent")
    event = {"id": "evt_renewal_dispute", "object": "event", "type": "charge.dispute.created"}
    body, header = signed_stripe_event({**event, "data": {"object": dispute}})
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            "/payments/stripe/webhook/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
        )
    assert answer.status_code == 200, answer.content

    # Then nothing more is charged and the key stops working
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELLED
    assert license_validate(license_key=key).status == "expired"


def test_staff_who_cannot_see_the_license_policy_cannot_make_a_pool_key_product_renew(client):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    # Given staff who may edit products but not license policies (the policy inline is not shown to them)
    staff = get_user_model().objects.create_user("catalog", password="pw-catalog-1", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_product", "change_product"]))
    client.force_login(staff)
    product = ProductFactory(name="Pool keys", kind=FulfilmentKind.LICENSE_KEY)
    url = f"/admin/catalog/product/{product.pk}/change/"
    data = form_of(client.get(url).content.decode())
    assert "license_policy-TOTAL_FORMS" not in data

    # When they set it to renew monthly
    refused = client.post(url, data | {"billing_interval": "month"})

    # Then it is refused: its keys come from a pool and could not expire
    assert refused.status_code == 200 and "needs a license policy with generated keys" in refused.content.decode()
    product.refresh_from_db()
    assert product.billing_interval == ""
