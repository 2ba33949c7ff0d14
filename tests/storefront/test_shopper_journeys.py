"""What a new shopper ran into while paying and collecting: a cancelled PayPal approval, a failed 3-D Secure
check, a second tab, a refreshed reveal page, and the wording of the plain-text emails."""

import json
from datetime import timedelta

import pytest
import requests
from django.core import mail
from django.core.cache import cache
from django.utils import timezone

from fulfillment.models import LicenseKey
from orders.models import OrderStatus
from payments.models import Payment, PaymentStatus
from tests.conftest import TEST_CARD, record_payment
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db

CARD_3DS = {**TEST_CARD, "number": "4000002500003155"}


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()


@pytest.fixture
def keyed_order(make_order):
    product = ProductFactory(price_amount=2500, redemption_instructions="Open the app, choose Help > Activate.")
    add_keys(product, 3)
    return make_order((product, 1))


def pay_with(client, order, token: str):
    return client.post(
        f"/api/orders/{order.token}/pay/", data=json.dumps({"card_token": token}), content_type="application/json"
    )


def authenticate(localstripe, payment: Payment, *, success: bool) -> None:
    """What localstripe's Stripe.js does when the shopper completes or fails the bank's 3-D Secure check."""
    answer = requests.post(
        f"{localstripe.url}/v1/payment_intents/{payment.provider_ref}/_authenticate?success={str(success).lower()}",
        json={"key": "pk_test_suite", "client_secret": payment.client_secret},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


# --- Pay page -----------------------------------------------------------------------------------------------


def test_cancelling_at_paypal_does_not_call_the_card_unavailable(client, localstripe, paypal, keyed_order):
    # Given a shopper who chose PayPal (no card payment was opened for the order)
    paypal_page = client.get(f"/pay/{keyed_order.token}/?method=paypal")
    assert 'id="paypal-button"' in paypal_page.content.decode()

    payment = Payment.objects.get(order=keyed_order)
    assert payment.approval_url.startswith(paypal.url)

    # When they cancel at PayPal and come back to the cancel address PayPal was given
    back = client.get(f"/pay/{keyed_order.token}/?cancelled=paypal").content.decode()

    # Then nothing is called unavailable, and the card form is there with PayPal offered beside it
    assert "unavailable" not in back
    assert 'id="card-element"' in back
    assert f'href="/pay/{keyed_order.token}/?method=paypal"' in back

    # And opening the pay link again shows their last choice, with the card beside it, nothing unavailable
    again = client.get(f"/pay/{keyed_order.token}/").content.decode()
    assert "unavailable" not in again
    assert 'id="card-element"' in again or 'id="paypal-button"' in again
    assert 'data-channel="stripe"' in again and 'data-channel="paypal"' in again


def test_a_channel_that_really_fails_is_still_called_unavailable(client, localstripe, paypal, keyed_order, settings):
    # Given Stripe refusing connections
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"

    # When the shopper opens the pay page
    page = client.get(f"/pay/{keyed_order.token}/").content.decode()

    # Then PayPal is offered with the honest notice that the card is unavailable
    assert 'id="failover-notice"' in page
    assert 'id="paypal-button"' in page


def test_paying_from_a_second_tab_after_the_first_paid_links_to_the_order(
    client, localstripe, keyed_order, django_capture_on_commit_callbacks
):
    # Given an order paid in one tab
    record_payment(keyed_order, django_capture_on_commit_callbacks)

    # When the second tab's pay form is submitted
    response = client.post(
        f"/api/orders/{keyed_order.token}/pay/",
        data=json.dumps({"card_token": "tok_x"}),
        content_type="application/json",
    )

    # Then the answer says the order is paid and where to see it
    body = response.json()["error"]
    assert response.status_code == 409
    assert body["code"] == "order_not_payable"
    assert body["order_url"] == f"/order/{keyed_order.token}/"


def test_the_pay_page_script_shows_the_order_link_when_the_order_was_paid_elsewhere(client, localstripe, keyed_order):
    page = client.get(f"/pay/{keyed_order.token}/").content.decode()
    assert "order_url" in page


# --- 3-D Secure -----------------------------------------------------------------------------------------------


def test_a_failed_3ds_check_shows_the_failure_and_a_retry_on_the_order_page(
    client, localstripe, stripe_client, keyed_order, time_machine, django_capture_on_commit_callbacks
):
    # Given a card whose bank asks for 3-D Secure
    token = stripe_client.v1.tokens.create(params={"card": CARD_3DS}).id
    answer = pay_with(client, keyed_order, token)
    assert answer.status_code == 200 and answer.json()["status"] == "requires_action"
    payment = Payment.objects.get(order=keyed_order)

    # When the shopper fails the check and lands on the order page a few seconds later
    authenticate(localstripe, payment, success=False)
    time_machine.move_to(timezone.now() + timedelta(seconds=10), tick=False)
    page = client.get(f"/order/{keyed_order.token}/")

    # Then the page says the payment failed and offers to pay again, and stops waiting
    html = page.content.decode()
    assert 'id="payment-failed"' in html
    assert f'href="/pay/{keyed_order.token}/"' in html
    assert 'http-equiv="refresh"' not in html
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED

    # And a second attempt with a card that passes opens a new payment and delivers
    token = stripe_client.v1.tokens.create(params={"card": TEST_CARD}).id
    with django_capture_on_commit_callbacks(execute=True):
        retry = pay_with(client, keyed_order, token)
    assert retry.status_code == 200, retry.content
    keyed_order.refresh_from_db()
    assert keyed_order.status == OrderStatus.FULFILLED
    assert Payment.objects.filter(order=keyed_order).count() == 2


def test_a_passed_3ds_check_is_applied_when_the_shopper_reaches_the_order_page(
    client, localstripe, stripe_client, keyed_order, time_machine, django_capture_on_commit_callbacks
):
    # Given a 3-D Secure payment that the shopper completed, before any webhook arrived
    token = stripe_client.v1.tokens.create(params={"card": CARD_3DS}).id
    assert pay_with(client, keyed_order, token).json()["status"] == "requires_action"
    payment = Payment.objects.get(order=keyed_order)
    authenticate(localstripe, payment, success=True)

    # When the pay page sends them to the order page a few seconds later
    time_machine.move_to(timezone.now() + timedelta(seconds=10), tick=False)
    with django_capture_on_commit_callbacks(execute=True):
        client.get(f"/order/{keyed_order.token}/")

    # Then the payment is applied and the key is delivered
    keyed_order.refresh_from_db()
    assert keyed_order.status == OrderStatus.FULFILLED


def test_retrying_the_same_3ds_payment_with_a_new_card_is_a_new_confirmation(
    client, localstripe, stripe_client, keyed_order, django_capture_on_commit_callbacks
):
    # Given a 3-D Secure attempt the shopper abandoned (the shop still thinks it waits for the bank)
    token = stripe_client.v1.tokens.create(params={"card": CARD_3DS}).id
    assert pay_with(client, keyed_order, token).json()["status"] == "requires_action"

    # When they pay again on the pay page with another card
    token = stripe_client.v1.tokens.create(params={"card": TEST_CARD}).id
    with django_capture_on_commit_callbacks(execute=True):
        response = pay_with(client, keyed_order, token)

    # Then that card is confirmed (not the first request's answer replayed) and the order is paid
    assert response.status_code == 200, response.content
    keyed_order.refresh_from_db()
    assert keyed_order.status == OrderStatus.FULFILLED


# --- Order page -----------------------------------------------------------------------------------------------


def test_reveal_redirects_after_post_so_a_refresh_does_not_resubmit(
    client, keyed_order, django_capture_on_commit_callbacks
):
    # Given a delivered order
    record_payment(keyed_order, django_capture_on_commit_callbacks)
    line = keyed_order.lines.get()

    # When the shopper reveals the key
    response = client.post(f"/order/{keyed_order.token}/reveal/", {"line": line.pk})

    # Then the browser is sent back to the order page, which shows the key once
    assert response.status_code == 303
    assert response["Location"] == f"/order/{keyed_order.token}/"
    page = client.get(response["Location"]).content.decode()
    assert LicenseKey.objects.get(order_line=line).reveal() in page

    # And the key is not left on the page for whoever opens the link later
    assert LicenseKey.objects.get(order_line=line).reveal() not in client.get(response["Location"]).content.decode()


def test_a_bookmarked_reveal_address_leads_to_the_order_page(client, keyed_order, django_capture_on_commit_callbacks):
    record_payment(keyed_order, django_capture_on_commit_callbacks)

    response = client.get(f"/order/{keyed_order.token}/reveal/")

    assert response.status_code in (301, 302)
    assert response["Location"] == f"/order/{keyed_order.token}/"


def test_plain_text_emails_are_not_html_escaped(make_order, django_capture_on_commit_callbacks):
    product = ProductFactory(redemption_instructions='Open the app, choose Help > Activate & enter "the key".')
    add_keys(product, 1)
    order = make_order((product, 1))

    record_payment(order, django_capture_on_commit_callbacks)

    body = mail.outbox[-1].body
    assert 'choose Help > Activate & enter "the key".' in body
    assert "&gt;" not in body and "&amp;" not in body and "&quot;" not in body
