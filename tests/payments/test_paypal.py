"""PayPal end to end through the official SDK and the project's fake PayPal (devtools/paypal_fake.py):
pay by approval and capture, refunds that revoke keys, signed webhooks verified offline and by API,
forged webhooks refused with nothing changed."""

import json
from urllib.parse import urlsplit

import pytest
import requests
from django.core import mail

from fulfillment.models import KeyStatus, LicenseKey
from orders.models import Order, OrderStatus
from payments.models import Payment, PaymentChannel, PaymentStatus, Refund, WebhookEvent
from payments.providers.base import ProviderUnavailable
from storefront.flow.checkout import payment_start_for_order
from storefront.flow.refunds import refund_issue
from tests.factories import ProductFactory, add_keys

WEBHOOK = "/payments/webhook/paypal/"


@pytest.fixture
def paypal_only(paypal):
    """PayPal as the shop's only way to pay."""
    PaymentChannel.objects.filter(code="stripe").update(enabled=False)
    return paypal


@pytest.fixture
def keyed_order(make_order):
    product = ProductFactory(price_amount=2500)
    add_keys(product, 3)
    return make_order((product, 1))


@pytest.fixture
def approve_and_return(client, django_capture_on_commit_callbacks):
    """The shopper opens the pay page, approves at PayPal, and comes back (after-commit work runs)."""

    def run(fake, order: Order) -> Payment:
        with django_capture_on_commit_callbacks(execute=True):
            return _approve_and_return(client, fake, order)

    return run


def _approve_and_return(client, fake, order: Order) -> Payment:
    page = client.get(f"/pay/{order.token}/")
    assert page.status_code == 200
    assert b'id="paypal-button"' in page.content
    payment = Payment.objects.get(order=order, provider="paypal")
    assert payment.approval_url.startswith(fake.url + "/checkoutnow?token=")
    fake.approve(payment.provider_ref)
    back = client.get(f"/pay/{order.token}/return/?token={payment.provider_ref}&PayerID=PAYER1")
    assert back.status_code == 302 and back["Location"] == f"/order/{order.token}/"
    payment.refresh_from_db()
    return payment


def post_signed(client, fake, event: dict, **sign):
    body = json.dumps(event).encode()
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in fake.signed_headers(body, **sign).items()}
    return client.post(WEBHOOK, data=body, content_type="application/json", **headers)


@pytest.mark.django_db
def test_paypal_payment_is_approved_captured_and_delivered_with_its_fee(
    approve_and_return, client, paypal_only, keyed_order
):
    # When the shopper pays with PayPal
    with_captures = approve_and_return(paypal_only, keyed_order)

    # Then the capture happened once at PayPal, the order is delivered and the key shows
    keyed_order.refresh_from_db()
    assert keyed_order.status == OrderStatus.FULFILLED
    assert with_captures.status == PaymentStatus.SUCCEEDED
    assert len(paypal_only.captures) == 1
    capture_id = next(iter(paypal_only.captures))
    assert with_captures.capture_ref == capture_id
    # 3.49% of 25.00 is 0.8725 -> 0.87, plus the fixed 0.49: 1.36 as PayPal reports it
    assert (with_captures.expected_fee, with_captures.actual_fee) == (136, 136)
    page = client.post(f"/order/{keyed_order.token}/reveal/", {"line": keyed_order.lines.get().pk}, follow=True)
    assert b'class="key"' in page.content
    assert LicenseKey.objects.filter(order_line__order=keyed_order, status=KeyStatus.SOLD).count() == 1


@pytest.mark.django_db
def test_the_buyer_page_sends_the_shopper_back_to_the_shops_return_page(
    client, paypal_only, keyed_order, django_capture_on_commit_callbacks
):
    # Given the pay page opened a PayPal order for exactly the order's total
    client.get(f"/pay/{keyed_order.token}/")
    payment = Payment.objects.get(order=keyed_order)
    order = paypal_only.orders[payment.provider_ref]
    assert order["purchase_units"][0]["amount"] == {"currency_code": "USD", "value": "25.00"}
    assert order["purchase_units"][0]["custom_id"] == keyed_order.number

    # When the buyer approves on PayPal's page
    approved = requests.post(payment.approval_url, data={"country": "DE"}, allow_redirects=False, timeout=5)

    # Then PayPal sends them to the shop's return page, which captures and shows the order
    assert approved.status_code == 303
    back = urlsplit(approved.headers["Location"])
    assert back.path == f"/pay/{keyed_order.token}/return/"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(f"{back.path}?{back.query}")
    assert response["Location"] == f"/order/{keyed_order.token}/"
    keyed_order.refresh_from_db()
    assert (keyed_order.status, keyed_order.billing_country) == (OrderStatus.FULFILLED, "DE")


