"""Outbound webhooks: signed the Standard Webhooks way, sent after commit (never in the order's transaction), retried
with exponential backoff for three days, every attempt logged, resent by hand, a failing endpoint disabled with an
email, and no request ever made to the shop's own network (SSRF)."""

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import transaction
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from fulfillment.crypto import encrypt_secret
from storefront import safe_http
from storefront.flow.outbound import new_endpoint_secret, outbound_emit, retry_delay, webhook_resend, webhooks_send_due
from storefront.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.conftest import record_payment
from tests.licensing import generated_product

START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Receiver:
    """A merchant's endpoint on 127.0.0.1: records what it is sent and answers `status`."""

    def __init__(self):
        self.status = 200
        self.received: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def types(self) -> list[str]:
        return [json.loads(body)["type"] for _, body in self.received]


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_LOOPBACK_HTTP = True
    server = Receiver()
    yield server
    server.server.shutdown()


@pytest.fixture
def endpoint(db, receiver):
    secret = new_endpoint_secret()
    found = WebhookEndpoint.objects.create(
        url=receiver.url,
        secret_ciphertext=encrypt_secret(secret),
        events=["order.paid", "order.delivered", "license.activated", "order.refunded"],
    )
    found.secret = secret
    return found


def test_a_paid_order_is_announced_signed_after_commit(
    endpoint, receiver, make_order, django_capture_on_commit_callbacks
):
    order = make_order((generated_product(), 1))

    record_payment(order, django_capture_on_commit_callbacks)

    assert receiver.types() == ["order.paid", "order.delivered"]
    headers, body = receiver.received[0]
    assert headers["webhook-id"].startswith("msg_") and headers["webhook-timestamp"].isdigit()
    payload = Webhook(endpoint.secret).verify(body, headers)  # raises unless signed with the endpoint's secret
    assert payload["data"]["order"]["number"] == order.number and payload["data"]["order"]["status"] == "paid"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_endpoint_secret()).verify(body, headers)
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SUCCEEDED}
    attempt = WebhookAttempt.objects.first()
    assert (attempt.status_code, attempt.succeeded, attempt.error) == (200, True, "")


