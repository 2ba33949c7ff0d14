"""Free trials against localstripe: nothing is charged at checkout but the card is kept on a Stripe customer, the
goods are delivered, a reminder goes out before the trial converts, the first charge is period 1 when the trial
ends (then periods follow from there), a failed conversion is dunned like any renewal, and each email gets one
trial. Time moves with time-machine."""

import json
from datetime import timedelta

import pytest
import requests
import time_machine
from django.contrib.auth.models import Group

from catalog.models import BillingInterval, FulfilmentKind
from fulfillment.models import Membership
from orders.errors import CheckoutError
from orders.models import Coupon, Order, OrderStatus, Subscription, SubscriptionStatus
from payments.models import Payment, PaymentStatus
from riskengine.models import ListEntry, ListKind
from storefront.admin.subscriptions import subscription_figures
from storefront.flow.jobs import subscriptions_housekeeping
from tests.conftest import TEST_CARD
from tests.factories import ProductFactory
from tests.riskengine.test_rules import use_shipped_rules
from tests.storefront.test_subscriptions import sweep

pytestmark = pytest.mark.django_db(transaction=True)
GRACE = timedelta(days=8)
DECLINES_LATER = "4000000000000341"  # kept without a fuss, then every charge is declined
KEY = "pk_test_shop"  # what Stripe.js sends with its calls
NEEDS_3DS = "4000002500003155"  # the bank asks for its check when the card is set up


@pytest.fixture(autouse=True)
def shipped_rules(db):
    use_shipped_rules()


@pytest.fixture
def trial_plan(db):
    """A monthly membership at USD 9.00 with a 14-day free trial."""
    return ProductFactory(
        name="Pro Club",
        kind=FulfilmentKind.MEMBERSHIP,
        price_amount=900,
        billing_interval=BillingInterval.MONTH,
        trial_days=14,
        membership_group=Group.objects.create(name="trial members"),
        max_per_order=1,
    )


def confirm_setup(localstripe, client_secret: str, number: str, *, authenticate: bool = True) -> dict:
    """What Stripe.js confirmCardSetup does at localstripe: confirm with the card, then answer the bank's check."""
    setup_id = client_secret.split("_secret_")[0]
    url = f"{localstripe.url}/v1/setup_intents/{setup_id}/confirm"
    card = {"number": number, "exp_month": "12", "exp_year": "2031", "cvc": "123"}
    answer = requests.post(
        url,
        json={"key": KEY, "client_secret": client_secret, "payment_method_data": {"type": "card", "card": card}},
        timeout=30,
    ).json()
    if answer.get("status") == "requires_action":
        finish = "confirm" if authenticate else "cancel"
        answer = requests.post(
            url.replace("/confirm", f"/{finish}"), json={"key": KEY, "client_secret": client_secret}, timeout=30
        )
        answer = answer.json()
    return answer


def start_trial(client, localstripe, order, *, card=TEST_CARD["number"], authenticate: bool = True):
    """The trial's pay page: open the card setup, confirm it as the browser would, then start the trial."""
    pay = f"/api/orders/{order.token}/pay/"
    opened = client.post(pay, data={}, content_type="application/json")
    if opened.status_code != 200:
        return opened
    assert opened.json()["status"] == "requires_setup", opened.content
    setup = confirm_setup(localstripe, opened.json()["client_secret"], card, authenticate=authenticate)
    return client.post(pay, data=json.dumps({"setup_intent": setup["id"]}), content_type="application/json")


def test_a_trial_keeps_the_card_charges_nothing_and_delivers(
    client, localstripe, stripe_client, make_order, trial_plan
):
    order = make_order((trial_plan, 1), email="Trial@Example.com")
    assert (order.total_amount, order.discount_amount, order.trial_days) == (0, 900, 14)
    assert order.status == OrderStatus.PENDING_PAYMENT  # the card is still to be given

    page = client.get(f"/pay/{order.token}/").content.decode()
    assert "Start free trial" in page and "Nothing is charged today" in page and "Free trial, 14 days" in page
    assert not Payment.objects.exists()  # the pay page opened no payment: there is nothing to pay

    answer = start_trial(client, localstripe, order)

    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "trial_started"
    order.refresh_from_db()
    subscription = Subscription.objects.get()
    assert order.status == OrderStatus.FULFILLED and order.subscription_period == 0
    assert subscription.status == SubscriptionStatus.TRIALING and subscription.periods_paid == 0
    assert subscription.customer_ref.startswith("cus_") and subscription.method_ref
    assert subscription.current_period_end == subscription.current_period_start + timedelta(days=14)
    assert not Payment.objects.exists()  # nothing charged
    member = Membership.objects.get(line__order=order)
    assert member.ends_at == subscription.current_period_end + GRACE
    assert order.card_fingerprint  # the kept card's fingerprint, for the risk engine
    assert "Your free trial ends on" in client.get(f"/order/{order.token}/").content.decode()
    figures = subscription_figures()
    assert (figures["trialing"], figures["active"], figures["mrr"]) == (1, 0, {})


