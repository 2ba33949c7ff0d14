import pytest

from fulfillment.models import KeyStatus, LicenseKey
from orders.models import OrderEvent
from payments.models import Payment
from riskengine.models import FraudLabel, ListEntry
from tests.conftest import record_payment, signed_stripe_event
from tests.factories import ProductFactory, add_keys

WEBHOOK = "/payments/stripe/webhook/"


def post(client, event: dict):
    payload, header = signed_stripe_event(event)
    return client.post(WEBHOOK, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)


def fraud_event(event_id: str, event_type: str, obj: dict) -> dict:
    return {"id": event_id, "object": "event", "type": event_type, "data": {"object": obj}}


@pytest.fixture
def delivered(db, make_order, django_capture_on_commit_callbacks):
    product = ProductFactory()
    add_keys(product, 2)
    order = make_order((product, 1), email="thief@example.com")
    order.device_id = "dev-123"
    order.save(update_fields=["device_id"])
    Payment.objects.create(
        order=order,
        provider="stripe",
        provider_ref="pi_fraud",
        amount=order.total_amount,
        currency="USD",
        status="created",
    )
    record_payment(order, django_capture_on_commit_callbacks)
    order.card_fingerprint = "fp_card_1"
    order.save(update_fields=["card_fingerprint"])
    assert LicenseKey.objects.get(order_line__order=order).status == KeyStatus.SOLD
    return order


@pytest.mark.parametrize(
    "event_type, obj, source",
    [
        (
            "charge.dispute.created",
            {
                "id": "dp_1",
                "object": "dispute",
                "charge": "ch_1",
                "payment_intent": "pi_fraud",
                "reason": "fraudulent",
                "amount": 1999,
            },
            "dispute",
        ),
        (
            "radar.early_fraud_warning.created",
            {
                "id": "issfr_1",
                "object": "radar.early_fraud_warning",
                "charge": "ch_1",
                "payment_intent": "pi_fraud",
                "fraud_type": "made_with_stolen_card",
                "actionable": True,
            },
            "early_fraud_warning",
        ),
    ],
)
def test_dispute_or_fraud_warning_labels_revokes_and_blocks(client, delivered, event_type, obj, source):
    response = post(client, fraud_event("evt_f1", event_type, obj))

    assert response.status_code == 200
    assert response.json()["outcome"] == "labelled"
    label = FraudLabel.objects.get(order=delivered)
    assert (label.source, label.is_fraud) == (source, True)
    assert LicenseKey.objects.get(order_line__order=delivered).status == KeyStatus.REVOKED
    blocked = set(ListEntry.objects.filter(allow=False).values_list("kind", "value"))
    assert blocked == {("card", "fp_card_1"), ("device", "dev-123"), ("email", "thief@example.com")}
    assert OrderEvent.objects.filter(order=delivered, type=source).exists()

    again = post(client, fraud_event("evt_f1", event_type, obj))
    assert again.json()["outcome"] == "duplicate"
    assert FraudLabel.objects.filter(order=delivered).count() == 1


def test_radar_review_closed_as_approved_labels_the_order_legitimate(client, delivered):
    obj = {"id": "prv_1", "object": "review", "payment_intent": "pi_fraud", "open": False, "closed_reason": "approved"}

    response = post(client, fraud_event("evt_r1", "review.closed", obj))

    assert response.status_code == 200
    assert FraudLabel.objects.get(order=delivered).is_fraud is False
    assert LicenseKey.objects.get(order_line__order=delivered).status == KeyStatus.SOLD
    assert not ListEntry.objects.exists()


def test_fraud_event_without_a_payment_intent_is_rejected(client, delivered):
    obj = {"id": "dp_2", "object": "dispute", "charge": "ch_1", "reason": "fraudulent"}

    response = post(client, fraud_event("evt_f2", "charge.dispute.created", obj))

    assert response.status_code == 400
    assert not FraudLabel.objects.exists()


def test_fraud_event_for_an_unknown_payment_changes_nothing(client, delivered):
    obj = {"id": "dp_3", "object": "dispute", "payment_intent": "pi_other", "reason": "fraudulent"}

    response = post(client, fraud_event("evt_f3", "charge.dispute.created", obj))

    assert response.json()["outcome"] == "unknown_payment"
    assert not FraudLabel.objects.exists()