@pytest.mark.django_db
def test_returning_twice_or_with_a_webhook_captures_once(approve_and_return, client, paypal_only, keyed_order):
    payment = approve_and_return(paypal_only, keyed_order)

    # When the shopper reloads the return page and PayPal's capture webhook arrives as well
    client.get(f"/pay/{keyed_order.token}/return/?token={payment.provider_ref}&PayerID=PAYER1")
    capture = paypal_only.captures[payment.capture_ref]
    event = {"id": "WH-CAPTURE-1", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": capture}
    response = post_signed(client, paypal_only, event)

    # Then nothing more happened: one capture, one key, one delivery email
    assert response.status_code == 200 and response.json()["outcome"] == "applied"
    assert len(paypal_only.captures) == 1
    assert LicenseKey.objects.filter(order_line__order=keyed_order).count() == 1
    assert [m.subject for m in mail.outbox if "ready" in m.subject.lower() or "deliver" in m.subject.lower()]
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_an_approval_webhook_captures_when_the_shopper_never_comes_back(
    client, paypal_only, keyed_order, django_capture_on_commit_callbacks
):
    # Given a shopper who approved at PayPal and closed the window before returning
    client.get(f"/pay/{keyed_order.token}/")
    payment = Payment.objects.get(order=keyed_order)
    approved = paypal_only.approve(payment.provider_ref)

    # When PayPal's CHECKOUT.ORDER.APPROVED webhook arrives
    event = {"id": "WH-APPROVED-1", "event_type": "CHECKOUT.ORDER.APPROVED", "resource": approved}
    with django_capture_on_commit_callbacks(execute=True):
        response = post_signed(client, paypal_only, event)

    # Then the shop captured and delivered
    assert response.json()["outcome"] == "applied"
    keyed_order.refresh_from_db()
    assert keyed_order.status == OrderStatus.FULFILLED
    assert len(paypal_only.captures) == 1


@pytest.mark.django_db
def test_a_paypal_refund_goes_through_paypal_and_revokes_the_keys(
    approve_and_return, client, paypal_only, keyed_order, django_capture_on_commit_callbacks
):
    payment = approve_and_return(paypal_only, keyed_order)
    mail.outbox.clear()

    # When staff refund the order
    with django_capture_on_commit_callbacks(execute=True):
        refund_issue(order=keyed_order, actor="staff:ann", reason="Customer request.")

    # Then PayPal refunded the whole capture once, the key is revoked and the shopper told
    assert [r["amount"] for r in paypal_only.refunds.values()] == [{"currency_code": "USD", "value": "25.00"}]
    assert paypal_only.captures[payment.capture_ref]["status"] == "REFUNDED"
    keyed_order.refresh_from_db()
    assert (keyed_order.status, keyed_order.payment_state) == (OrderStatus.REFUNDED, "refunded")
    assert LicenseKey.objects.get(order_line__order=keyed_order).status == KeyStatus.REVOKED
    assert ["was refunded" in m.subject for m in mail.outbox] == [True]
    refund_request_ids = [rid for method, path, rid in paypal_only.requests_seen if path.endswith("/refund")]
    assert refund_request_ids == [Refund.objects.get().idempotency_key]

    # And PayPal's own notice of that refund changes nothing more
    refund = next(iter(paypal_only.refunds.values()))
    event = {"id": "WH-REFUND-1", "event_type": "PAYMENT.CAPTURE.REFUNDED", "resource": refund}
    assert post_signed(client, paypal_only, event).json()["outcome"] == "duplicate"
    assert Refund.objects.count() == 1


@pytest.mark.django_db
def test_refund_settles_from_paypals_notice_when_its_answer_was_lost(
    approve_and_return, client, paypal_only, keyed_order, django_capture_on_commit_callbacks
):
    # Given PayPal refunds but its answer never reaches the shop
    approve_and_return(paypal_only, keyed_order)
    paypal_only.fail("/v2/payments/captures/", "commit_then_timeout", seconds=0.5)
    from django.test import override_settings

    with override_settings(PAYPAL_TIMEOUT_SECONDS=0.2), pytest.raises(ProviderUnavailable):
        refund_issue(order=keyed_order, actor="staff:ann", reason="Lost answer.")
    keyed_order.refresh_from_db()
    assert keyed_order.status == OrderStatus.FULFILLED
    assert Refund.objects.get().status == "pending"

    # When PayPal's refund webhook arrives
    refund = next(iter(paypal_only.refunds.values()))
    event = {"id": "WH-REFUND-LOST", "event_type": "PAYMENT.CAPTURE.REFUNDED", "resource": refund}
    with django_capture_on_commit_callbacks(execute=True):
        outcome = post_signed(client, paypal_only, event).json()["outcome"]

    # Then our pending refund settles with PayPal's id: refunded once, keys revoked
    assert outcome == "refund_settled"
    keyed_order.refresh_from_db()
    assert keyed_order.status == OrderStatus.REFUNDED
    assert Refund.objects.get().provider_ref == refund["id"]
    assert len(paypal_only.refunds) == 1


@pytest.mark.django_db
def test_forged_paypal_webhooks_are_refused_and_change_nothing(client, paypal_only, keyed_order, settings):
    client.get(f"/pay/{keyed_order.token}/")
    payment = Payment.objects.get(order=keyed_order)
    approved = paypal_only.approve(payment.provider_ref)
    event = {"id": "WH-FORGED", "event_type": "CHECKOUT.ORDER.APPROVED", "resource": approved}
    body = json.dumps(event).encode()
    good = paypal_only.signed_headers(body)
    from cryptography.hazmat.primitives.asymmetric import rsa

    attacker_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forgeries = {
        "tampered body": (body.replace(b"WH-FORGED", b"WH-FORGED-2"), good),
        "wrong webhook id": (body, paypal_only.signed_headers(body, webhook_id="WH-SOMEONE-ELSE")),
        "signed with another key": (body, paypal_only.signed_headers(body, private_key=attacker_key)),
        "certificate from elsewhere": (body, paypal_only.signed_headers(body, cert_url="http://198.51.100.9/c.pem")),
        "no signature": (body, {k: v for k, v in good.items() if k.upper() != "PAYPAL-TRANSMISSION-SIG"}),
        "not base64": (body, {**good, "PAYPAL-TRANSMISSION-SIG": "!!!"}),
        "other algorithm": (body, {**good, "PAYPAL-AUTH-ALGO": "SHA1withRSA"}),
    }
    for name, (payload, headers) in forgeries.items():
        meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        response = client.post(WEBHOOK, data=payload, content_type="application/json", **meta)
        assert response.status_code == 400, name
    assert not WebhookEvent.objects.exists()
    assert paypal_only.captures == {}
    keyed_order.refresh_from_db()
    assert keyed_order.status == OrderStatus.PENDING_PAYMENT


@pytest.mark.django_db
def test_a_certificate_not_issued_by_a_trusted_authority_is_refused(
    client, paypal_only, keyed_order, settings, tmp_path, caplog
):
    # Given the shop trusts only the real roots (not the fake's test CA)
    import certifi

    settings.PAYPAL_CERT_TRUST = certifi.where()
    from payments.providers.paypal_webhooks import clear_certificate_cache

    clear_certificate_cache()
    event = {"id": "WH-UNTRUSTED", "event_type": "CHECKOUT.ORDER.APPROVED", "resource": {"id": "X"}}

    # When a webhook signed with the fake's certificate arrives
    response = post_signed(client, paypal_only, event)

    # Then it is refused (the answer is the same for every refusal; the log says why)
    assert response.status_code == 400
    assert "trusted authority" in caplog.text


@pytest.mark.django_db
def test_webhooks_can_be_verified_by_paypals_own_api(approve_and_return, client, paypal_only, keyed_order, settings):
    settings.PAYPAL_WEBHOOK_VERIFY = "api"
    payment = approve_and_return(paypal_only, keyed_order)
    capture = paypal_only.captures[payment.capture_ref]
    event = {"id": "WH-API-1", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": capture}
    body = json.dumps(event).encode()

    good = post_signed(client, paypal_only, event)
    forged_headers = {**paypal_only.signed_headers(body), "PAYPAL-TRANSMISSION-ID": "made-up"}
    meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in forged_headers.items()}
    forged = client.post(WEBHOOK, data=body.replace(b"WH-API-1", b"WH-API-2"), content_type="application/json", **meta)

    assert good.status_code == 200
    assert forged.status_code == 400
    assert "verify-webhook-signature" in {path.rsplit("/", 1)[-1] for _, path, _ in paypal_only.requests_seen}


@pytest.mark.django_db
def test_a_paypal_dispute_marks_the_order_revokes_and_keeps_the_evidence(
    approve_and_return, client, paypal_only, keyed_order
):
    from payments.models import Dispute
    from riskengine.models import FraudLabel

    payment = approve_and_return(paypal_only, keyed_order)
    client.post(
        f"/order/{keyed_order.token}/reveal/",
        {"line": keyed_order.lines.get().pk},
        REMOTE_ADDR="203.0.113.50",
        follow=True,
    )
    dispute = paypal_only.open_dispute(payment.capture_ref, reason="UNAUTHORISED")
    event = {"id": "WH-DISPUTE-1", "event_type": "CUSTOMER.DISPUTE.CREATED", "resource": dispute}

    assert post_signed(client, paypal_only, event).json()["outcome"] == "labelled"

    recorded = Dispute.objects.get()
    assert (recorded.provider, recorded.reason, recorded.amount) == ("paypal", "UNAUTHORISED", 2500)
    assert recorded.evidence["reveals"] == 1
    assert "203.0.113.50" in recorded.evidence["access_log"][0]
    assert LicenseKey.objects.get(order_line__order=keyed_order).status == KeyStatus.REVOKED
    assert FraudLabel.objects.filter(order=keyed_order, source="dispute", is_fraud=True).exists()


@pytest.mark.django_db
def test_a_paypal_reversal_is_recorded_as_a_lost_dispute_and_revokes(
    approve_and_return, client, paypal_only, keyed_order
):
    from payments.models import Dispute

    payment = approve_and_return(paypal_only, keyed_order)
    reversed_capture = paypal_only.reverse_capture(payment.capture_ref)
    event = {"id": "WH-REVERSED-1", "event_type": "PAYMENT.CAPTURE.REVERSED", "resource": reversed_capture}

    assert post_signed(client, paypal_only, event).json()["outcome"] == "labelled"
    assert Dispute.objects.get().status == "lost"
    assert LicenseKey.objects.get(order_line__order=keyed_order).status == KeyStatus.REVOKED


@pytest.mark.django_db
def test_a_declined_paypal_capture_sends_the_shopper_back_to_choose_again(client, paypal_only, keyed_order):
    client.get(f"/pay/{keyed_order.token}/")
    payment = Payment.objects.get(order=keyed_order)
    paypal_only.approve(payment.provider_ref)
    paypal_only.set_capture_outcome("INSTRUMENT_DECLINED")

    back = client.get(f"/pay/{keyed_order.token}/return/?token={payment.provider_ref}&PayerID=P")

    assert back.status_code == 302 and back["Location"].endswith("?declined=1")
    keyed_order.refresh_from_db()
    assert keyed_order.status == OrderStatus.PENDING_PAYMENT
    assert LicenseKey.objects.filter(order_line__order=keyed_order).count() == 0


@pytest.mark.django_db
def test_payment_start_uses_paypal_request_ids_so_a_retry_opens_no_second_order(paypal_only, keyed_order):
    first = payment_start_for_order(order=keyed_order)
    again = payment_start_for_order(order=keyed_order)
    assert first.pk == again.pk
    assert len(paypal_only.orders) == 1
