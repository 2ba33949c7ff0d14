"""A refunded or charged-back order's keys answer revoked at once through the license API (paid at localstripe,
refunded through the provider, disputed by a signed Stripe webhook)."""

import uuid

import pytest

from storefront.flow.checkout import payment_confirm_card, payment_start_for_order
from storefront.flow.refunds import refund_issue
from tests.conftest import TEST_CARD, signed_stripe_event
from tests.licensing import generated_product, order_keys

VALIDATE, ACTIVATE = "/api/v1/licenses/validate", "/api/v1/licenses/activate"


@pytest.fixture(autouse=True)
def _counters_of_this_test(settings):
    settings.RATE_LIMIT_PREFIX = f"rl:license-test:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def paid(db, localstripe, stripe_client, make_order, django_capture_on_commit_callbacks):
    """An order of a generated key paid by card at localstripe, its key activated on one machine."""
    order = make_order((generated_product(name="Code Linter Pro", price_amount=3900), 1))
    payment = payment_start_for_order(order=order)
    token = stripe_client.v1.tokens.create(params={"card": TEST_CARD})
    with django_capture_on_commit_callbacks(execute=True):
        payment = payment_confirm_card(payment=payment, card_token=token.id)
    order.refresh_from_db()
    return order, payment, order_keys(order)[0]


def validate(client, key):
    return client.post(VALIDATE, {"license_key": key}, content_type="application/json").json()


def test_a_refund_revokes_the_key_at_once(client, paid, django_capture_on_commit_callbacks):
    order, _payment, key = paid
    client.post(ACTIVATE, {"license_key": key, "instance_name": "desk"}, content_type="application/json")
    assert validate(client, key)["valid"] is True

    with django_capture_on_commit_callbacks(execute=True):
        refund_issue(order=order, actor="staff:ann", reason="Changed their mind.")

    answer = validate(client, key)
    assert (answer["valid"], answer["license"]["status"]) == (False, "revoked")
    refused = client.post(ACTIVATE, {"license_key": key, "instance_name": "laptop"}, content_type="application/json")
    assert refused.status_code == 422 and refused.json()["error"] == "license_revoked"


def test_a_chargeback_revokes_the_key_at_once(client, paid, localstripe):
    _order, payment, key = paid
    assert validate(client, key)["license"]["status"] == "inactive"
    dispute = localstripe.open_dispute(charge=payment.capture_ref, reason="fraudulent")
    body, header = signed_stripe_event(
        {"id": "evt_license_dispute", "object": "event", "type": "charge.dispute.created", "data": {"object": dispute}}
    )

    response = client.post(
        "/payments/stripe/webhook/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )

    assert response.status_code == 200
    answer = validate(client, key)
    assert (answer["valid"], answer["license"]["status"]) == (False, "revoked")