def test_nothing_is_sent_inside_the_transaction_nor_for_a_rollback(
    endpoint, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        outbound_emit(event="order.paid", data={"order": {"number": "X"}})
    assert (len(callbacks), WebhookDelivery.objects.count(), receiver.received) == (1, 0, [])

    with pytest.raises(RuntimeError), transaction.atomic():
        outbound_emit(event="order.paid", data={"order": {"number": "Y"}})
        raise RuntimeError("the order's transaction fails")
    assert (WebhookDelivery.objects.count(), receiver.received) == (0, [])


def test_an_endpoint_gets_only_the_events_it_chose(endpoint, receiver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        outbound_emit(event="stock.low", data={"product": {"id": 1}})
        outbound_emit(event="license.activated", data={"license": {"id": 1}})
    assert receiver.types() == ["license.activated"]


def test_retries_back_off_for_three_days_then_the_endpoint_is_disabled_with_an_email(
    endpoint, receiver, django_capture_on_commit_callbacks, time_machine
):
    get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    receiver.status = 500
    time_machine.move_to(START, tick=False)
    with django_capture_on_commit_callbacks(execute=True):
        outbound_emit(event="order.paid", data={"order": {"number": "R1"}})
    delivery = WebhookDelivery.objects.get()

    # Each failed attempt schedules the next one 30 s, 2 min, 8 min ... later, at most a day apart
    gaps = []
    while delivery.status == DeliveryStatus.PENDING:
        assert delivery.next_attempt_at is not None
        gaps.append(delivery.next_attempt_at - delivery.last_attempt_at)
        time_machine.move_to(delivery.next_attempt_at - timedelta(seconds=1), tick=False)
        assert webhooks_send_due() == 0  # not due yet
        time_machine.move_to(delivery.next_attempt_at, tick=False)
        with django_capture_on_commit_callbacks(execute=True):  # the email is queued on commit
            assert webhooks_send_due() == 1
        delivery.refresh_from_db()
        assert len(gaps) < 20

    minutes = [gap / timedelta(minutes=1) for gap in gaps]
    assert minutes[:6] == [0.5, 2, 8, 32, 128, 512]
    assert all(gap <= timedelta(hours=24) for gap in gaps)
    assert delivery.status == DeliveryStatus.FAILED and delivery.last_attempt_at == START + timedelta(days=3)
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == len(receiver.received) == len(gaps) + 1
    assert set(WebhookAttempt.objects.values_list("status_code", flat=True)) == {500}
    endpoint.refresh_from_db()
    assert endpoint.enabled is False and "three days" in endpoint.disabled_reason
    assert [m.subject for m in mail.outbox] == ["A webhook endpoint was disabled"]
    assert mail.outbox[0].to == ["boss@example.com"]

    # When the merchant fixes it and resends by hand, the same message (same id) arrives and is recorded
    receiver.status = 204
    resent = webhook_resend(delivery_id=delivery.pk, actor="staff:boss")
    assert (resent.status, resent.last_status_code) == (DeliveryStatus.SUCCEEDED, 204)
    assert receiver.received[-1][0]["webhook-id"] == receiver.received[0][0]["webhook-id"] == delivery.msg_id
    assert WebhookAttempt.objects.filter(delivery=delivery).last().actor == "staff:boss"


def test_retry_delays_grow_fourfold_up_to_a_day():
    assert [retry_delay(n) for n in (1, 2, 3)] == [timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=8)]
    assert retry_delay(12) == timedelta(hours=24)


def test_resend_from_admin(endpoint, receiver, django_capture_on_commit_callbacks, admin_client):
    receiver.status = 503
    with django_capture_on_commit_callbacks(execute=True):
        outbound_emit(event="order.paid", data={"order": {"number": "A1"}})
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    receiver.status = 200

    page = admin_client.post(
        "/admin/storefront/webhookdelivery/", {"action": "resend", "_selected_action": [delivery.pk]}, follow=True
    )

    assert "answered 2xx" in page.content.decode()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SUCCEEDED, 2)
    detail = admin_client.get(f"/admin/storefront/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert "503" in detail and "200" in detail


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # not https
        "https://10.0.0.5/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://localhost/hook",
        "https://user:pass@93.184.215.14/hook",
        "https://100.64.0.1/hook",
        "ftp://93.184.215.14/",
    ],
)
def test_addresses_inside_the_shops_network_are_refused(url, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK_HTTP = False
    with pytest.raises(safe_http.UnsafeUrl):
        safe_http.url_check(url)


def test_a_public_https_address_is_accepted_and_loopback_http_only_under_the_test_setting(settings):
    settings.WEBHOOK_ALLOW_LOOPBACK_HTTP = False
    assert safe_http.url_check("https://93.184.215.14/hook") == "https://93.184.215.14/hook"
    with pytest.raises(safe_http.UnsafeUrl):
        safe_http.url_check("http://127.0.0.1:8000/hook")
    settings.WEBHOOK_ALLOW_LOOPBACK_HTTP = True
    assert safe_http.url_check("http://127.0.0.1:8000/hook")
    with pytest.raises(safe_http.UnsafeUrl):
        safe_http.url_check("http://10.0.0.1/hook")


def test_a_name_that_resolves_to_loopback_when_sending_is_refused_at_connect(receiver, settings, monkeypatch):
    # Given an address that passed the check when saved (DNS rebinding: it now points at the shop's own host)
    settings.WEBHOOK_ALLOW_LOOPBACK_HTTP = False
    monkeypatch.setattr(safe_http, "url_check", lambda url, resolve=True: url)

    # Then the connection itself is refused, and nothing reaches the host
    with pytest.raises(safe_http.UnsafeUrl):
        safe_http.post(receiver.url, body=b"{}", headers={})
    assert receiver.received == []


def test_admin_refuses_a_private_endpoint_and_shows_a_new_secret_once(admin_client, db, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK_HTTP = False
    refused = admin_client.post(
        "/admin/storefront/webhookendpoint/add/",
        {"url": "https://169.254.169.254/", "events": ["order.paid"], "enabled": "on"},
    )
    assert refused.status_code == 200 and "private, loopback or link-local" in refused.content.decode()
    assert not WebhookEndpoint.objects.exists()

    made = admin_client.post(
        "/admin/storefront/webhookendpoint/add/",
        {"url": "https://93.184.215.14/hook", "events": ["order.paid", "stock.low"], "enabled": "on"},
        follow=True,
    )
    assert "whsec_" in made.content.decode()
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["order.paid", "stock.low"] and b"whsec_" not in bytes(endpoint.secret_ciphertext)
