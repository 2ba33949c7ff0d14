"""The fake PayPal (devtools/paypal_fake.py) driven through PayPal's own SDK, which keeps the fake true to the SDK."""

import json
import threading
import uuid
import zlib
from base64 import b64decode
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from apimatic_core.exceptions.auth_validation_exception import AuthValidationException
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from paypalserversdk.configuration import Configuration, Server
from paypalserversdk.exceptions.api_exception import ApiException
from paypalserversdk.exceptions.error_exception import ErrorException
from paypalserversdk.exceptions.search_error_exception import SearchErrorException
from paypalserversdk.http.auth.o_auth_2 import ClientCredentialsAuthCredentials
from paypalserversdk.models.amount_with_breakdown import AmountWithBreakdown
from paypalserversdk.models.checkout_payment_intent import CheckoutPaymentIntent
from paypalserversdk.models.money import Money
from paypalserversdk.models.order_application_context import OrderApplicationContext
from paypalserversdk.models.order_request import OrderRequest
from paypalserversdk.models.payment_source import PaymentSource
from paypalserversdk.models.paypal_wallet import PaypalWallet
from paypalserversdk.models.paypal_wallet_experience_context import PaypalWalletExperienceContext
from paypalserversdk.models.purchase_unit_request import PurchaseUnitRequest
from paypalserversdk.models.refund_request import RefundRequest
from paypalserversdk.paypal_serversdk_client import PaypalServersdkClient

from devtools.paypal_fake import FakePayPal, paypal_fake_start

SHOP = "https://shop.example.com"
REPRESENTATION = "return=representation"


class FakePayPalConfiguration(Configuration):
    """The SDK has no base-URL option; the client only ever asks its config for get_base_uri()."""

    def __init__(self, base_uri: str, **kwargs):
        self.fake_base_uri = base_uri
        super().__init__(**kwargs)

    def get_base_uri(self, server=Server.DEFAULT):
        return self.fake_base_uri


def sdk_client(fake: FakePayPal, *, timeout: float = 5, client_secret: str | None = None) -> PaypalServersdkClient:
    credentials = ClientCredentialsAuthCredentials(
        o_auth_client_id=fake.client_id, o_auth_client_secret=client_secret or fake.client_secret
    )
    config = FakePayPalConfiguration(fake.url, timeout=timeout, client_credentials_auth_credentials=credentials)
    return PaypalServersdkClient(config=config)


@pytest.fixture
def fake():
    server = paypal_fake_start()
    yield server
    server.stop()


@pytest.fixture
def client(fake):
    return sdk_client(fake)