def test_the_trial_converts_with_a_reminder_first_then_renews_from_its_end(
    client, localstripe, stripe_client, make_order, trial_plan, mailoutbox
):
    start_trial(client, localstripe, make_order((trial_plan, 1)))
    subscription = Subscription.objects.get()
    trial_end = subscription.current_period_end
    mailoutbox.clear()

    with time_machine.travel(trial_end - timedelta(days=2), tick=False):
        assert subscriptions_housekeeping()["reminded"] == 1
    assert "Your free trial of Pro Club ends soon" in mailoutbox[0].subject
    assert "USD 9.00" in mailoutbox[0].body

    with time_machine.travel(trial_end + timedelta(minutes=1), tick=False):
        assert sweep() == 1
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ACTIVE and subscription.periods_paid == 1
    assert subscription.current_period_start == trial_end
    first = Order.objects.get(subscription=subscription, subscription_period=1)
    assert first.status == OrderStatus.FULFILLED and first.total_amount == 900
    paid = Payment.objects.filter(status=PaymentStatus.SUCCEEDED)
    assert [p.amount for p in paid] == [900]  # the first charge, once

    with time_machine.travel(subscription.current_period_end + timedelta(minutes=1), tick=False):
        assert sweep() == 1
    subscription.refresh_from_db()
    assert subscription.periods_paid == 2
    assert Payment.objects.filter(status=PaymentStatus.SUCCEEDED).count() == 2


def test_a_declined_conversion_is_dunned_and_the_trial_access_ends_with_it(
    client, localstripe, stripe_client, make_order, trial_plan
):
    start_trial(client, localstripe, make_order((trial_plan, 1)), card=DECLINES_LATER)
    subscription = Subscription.objects.get()
    trial_end = subscription.current_period_end

    for day in (0, 1, 3, 5):
        with time_machine.travel(trial_end + timedelta(days=day, minutes=1), tick=False):
            assert sweep() == 1
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAST_DUE and subscription.failed_attempts == 4
    with time_machine.travel(trial_end + timedelta(days=7, minutes=1), tick=False):
        assert sweep() == 1
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELLED
    assert not Membership.objects.filter(line__order__subscription=subscription, ended=False).exists()
    assert not Payment.objects.filter(status=PaymentStatus.SUCCEEDED).exists()


def test_one_trial_per_email_and_no_coupon_on_a_trial(client, localstripe, stripe_client, make_order, trial_plan):
    start_trial(client, localstripe, make_order((trial_plan, 1), email="once@example.com"))

    again = make_order((trial_plan, 1), email="ONCE@example.com")
    assert (again.trial_days, again.total_amount) == (0, 900)  # subscribed before: pays from the start
    Coupon.objects.create(code="HALF", percent_off=50, max_uses_per_shopper=None)
    with pytest.raises(CheckoutError) as refused:
        make_order((trial_plan, 1), email="new@example.com", coupon="HALF")
    assert refused.value.code == "coupon_with_trial"


def test_a_trial_the_risk_screen_declines_keeps_no_card_and_starts_nothing(
    client, localstripe, stripe_client, make_order, trial_plan
):
    ListEntry.objects.create(kind=ListKind.EMAIL, value="blocked@example.com", created_by="test")
    order = make_order((trial_plan, 1), email="blocked@example.com")

    answer = start_trial(client, localstripe, order)

    assert answer.status_code == 403 and answer.json()["error"]["code"] == "payment_blocked"
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert not Subscription.objects.exists() and not Membership.objects.exists()


def test_admin_allows_a_trial_only_on_a_product_that_renews(admin_client):
    from tests.storefront.test_license_admin import form_of

    product = ProductFactory(name="One-off")
    url = f"/admin/catalog/product/{product.pk}/change/"
    data = form_of(admin_client.get(url).content.decode()) | {"trial_days": "7"}
    refused = admin_client.post(url, data)
    assert (
        refused.status_code == 200 and "Only a product that renews can have a free trial." in refused.content.decode()
    )


def test_a_card_whose_bank_asks_for_its_check_is_kept_once_the_shopper_passes_it(
    client, localstripe, make_order, trial_plan
):
    # When the bank asks for 3-D Secure as the card is set up, and the shopper passes it
    order = make_order((trial_plan, 1), email="secure@example.com")
    answer = start_trial(client, localstripe, order, card=NEEDS_3DS)

    # Then the trial starts with that card kept
    assert answer.status_code == 200, answer.content
    subscription = Subscription.objects.get()
    assert subscription.status == SubscriptionStatus.TRIALING and subscription.method_ref.startswith("pm_")


