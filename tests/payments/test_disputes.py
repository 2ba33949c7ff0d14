"""Stripe disputes: marked on the order with the evidence a digital-goods merchant needs, keys revoked,
identifiers blocked, and the evidence submitted to Stripe from admin (localstripe's disputes are the
project wrapper's addition, devtools/localstripe_server.py)."""

import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from fulfillment.models import KeyStatus, LicenseKey
from payments.health import call_log_flush
from payments.models import Dispute, DisputeStatus, PaymentChannel
from riskengine.models import FraudLabel, ListEntry
from storefront.flow.checkout import payment_confirm_card, payment_start_for_order
from tests.conftest import TEST_CARD, signed_stripe_event
from tests.factories import ProductFactory, add_keys

WEBHOOK = "/payments/stripe/webhook/"


def paid_and_revealed(client, stripe_client, make_order, capture):
    product = ProductFactory(name="Pro licence", price_amount=4900)
    add_keys(product, 2)
    order = make_order((product, 1), email="disputer@example.com")
    payment = payment_start_for_order(order=order)
    token = stripe_client.v1.tokens.create(params={"card": TEST_CARD})
    with capture(execute=True):
        payment = payment_confirm_card(payment=payment, card_token=token.id)
    assert payment.capture_ref.startswith("ch_")
    client.post(
        reverse("order-reveal", kwargs={"token": order.token}),
        {"line": order.lines.get().pk},
        REMOTE_ADDR="198.51.100.77",
        HTTP_USER_AGENT="Firefox/140",
        follow=True,
    )
    return order, payment


@pytest.mark.django_db
def test_a_dispute_is_recorded_with_evidence_and_submitted_to_stripe_from_admin(
    client, admin_client, localstripe, stripe_client, make_order, django_capture_on_commit_callbacks
):
    # Given a delivered order whose key the buyer revealed, then disputed at the bank
    order, payment = paid_and_revealed(client, stripe_client, make_order, django_capture_on_commit_callbacks)
    dispute = localstripe.open_dispute(charge=payment.capture_ref, reason="fraudulent")
    payload, header = signed_stripe_event(
        {"id": "evt_dispute_1", "object": "event", "type": "charge.dispute.created", "data": {"object": dispute}}
    )

    # When Stripe tells the shop
    response = client.post(WEBHOOK, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)

    # Then the dispute is recorded with its evidence, the key revoked and the card blocked
    assert response.json()["outcome"] == "labelled"
    recorded = Dispute.objects.get()
    assert (recorded.provider_ref, recorded.amount, recorded.reason) == (dispute["id"], 4900, "fraudulent")
    assert recorded.status == DisputeStatus.NEEDS_RESPONSE and recorded.evidence_due_by is not None
    assert recorded.evidence["reveals"] == 1
    assert "198.51.100.77" in recorded.evidence["access_log"][0]
    assert "Firefox/140" in recorded.evidence["access_log"][0]
    assert LicenseKey.objects.get(order_line__order=order).status == KeyStatus.REVOKED
    assert FraudLabel.objects.filter(order=order, source="dispute", is_fraud=True).exists()
    assert ListEntry.objects.filter(kind="email", value="disputer@example.com").exists()

    # And the evidence is readable in admin
    page = admin_client.get(reverse("admin:payments_dispute_change", args=[recorded.pk])).content.decode()
    assert "198.51.100.77" in page and "Pro licence" in page

    # When staff submit it
    response = admin_client.post(
        reverse("admin:payments_dispute_changelist"),
        {"action": "submit_evidence", "_selected_action": [recorded.pk]},
        follow=True,
    )

    # Then Stripe has it, under review, with the access log and the purchase IP
    assert "evidence submitted" in response.content.decode()
    at_stripe = stripe_client.v1.disputes.retrieve(dispute["id"]).to_dict()
    assert at_stripe["status"] == "under_review"
    assert "198.51.100.77" in at_stripe["evidence"]["access_activity_log"]
    assert at_stripe["evidence"]["customer_email_address"] == "disputer@example.com"
    assert at_stripe["evidence"]["product_description"].startswith("1 x Pro licence")
    recorded.refresh_from_db()
    assert (recorded.status, recorded.evidence_submitted_by) == (DisputeStatus.SUBMITTED, "staff:admin")


@pytest.mark.django_db
def test_only_staff_allowed_to_change_disputes_may_submit_evidence(
    client, localstripe, stripe_client, make_order, django_capture_on_commit_callbacks
):
    order, payment = paid_and_revealed(client, stripe_client, make_order, django_capture_on_commit_callbacks)
    dispute = localstripe.open_dispute(charge=payment.capture_ref)
    payload, header = signed_stripe_event(
        {"id": "evt_dispute_2", "object": "event", "type": "charge.dispute.created", "data": {"object": dispute}}
    )
    client.post(WEBHOOK, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
    viewer = get_user_model().objects.create_user("viewer", "v@example.com", "pw-viewer-123", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_dispute"))
    client.force_login(viewer)

    changelist = client.get(reverse("admin:payments_dispute_changelist"))
    assert changelist.status_code == 200
    action_form = changelist.context["action_form"]
    assert action_form is None or "submit_evidence" not in dict(action_form.fields["action"].choices)
    client.post(
        reverse("admin:payments_dispute_changelist"),
        {"action": "submit_evidence", "_selected_action": [Dispute.objects.get().pk]},
    )
    assert stripe_client.v1.disputes.retrieve(dispute["id"]).status == "needs_response"


@pytest.mark.django_db
def test_a_dispute_closed_as_won_labels_the_order_legitimate(
    client, localstripe, stripe_client, make_order, django_capture_on_commit_callbacks
):
    order, payment = paid_and_revealed(client, stripe_client, make_order, django_capture_on_commit_callbacks)
    dispute = localstripe.open_dispute(charge=payment.capture_ref)
    for event_id, event_type, status in (
        ("evt_d1", "charge.dispute.created", "needs_response"),
        ("evt_d2", "charge.dispute.closed", "won"),
    ):
        payload, header = signed_stripe_event(
            {"id": event_id, "object": "event", "type": event_type, "data": {"object": dispute | {"status": status}}}
        )
        client.post(WEBHOOK, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)

    assert Dispute.objects.get().status == DisputeStatus.WON
    assert FraudLabel.objects.filter(order=order, source="dispute_closed", is_fraud=False).exists()


@pytest.mark.django_db(transaction=True)
def test_localstripe_sends_the_dispute_itself_signed_to_the_running_shop(
    localstripe_sends_webhooks, client, localstripe, stripe_client, make_order, django_capture_on_commit_callbacks
):
    # Given localstripe delivering webhooks to the running shop
    order, payment = paid_and_revealed(client, stripe_client, make_order, django_capture_on_commit_callbacks)

    # When a dispute is opened at (local) Stripe
    localstripe.open_dispute(charge=payment.capture_ref)

    # Then its own signed charge.dispute.created reaches the shop and is recorded
    deadline = time.monotonic() + 15
    while not Dispute.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert Dispute.objects.filter(order=order, provider="stripe").exists()
    call_log_flush()  # the provider calls' rows queued in Redis, written
    assert PaymentChannel.objects.get(code="stripe").calls.filter(operation="capture", outcome="success").exists()