class WebhookReceiver:
    """A tiny local HTTP endpoint that records what PayPal (the fake) posts to it."""

    def __init__(self):
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.upper(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/paypal"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def receiver():
    webhook_receiver = WebhookReceiver()
    yield webhook_receiver
    webhook_receiver.server.shutdown()
    webhook_receiver.server.server_close()


def order_request(value="19.99", currency="USD", *, legacy=False, invoice_id=None) -> OrderRequest:
    unit = PurchaseUnitRequest(
        amount=AmountWithBreakdown(currency_code=currency, value=value),
        reference_id="default",
        custom_id="order-1042",
        invoice_id=invoice_id or f"INV-{uuid.uuid4().hex[:10]}",
    )
    urls = {"return_url": f"{SHOP}/paypal/return?x=1", "cancel_url": f"{SHOP}/paypal/cancel"}
    if legacy:
        return OrderRequest(
            intent=CheckoutPaymentIntent.CAPTURE,
            purchase_units=[unit],
            application_context=OrderApplicationContext(**urls),
        )
    wallet = PaypalWallet(experience_context=PaypalWalletExperienceContext(**urls))
    return OrderRequest(
        intent=CheckoutPaymentIntent.CAPTURE, purchase_units=[unit], payment_source=PaymentSource(paypal=wallet)
    )


def create_order(client, **kwargs):
    return client.orders.create_order({"body": order_request(**kwargs), "prefer": REPRESENTATION}).body


def approved_order(client, fake, **kwargs):
    order = create_order(client, **kwargs)
    fake.approve(order.id, email="ana@example.com", country="DE")
    return order


def captured(client, fake, **kwargs):
    order = approved_order(client, fake, **kwargs)
    body = client.orders.capture_order({"id": order.id, "prefer": REPRESENTATION}).body
    return body, body.purchase_units[0].payments.captures[0]


def link(resource, rel: str) -> str:
    return next(item.href for item in resource.links if item.rel == rel)


def bearer_headers(client) -> dict[str, str]:
    """The SDK fetches the token; plain requests then call what the SDK does not cover."""
    token = client.o_auth_authorization.request_token({"authorization": client.oauth_2.build_basic_auth_header()})
    return {"Authorization": f"Bearer {token.body.access_token}"}


def test_the_sdk_fetches_an_oauth_token_and_every_api_call_needs_it(fake, client):
    create_order(client)

    assert ("POST", "/v1/oauth2/token", None) in fake.requests_seen
    no_token = requests.get(f"{fake.url}/v2/checkout/orders/ANY", timeout=5)
    assert no_token.status_code == 401
    assert no_token.json()["name"] == "AUTHENTICATION_FAILURE"
    wrong = requests.post(
        f"{fake.url}/v1/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("fake-client", "nope"),
        timeout=5,
    )
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")


def test_wrong_client_secret_fails_before_any_api_call(fake):
    with pytest.raises(AuthValidationException, match="OAuthToken is undefined or expired"):
        create_order(sdk_client(fake, client_secret="wrong"))
    assert [path for _, path, _ in fake.requests_seen] == ["/v1/oauth2/token"]


def test_checkout_through_the_buyer_page_then_capture_and_two_refunds(fake, client):
    created = client.orders.create_order({"body": order_request()})
    assert created.status_code == 201
    order = created.body  # a paypalserversdk.models.Order, minimal by default: id, status, links
    assert order.status == "PAYER_ACTION_REQUIRED"
    assert not hasattr(order, "purchase_units")  # the SDK leaves absent fields unset, not None

    page = requests.get(link(order, "payer-action"), timeout=5)
    assert page.status_code == 200 and "19.99 USD" in page.text and "Approve and pay" in page.text
    approved = requests.post(
        f"{fake.url}/checkoutnow?token={order.id}",
        data={"email": "ana@example.com", "country": "DE"},
        allow_redirects=False,
        timeout=5,
    )
    assert approved.status_code == 303
    back = urlsplit(approved.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == f"{SHOP}/paypal/return"
    query = parse_qs(back.query)
    assert query["token"] == [order.id] and query["x"] == ["1"]
    assert query["PayerID"] == [fake.orders[order.id]["payer"]["payer_id"]]

    order = client.orders.get_order({"id": order.id}).body
    assert order.status == "APPROVED"
    assert (order.payer.email_address, order.payer.address.country_code) == ("ana@example.com", "DE")

    answer = client.orders.capture_order({"id": order.id, "prefer": REPRESENTATION}).body
    assert answer.status == "COMPLETED"
    capture = answer.purchase_units[0].payments.captures[0]
    assert (capture.status, capture.amount.value, capture.final_capture) == ("COMPLETED", "19.99", True)
    assert (capture.custom_id, capture.invoice_id) == ("order-1042", answer.purchase_units[0].invoice_id)
    breakdown = capture.seller_receivable_breakdown  # 19.99 * 3.49 % + 0.49 = 1.1877 -> 1.19
    fees = (breakdown.gross_amount.value, breakdown.paypal_fee.value, breakdown.net_amount.value)
    assert fees == ("19.99", "1.19", "18.80")
    assert {item.rel for item in capture.links} == {"self", "refund", "up"}
    assert link(capture, "up").endswith(f"/v2/checkout/orders/{order.id}")

    partial = client.payments.refund_captured_payment(
        {
            "capture_id": capture.id,
            "body": RefundRequest(
                amount=Money(currency_code="USD", value="5.00"), invoice_id="RF-1", note_to_payer="Sorry"
            ),
            "prefer": REPRESENTATION,
        }
    ).body
    assert (partial.status, partial.amount.value) == ("COMPLETED", "5.00")
    payable = partial.seller_payable_breakdown  # 1.19 * 5.00 / 19.99 = 0.2977 -> 0.30
    fees = (payable.paypal_fee.value, payable.net_amount.value, payable.total_refunded_amount.value)
    assert fees == ("0.30", "4.70", "5.00")
    assert link(partial, "up").endswith(f"/v2/payments/captures/{capture.id}")
    assert client.payments.get_captured_payment({"capture_id": capture.id}).body.status == "PARTIALLY_REFUNDED"

    with pytest.raises(ErrorException) as too_much:
        client.payments.refund_captured_payment(
            {"capture_id": capture.id, "body": RefundRequest(amount=Money(currency_code="USD", value="15.00"))}
        )
    assert (too_much.value.response_code, too_much.value.details[0].issue) == (422, "REFUND_AMOUNT_EXCEEDED")

    rest = client.payments.refund_captured_payment({"capture_id": capture.id, "body": RefundRequest()}).body
    assert rest.status == "COMPLETED" and not hasattr(rest, "amount")  # minimal answer without Prefer
    rest = client.payments.get_refund({"refund_id": rest.id}).body
    payable = rest.seller_payable_breakdown  # the last refund returns the rest of the fee: 1.19 - 0.30
    assert (rest.amount.value, payable.paypal_fee.value, payable.net_amount.value) == ("14.99", "0.89", "14.10")
    assert payable.total_refunded_amount.value == "19.99"

    capture = client.payments.get_captured_payment({"capture_id": capture.id}).body
    assert capture.status == "REFUNDED"
    assert capture.supplementary_data.related_ids.order_id == order.id
    with pytest.raises(ErrorException) as again:
        client.payments.refund_captured_payment({"capture_id": capture.id, "body": RefundRequest()})
    assert again.value.details[0].issue == "CAPTURE_FULLY_REFUNDED"
    order = client.orders.get_order({"id": order.id}).body
    assert [refund.amount.value for refund in order.purchase_units[0].payments.refunds] == ["5.00", "14.99"]


def test_legacy_application_context_gives_created_and_approve_and_jpy_has_no_decimals(fake, client):
    order = create_order(client, value="1000", currency="JPY", legacy=True)
    assert order.status == "CREATED"
    assert link(order, "approve") == f"{fake.url}/checkoutnow?token={order.id}"

    cancel = requests.get(f"{fake.url}/checkoutnow/cancel?token={order.id}", allow_redirects=False, timeout=5)
    assert cancel.status_code == 303
    assert cancel.headers["Location"] == f"{SHOP}/paypal/cancel?token={order.id}"

    fake.approve(order.id)
    capture = client.orders.capture_order({"id": order.id}).body.purchase_units[0].payments.captures[0]
    breakdown = capture.seller_receivable_breakdown  # 1000 * 3.49 % + 0.49 = 35.39 -> 35
    assert (breakdown.paypal_fee.value, breakdown.net_amount.value) == ("35", "965")


@pytest.mark.parametrize(
    ("currency", "value", "status", "issue"),
    [
        ("USD", "10.001", 422, "DECIMAL_PRECISION"),
        ("JPY", "100.50", 422, "DECIMALS_NOT_SUPPORTED"),
        ("USD", "0.00", 422, "CANNOT_BE_ZERO_OR_NEGATIVE"),
        ("USD", "-1.00", 422, "CANNOT_BE_ZERO_OR_NEGATIVE"),
        ("USD", "ten", 400, "INVALID_PARAMETER_SYNTAX"),
        ("XYZ", "1.00", 422, "CURRENCY_NOT_SUPPORTED"),
    ],
)
def test_amounts_are_validated_like_paypal(client, currency, value, status, issue):
    with pytest.raises(ErrorException) as error:
        create_order(client, currency=currency, value=value)

    assert (error.value.response_code, error.value.details[0].issue) == (status, issue)
    assert error.value.name == {400: "INVALID_REQUEST", 422: "UNPROCESSABLE_ENTITY"}[status]
    assert error.value.debug_id


def test_items_must_add_up_to_the_breakdown(client):
    unit = {
        "amount": {
            "currency_code": "USD",
            "value": "20.00",
            "breakdown": {"item_total": {"currency_code": "USD", "value": "20.00"}},
        },
        "items": [
            {
                "name": "E-book",
                "quantity": "3",
                "unit_amount": {"currency_code": "USD", "value": "6.00"},
                "category": "DIGITAL_GOODS",
            }
        ],
    }
    with pytest.raises(ErrorException) as error:
        client.orders.create_order({"body": {"intent": "CAPTURE", "purchase_units": [unit]}})
    assert error.value.details[0].issue == "ITEM_TOTAL_MISMATCH"


def test_capture_before_approval_and_a_second_capture_are_refused(fake, client):
    order = create_order(client)
    with pytest.raises(ErrorException) as not_approved:
        client.orders.capture_order({"id": order.id})
    assert (not_approved.value.response_code, not_approved.value.details[0].issue) == (422, "ORDER_NOT_APPROVED")

    fake.approve(order.id)
    client.orders.capture_order({"id": order.id})
    with pytest.raises(ErrorException) as twice:
        client.orders.capture_order({"id": order.id})
    assert (twice.value.name, twice.value.details[0].issue) == ("UNPROCESSABLE_ENTITY", "ORDER_ALREADY_CAPTURED")
    assert len(fake.captures) == 1

    with pytest.raises(ErrorException) as unknown:
        client.orders.get_order({"id": "NOSUCHORDER"})
    assert (unknown.value.response_code, unknown.value.name) == (404, "RESOURCE_NOT_FOUND")


def test_paypal_request_id_makes_create_capture_and_refund_idempotent(fake, client):
    body = order_request(invoice_id="INV-1")
    first = client.orders.create_order({"body": body, "paypal_request_id": "create-1"}).body
    again = client.orders.create_order({"body": body, "paypal_request_id": "create-1"})
    assert again.status_code == 200 and again.body.id == first.id
    assert len(fake.orders) == 1
    with pytest.raises(ErrorException) as reused:
        client.orders.create_order({"body": order_request(invoice_id="INV-2"), "paypal_request_id": "create-1"})
    assert reused.value.details[0].issue == "DUPLICATE_REQUEST_ID"

    fake.approve(first.id)
    capture_1 = client.orders.capture_order({"id": first.id, "paypal_request_id": "capture-1"}).body
    capture_2 = client.orders.capture_order({"id": first.id, "paypal_request_id": "capture-1"}).body
    assert capture_1.purchase_units[0].payments.captures[0].id == capture_2.purchase_units[0].payments.captures[0].id
    assert len(fake.captures) == 1

    capture_id = capture_1.purchase_units[0].payments.captures[0].id
    refund = {
        "capture_id": capture_id,
        "paypal_request_id": "refund-1",
        "body": RefundRequest(amount=Money(currency_code="USD", value="1.00")),
    }
    first_refund = client.payments.refund_captured_payment(refund).body
    assert client.payments.refund_captured_payment(refund).body.id == first_refund.id
    assert len(fake.refunds) == 1
    assert fake.captures[capture_id]["status"] == "PARTIALLY_REFUNDED"
    assert ("POST", f"/v2/payments/captures/{capture_id}/refund", "refund-1") in fake.requests_seen


def test_a_capture_whose_answer_was_lost_is_retried_safely_with_the_same_request_id(fake):
    client = sdk_client(fake, timeout=0.3)
    order = approved_order(client, fake)
    fake.fail(f"/v2/checkout/orders/{order.id}/capture", "commit_then_timeout", seconds=0.6)

    with pytest.raises(requests.exceptions.Timeout):
        client.orders.capture_order({"id": order.id, "paypal_request_id": f"capture-{order.id}"})
    assert fake.orders[order.id]["status"] == "COMPLETED"  # PayPal did capture

    retried = client.orders.capture_order({"id": order.id, "paypal_request_id": f"capture-{order.id}"}).body
    assert retried.status == "COMPLETED" and len(fake.captures) == 1


def test_webhooks_are_signed_like_paypal_and_verify_with_the_certificate(fake, client, receiver):
    fake.register_webhook(receiver.url)
    _, capture = captured(client, fake)

    fake.wait_delivered(2)
    assert [event["event_type"] for event, _ in fake.delivered] == [
        "CHECKOUT.ORDER.APPROVED",
        "PAYMENT.CAPTURE.COMPLETED",
    ]
    assert [status for _, status in fake.delivered] == [200, 200]
    headers, body = receiver.received[1]
    event = json.loads(body)
    assert (event["event_version"], event["resource_version"], event["resource_type"]) == ("1.0", "2.0", "capture")
    assert event["id"].startswith("WH-")
    resource = event["resource"]
    assert resource["id"] == capture.id and resource["custom_id"] == "order-1042"
    assert resource["supplementary_data"]["related_ids"]["order_id"] in fake.orders
    assert resource["seller_receivable_breakdown"]["net_amount"]["value"] == "18.80"
    assert headers["PAYPAL-AUTH-ALGO"] == "SHA256withRSA" and headers["CONTENT-TYPE"] == "application/json"
    datetime.strptime(headers["PAYPAL-TRANSMISSION-TIME"], "%Y-%m-%dT%H:%M:%SZ")

    leaf, ca = x509.load_pem_x509_certificates(requests.get(headers["PAYPAL-CERT-URL"], timeout=5).content)
    assert ca == x509.load_pem_x509_certificate(fake.ca_pem)
    leaf.verify_directly_issued_by(ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["messageverificationcerts.paypal.com"]

    def verify(raw: bytes) -> None:
        signed = f"{headers['PAYPAL-TRANSMISSION-ID']}|{headers['PAYPAL-TRANSMISSION-TIME']}|WH-FAKE|{zlib.crc32(raw)}"
        signature = b64decode(headers["PAYPAL-TRANSMISSION-SIG"])
        leaf.public_key().verify(signature, signed.encode(), padding.PKCS1v15(), hashes.SHA256())

    verify(body)
    with pytest.raises(InvalidSignature):
        verify(body.replace(b"18.80", b"99.80"))


def test_verify_webhook_signature_answers_success_only_for_what_the_fake_signed(fake, client):
    event = fake.send_event("PAYMENT.CAPTURE.COMPLETED", {"id": "CAPTURE1", "status": "COMPLETED"})
    body = json.dumps(event).encode()

    def verification(headers: dict[str, str], webhook_event: dict, webhook_id: str = "WH-FAKE") -> str:
        answer = requests.post(
            f"{fake.url}/v1/notifications/verify-webhook-signature",
            json={
                "auth_algo": headers["PAYPAL-AUTH-ALGO"],
                "cert_url": headers["PAYPAL-CERT-URL"],
                "transmission_id": headers["PAYPAL-TRANSMISSION-ID"],
                "transmission_sig": headers["PAYPAL-TRANSMISSION-SIG"],
                "transmission_time": headers["PAYPAL-TRANSMISSION-TIME"],
                "webhook_id": webhook_id,
                "webhook_event": webhook_event,
            },
            headers=bearer_headers(client),
            timeout=5,
        )
        assert answer.status_code == 200
        return answer.json()["verification_status"]

    headers = fake.signed_headers(body)
    assert verification(headers, event) == "SUCCESS"
    assert verification(headers, event | {"summary": "tampered"}) == "FAILURE"
    assert verification(headers, event, webhook_id="WH-OTHER") == "FAILURE"
    assert verification(fake.signed_headers(body, webhook_id="WH-OTHER"), event) == "FAILURE"
    forged = fake.signed_headers(body, private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert verification(forged, event) == "FAILURE"


def test_webhooks_can_be_held_released_in_order_dropped_and_redelivered(fake, client, receiver):
    fake.register_webhook(receiver.url)
    fake.hold_webhooks()
    _, capture = captured(client, fake)
    client.payments.refund_captured_payment({"capture_id": capture.id, "body": RefundRequest()})
    assert fake.delivered == []

    fake.release_webhooks()
    fake.wait_delivered(3)
    types = [event["event_type"] for event, _ in fake.delivered]
    assert types == ["CHECKOUT.ORDER.APPROVED", "PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.REFUNDED"]
    refunded = fake.delivered[2][0]["resource"]
    assert link_rel(refunded, "up").endswith(f"/v2/payments/captures/{capture.id}")

    fake.drop_webhooks(True)
    fake.open_dispute(capture.id)
    assert [event["event_type"] for event in fake.dropped] == ["CUSTOMER.DISPUTE.CREATED"]
    fake.drop_webhooks(False)
    fake.redeliver(fake.dropped[0]["id"])
    fake.wait_delivered(4)
    assert json.loads(receiver.received[3][1])["id"] == fake.dropped[0]["id"]


def link_rel(resource: dict, rel: str) -> str:
    return next(item["href"] for item in resource["links"] if item["rel"] == rel)


def test_disputes_and_reversals(fake, client, receiver):
    fake.register_webhook(receiver.url, event_types=["CUSTOMER.DISPUTE.CREATED", "PAYMENT.CAPTURE.REVERSED"])
    _, capture = captured(client, fake)

    dispute = fake.open_dispute(capture.id)
    fake.reverse_capture(capture.id)
    fake.wait_delivered(2)

    first, second = (json.loads(body) for _, body in receiver.received)
    assert first["event_type"] == "CUSTOMER.DISPUTE.CREATED" and first["resource_type"] == "dispute"
    assert first["resource"]["disputed_transactions"][0]["seller_transaction_id"] == capture.id
    assert first["resource"]["dispute_id"] == dispute["dispute_id"]
    assert (second["event_type"], second["resource"]["status"]) == ("PAYMENT.CAPTURE.REVERSED", "REVERSED")
    assert client.payments.get_captured_payment({"capture_id": capture.id}).body.status == "REVERSED"
    with pytest.raises(ErrorException) as refused:
        client.payments.refund_captured_payment({"capture_id": capture.id, "body": RefundRequest()})
    assert refused.value.details[0].issue == "REFUND_NOT_PERMITTED_DUE_TO_CHARGEBACK"


def test_pending_and_declined_captures(fake, client):
    fake.set_capture_outcome("PENDING", "INSTRUMENT_DECLINED")
    _, pending = captured(client, fake)
    assert pending.status == "PENDING" and pending.status_details.reason == "PENDING_REVIEW"
    with pytest.raises(ErrorException) as early:
        client.payments.refund_captured_payment({"capture_id": pending.id, "body": RefundRequest()})
    assert early.value.details[0].issue == "PENDING_CAPTURE"
    fake.settle_capture(pending.id)
    assert client.payments.get_captured_payment({"capture_id": pending.id}).body.status == "COMPLETED"

    order = approved_order(client, fake)
    with pytest.raises(ErrorException) as declined:
        client.orders.capture_order({"id": order.id})
    assert declined.value.details[0].issue == "INSTRUMENT_DECLINED"
    assert link(declined.value, "redirect") == f"{fake.url}/checkoutnow?token={order.id}"
    assert fake.orders[order.id]["status"] == "PAYER_ACTION_REQUIRED"  # the buyer has to approve again
    assert [event["event_type"] for event in fake.events].count("PAYMENT.CAPTURE.PENDING") == 1


def test_a_second_order_with_the_same_invoice_id_is_refused_at_capture(fake, client):
    captured(client, fake, invoice_id="INV-SAME")
    order = approved_order(client, fake, invoice_id="INV-SAME")
    with pytest.raises(ErrorException) as duplicate:
        client.orders.capture_order({"id": order.id})
    assert duplicate.value.details[0].issue == "DUPLICATE_INVOICE_ID"


def test_transaction_search_lists_captures_and_refunds(fake, client):
    order, capture = captured(client, fake)
    client.payments.refund_captured_payment(
        {"capture_id": capture.id, "body": RefundRequest(amount=Money(currency_code="USD", value="2.00"))}
    )
    now = datetime.now(UTC)
    window = {
        "start_date": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_date": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }

    found = client.transaction_search.search_transactions(window | {"fields": "all", "page_size": 1, "page": 1}).body
    assert (found.page, found.total_items, found.total_pages) == (1, 2, 2)
    info = found.transaction_details[0].transaction_info
    assert (info.transaction_id, info.paypal_reference_id, info.transaction_event_code) == (
        capture.id,
        order.id,
        "T0006",
    )
    assert (info.transaction_status, info.transaction_amount.value, info.fee_amount.value) == ("S", "19.99", "-1.19")
    assert (info.custom_field, info.invoice_id) == ("order-1042", capture.invoice_id)
    assert info.transaction_initiation_date.endswith("+0000")

    refund = client.transaction_search.search_transactions(window | {"page_size": 1, "page": 2}).body
    refund_info = refund.transaction_details[0].transaction_info
    assert (refund_info.transaction_event_code, refund_info.transaction_amount.value) == ("T1107", "-2.00")
    assert refund_info.paypal_reference_id == capture.id

    with pytest.raises(SearchErrorException) as too_long:
        client.transaction_search.search_transactions(
            {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-03-01T00:00:00Z"}
        )
    assert too_long.value.response_code == 400


def test_faults_surface_as_sdk_errors_and_requests_exceptions(fake):
    client = sdk_client(fake, timeout=0.3)
    create_order(client)  # the token is fetched before any fault

    fake.fail("/v2/checkout/orders", 500)
    with pytest.raises(ErrorException) as server_error:
        create_order(client)
    assert (server_error.value.response_code, server_error.value.name) == (500, "INTERNAL_SERVER_ERROR")

    fake.fail("/v2/checkout/orders", 503)
    with pytest.raises(ApiException) as unavailable:
        create_order(client)
    assert unavailable.value.response_code == 503

    fake.fail("/v2/checkout/orders", "timeout", seconds=0.6)
    with pytest.raises(requests.exceptions.Timeout):
        create_order(client)

    fake.fail("/v2/checkout/orders", "reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        create_order(client)
    assert len(fake.orders) == 1  # none of the failed calls created an order

    create_order(client)
    fake.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        create_order(client)