def test_a_failed_bank_check_keeps_no_card_and_starts_nothing(client, localstripe, make_order, trial_plan):
    # When the shopper fails the bank's check
    order = make_order((trial_plan, 1), email="failed@example.com")
    answer = start_trial(client, localstripe, order, card=NEEDS_3DS, authenticate=False)

    # Then they are told to enter the card again, and nothing started
    assert answer.status_code == 402 and answer.json()["error"]["code"] == "payment_declined"
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT and not Subscription.objects.exists()


def test_a_setup_of_another_order_cannot_start_this_ones_trial(client, localstripe, make_order, trial_plan):
    # Given a card set up for one order
    mine = make_order((trial_plan, 1), email="mine@example.com")
    opened = client.post(f"/api/orders/{mine.token}/pay/", data={}, content_type="application/json").json()
    setup = confirm_setup(localstripe, opened["client_secret"], TEST_CARD["number"])

    # When another order presents it
    other = make_order((trial_plan, 1), email="other@example.com")
    answer = client.post(
        f"/api/orders/{other.token}/pay/",
        data=json.dumps({"setup_intent": setup["id"]}),
        content_type="application/json",
    )

    # Then it is refused and nothing started
    assert answer.status_code == 402
    assert not Subscription.objects.exists()


@pytest.fixture
def key_trial(db):
    """A monthly license at USD 12.00, generated keys, 14 days free."""
    from tests.licensing import generated_product

    return generated_product(
        name="Linter trial",
        kind=FulfilmentKind.LICENSE_KEY,
        price_amount=1200,
        billing_interval=BillingInterval.MONTH,
        max_per_order=1,
        trial_days=14,
    )


def test_a_key_trial_converts_on_the_same_key(client, localstripe, make_order, key_trial):
    from fulfillment.models import License, LicenseKey

    # Given a key trial, then its first charge at the trial's end
    start_trial(client, localstripe, make_order((key_trial, 1), email="keys@example.com"))
    subscription = Subscription.objects.get()
    with time_machine.travel(subscription.current_period_end + timedelta(minutes=1), tick=False):
        assert sweep() == 1

    # Then the trial's key is the one key, and it runs to the paid period's end
    subscription.refresh_from_db()
    assert subscription.periods_paid == 1 and LicenseKey.objects.count() == 1
    assert License.objects.get().expires_at == subscription.current_period_end + GRACE


def test_two_orders_placed_before_either_trial_started_start_one_trial(client, localstripe, make_order, trial_plan):
    # Given two trial orders from one mailbox, however written, placed before either started (two tabs)
    first = make_order((trial_plan, 1), email="twice@example.com")
    second = make_order((trial_plan, 1), email="Twice+again@Example.com")
    assert first.trial_days == second.trial_days == 14

    # When both are started
    assert start_trial(client, localstripe, first).status_code == 200
    refused = start_trial(client, localstripe, second)

    # Then the second is refused with a way on, and one trial runs
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "trial_used"
    assert Subscription.objects.count() == 1
    assert make_order((trial_plan, 1), email="twice+3@example.com").trial_days == 0  # +tags are one mailbox


def test_one_card_gets_one_trial_whatever_the_email(client, localstripe, make_order, trial_plan):
    assert start_trial(client, localstripe, make_order((trial_plan, 1), email="first@example.com")).status_code == 200

    refused = start_trial(client, localstripe, make_order((trial_plan, 1), email="second@example.org"))

    assert refused.status_code == 409 and refused.json()["error"]["code"] == "trial_used"
    assert Subscription.objects.count() == 1


def test_a_trial_held_for_review_is_not_charged_until_a_reviewer_decides(client, localstripe, make_order, trial_plan):
    # Given a trial the risk engine held for review (a low review line here)
    from riskengine.models import RiskRule
    from tests.riskengine.test_rules import use_only_rules

    use_only_rules(RiskRule(name="Disposable", type="disposable_email", points=20), review=10, decline=100)
    order = make_order((trial_plan, 1), email="someone@mailinator.com")
    assert start_trial(client, localstripe, order).status_code == 200
    order.refresh_from_db()
    subscription = Subscription.objects.get()

    # When the trial ends with the order still on hold
    with time_machine.travel(subscription.current_period_end + timedelta(minutes=1), tick=False):
        sweep()

    # Then nothing is charged and the renewal waits
    assert order.status == OrderStatus.ON_HOLD
    assert not Payment.objects.exists()
    subscription.refresh_from_db()
    assert subscription.periods_paid == 0 and subscription.next_attempt_at > subscription.current_period_end
