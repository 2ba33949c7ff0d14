"""Webhook hardening (issue 10).

- PayPal names the certificate to fetch in a header anyone can send: the shop only ever connects to a PayPal
  host on https's own port, whatever tricks the URL plays (userinfo, backslashes, ports, redirects, look-alike
  hosts), and every refusal is the same answer, so the endpoint is no port scanner.
- A Stripe event signed too far in the past or in the future is refused.
- A correctly signed body the shop cannot read (not an object, NaN, huge or mistyped values, nested thousands
  deep) is a clear 400, with nothing recorded and at most one log line, from both providers.

Real sockets on 127.0.0.1 stand in for the internal services an attacker would aim at; nothing is faked but the
clock (time-machine) and PayPal itself (devtools/paypal_fake.py).
"""

import hashlib
import hmac
import json
import logging
import socket
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.apps import apps
from django.conf import settings
from django.test import Client

from orders.models import Order, OrderStatus
from payments.models import Payment, PaymentChannel, PaymentStatus, WebhookEvent
from storefront.flow.checkout import payment_start_for_order
from tests.conftest import payment_intent_event
from tests.factories import ProductFactory, add_keys

STRIPE_WEBHOOK = "/payments/stripe/webhook/"
PAYPAL_WEBHOOK = "/payments/webhook/paypal/"
FROZEN = datetime(2031, 3, 14, 12, 0, tzinfo=UTC)
PAYPAL_HOSTS = ["api.paypal.com", "api.sandbox.paypal.com", "api-m.paypal.com", "api-m.sandbox.paypal.com"]
DEEP = 5000


# --- helpers ---------------------------------------------------------------------------------------------------


class Listener:
    """A TCP port on 127.0.0.1 that counts the connections made to it.

    `reply` is sent (as raw HTTP) to whoever connects, after their first bytes; None holds the connection open
    without a word (a service that never answers: the client times out).
    """

    def __init__(self, reply: bytes | None = b""):
        self.reply = reply
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(32)
        self._server.settimeout(0.05)
        self.port = self._server.getsockname()[1]
        self._accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            self._accepted += 1
            if self.reply is None:
                self._held.append(conn)
                continue
            conn.settimeout(2)
            try:
                conn.recv(65536)
                conn.sendall(self.reply)
            except OSError:
                pass
            finally:
                conn.close()

    def connections(self) -> int:
        """Every connection made so far, including those the kernel completed but nobody accepted yet."""
        self._stop.set()
        self._thread.join(5)
        self._server.setblocking(False)
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                break
            self._accepted += 1
            conn.close()
        return self._accepted

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._server.close()


@pytest.fixture
def listen():
    opened: list[Listener] = []

    def make(reply: bytes | None = b"") -> Listener:
        opened.append(Listener(reply))
        return opened[-1]

    yield make
    for listener in opened:
        listener.close()


@pytest.fixture
def lookups(monkeypatch):
    """Every host name the process resolves while the test runs (urllib3 resolves before it connects)."""
    seen: list[tuple[str, object]] = []
    real = socket.getaddrinfo

    def spy(host, port, *args, **kwargs):
        seen.append((host, port))
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    return seen


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_state() -> dict[str, list]:
    return {model._meta.label: list(model._base_manager.order_by("pk").values_list()) for model in apps.get_models()}


def assert_refused(response) -> dict:
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == "invalid_webhook", body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


def app_log_lines(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO]


# --- PayPal: where the certificate comes from ---------------------------------------------------------------------


@pytest.fixture
def paypal_order(paypal, make_order):
    """The PayPal channel against the fake, and an order waiting for its PayPal payment."""
    PaymentChannel.objects.filter(code="stripe").update(enabled=False)
    product = ProductFactory(price_amount=2500)
    add_keys(product, 3)
    order = make_order((product, 1))
    Client().get(f"/pay/{order.token}/")
    payment = Payment.objects.get(order=order, provider="paypal")
    return paypal, order, payment


def post_paypal(fake, body: bytes, *, cert_url: str | None = None, private_key=None):
    headers = fake.signed_headers(body, cert_url=cert_url, private_key=private_key)
    meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    return Client(raise_request_exception=False).post(
        PAYPAL_WEBHOOK, data=body, content_type="application/json", **meta
    )


def approval(payment: Payment, event_id: str = "WH-HARDEN-1") -> bytes:
    return json.dumps(
        {"id": event_id, "event_type": "CHECKOUT.ORDER.APPROVED", "resource": {"id": payment.provider_ref}}
    ).encode()


# Each of these aims at the listener on 127.0.0.1 while naming a host the shop allows, or names the allowed
# host 127.0.0.1 with something else than https on its own port. None may open a connection.
SSRF_URLS = {
    "backslash before userinfo (the report)": "https://127.0.0.1:{port}\\@api.paypal.com/v1/notifications/certs/x",
    "userinfo naming PayPal": "https://api.paypal.com@127.0.0.1:{port}/v1/notifications/certs/x",
    "userinfo with a password": "https://api.paypal.com:443@127.0.0.1:{port}/certs/x",
    "encoded backslash": "https://127.0.0.1:{port}%5C@api.paypal.com/certs/x",
    "another port": "https://127.0.0.1:{port}/v1/notifications/certs/x",
    "another port, upper-case scheme": "HTTPS://127.0.0.1:{port}/certs/x",
    "plain http": "http://127.0.0.1:{port}/certs/x",
    "tab in the authority": "https://127.0.0.1:{port}\t@api.paypal.com/certs/x",
    "trailing dot": "https://127.0.0.1.:{port}/certs/x",
    "full-width digits": "https://\uff11\uff12\uff17.0.0.1:{port}/certs/x",
    "backslash as the path": "https://127.0.0.1:{port}\\certs\\x",
}


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(SSRF_URLS))
def test_a_certificate_url_never_opens_a_connection_outside_paypals_https_port(
    name, paypal_order, settings, listen, caplog
):
    # Given production rules (https only) and 127.0.0.1 among the allowed hosts, so that only the URL's tricks
    # stand between an attacker and the listening port
    settings.PAYPAL_CERT_ALLOW_HTTP = False
    settings.PAYPAL_CERT_HOSTS = [*PAYPAL_HOSTS, "127.0.0.1"]
    fake, order, payment = paypal_order
    listener = listen()
    before = database_state()

    # When one unauthenticated POST names a certificate URL that points at the listener
    with caplog.at_level(logging.INFO):
        response = post_paypal(fake, approval(payment), cert_url=SSRF_URLS[name].format(port=listener.port))

    # Then nothing connected to it, the webhook is refused with the one answer, and nothing changed
    assert listener.connections() == 0, name
    assert_refused(response)
    assert database_state() == before
    assert len(app_log_lines(caplog)) <= 1, app_log_lines(caplog)


LOOK_ALIKES = [
    "https://api.paypal.com./v1/notifications/certs/x",  # trailing dot: another name to the resolver
    "https://API.PAYPAL.COM./v1/notifications/certs/x",
    "https://api.paypal.com\u3002/v1/notifications/certs/x",  # ideographic full stop, IDNA maps it to "."
    "https://api.paypa\u217c.com/v1/notifications/certs/x",  # small roman numeral fifty, NFKC maps it to "l"
    "https://xn--api-paypal-8jb.com/certs/x",
    "https://api.paypal.com.attacker.example/certs/x",
    "https://attacker.example/api.paypal.com/certs/x",
    "https://attacker.example\\@api.paypal.com/certs/x",
    "https://api.paypal.com@attacker.example/certs/x",
    "https://api.paypal.com:8443/certs/x",
    "https://api.paypal.com:0443/certs/x",
    "https://api.paypal.com:443:80/certs/x",
    "https://[::1]/certs/x",
    "https://[::1/certs/x",
    "https://api.paypal.com:99999/certs/x",
    "//api.paypal.com/certs/x",
    "ftp://api.paypal.com/certs/x",
    "https://api.paypal.com/certs/x?next=http://127.0.0.1/",
    "https://api.paypal.com/certs/x\r\nHost: 127.0.0.1",
    " https://api.paypal.com/certs/x",
    "https://api.paypal.com/" + "a" * 5000,
]


@pytest.mark.django_db
def test_look_alike_paypal_hosts_are_refused_before_any_name_is_resolved(paypal_order, settings, lookups):
    # Given production rules and PayPal's own hosts only
    settings.PAYPAL_CERT_ALLOW_HTTP = False
    settings.PAYPAL_CERT_HOSTS = PAYPAL_HOSTS
    fake, order, payment = paypal_order
    before = database_state()

    # When webhooks name certificates at hosts that only look like PayPal's (or at PayPal on another port)
    bodies = set()
    for url in LOOK_ALIKES:
        lookups.clear()
        response = post_paypal(fake, approval(payment), cert_url=url)
        # Then each is refused with the same answer, and the shop did not even look the host up
        bodies.add(json.dumps(assert_refused(response), sort_keys=True))
        assert [host for host, _ in lookups if host not in ("127.0.0.1", "localhost")] == [], url
    assert len(bodies) == 1
    assert database_state() == before


REDIRECT = "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/certs/x.pem\r\nContent-Length: 0\r\n\r\n"
GARBAGE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


@pytest.mark.django_db
def test_every_failed_verification_gets_the_same_answer_so_the_endpoint_is_no_port_scanner(
    paypal_order, listen, monkeypatch
):
    # Given the suite's own certificate server (http on 127.0.0.1 is allowed for it), a port nobody listens on,
    # a service that never answers, one that answers nonsense and one that redirects elsewhere
    from cryptography.hazmat.primitives.asymmetric import rsa

    from payments.providers import paypal_webhooks

    monkeypatch.setattr(paypal_webhooks, "CERT_FETCH_TIMEOUT", 0.5, raising=False)
    fake, order, payment = paypal_order
    silent, nonsense, target = listen(None), listen(GARBAGE), listen()
    redirect = listen(REDIRECT.format(port=target.port).encode())
    body = approval(payment)
    attempts = {
        "connection refused": dict(cert_url=f"http://127.0.0.1:{closed_port()}/certs/x.pem"),
        "read timeout": dict(cert_url=f"http://127.0.0.1:{silent.port}/certs/x.pem"),
        "not a certificate": dict(cert_url=f"http://127.0.0.1:{nonsense.port}/certs/x.pem"),
        "a redirect": dict(cert_url=f"http://127.0.0.1:{redirect.port}/certs/x.pem"),
        "no such certificate": dict(cert_url=f"{fake.url}/certs/CERT-none.pem"),
        "host not allowed": dict(cert_url="http://198.51.100.9/certs/x.pem"),
        "signed by someone else": dict(private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    }
    before = database_state()

    # When a webhook names each of them
    answers = {name: post_paypal(fake, body, **how) for name, how in attempts.items()}

    # Then every answer is the same, byte for byte; the redirect was not followed; nothing changed
    for response in answers.values():
        assert_refused(response)
    assert len({(r.status_code, r.content) for r in answers.values()}) == 1, {
        name: r.content for name, r in answers.items()
    }
    assert target.connections() == 0
    assert database_state() == before


@pytest.mark.django_db
def test_a_certificate_is_fetched_once_per_url_however_the_url_is_spelled(paypal_order):
    # Given the fake's certificate URL, written two ways that name the same resource
    fake, order, payment = paypal_order
    spellings = [fake.cert_url, fake.cert_url.replace("http://", "HTTP://", 1)]

    # When two genuine webhooks name it
    responses = [post_paypal(fake, approval(payment, f"WH-CACHE-{i}"), cert_url=url) for i, url in enumerate(spellings)]

    # Then both are accepted, and the certificate was downloaded once
    assert [r.status_code for r in responses] == [200, 200], [r.content for r in responses]
    assert [path for _, path, _ in fake.requests_seen if path.startswith("/certs/")] == [f"/certs/{fake.cert_name}.pem"]


# --- Stripe: the signature's age, both ways ---------------------------------------------------------------------


@pytest.fixture
def frozen():
    with time_machine.travel(FROZEN, tick=False) as traveller:
        yield traveller


@pytest.fixture
def stripe_order(frozen, db, localstripe, make_order):
    """A pending order for one key with its PaymentIntent opened at localstripe, at a frozen moment."""
    product = ProductFactory(price_amount=2500)
    add_keys(product, 3)
    order = make_order((product, 1))
    return order, payment_start_for_order(order=order)


def post_stripe(body: bytes, *, timestamp: int | None = None):
    """Post `body` with a correct Stripe signature made at `timestamp` (default: the frozen now)."""
    timestamp = timestamp or int(FROZEN.timestamp())
    signed = f"{timestamp}.".encode() + body  # Stripe signs the raw bytes, which need not be UTF-8 here
    mac = hmac.new(settings.STRIPE_WEBHOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    header = f"t={timestamp},v1={mac}"
    return Client(raise_request_exception=False).post(
        STRIPE_WEBHOOK, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )


def succeeded(order: Order, payment: Payment, event_id: str = "evt_harden_1", **intent) -> dict:
    event = payment_intent_event(
        event_id=event_id, intent_id=payment.provider_ref, amount=order.total_amount, order_number=order.number
    )
    event["data"]["object"].update(intent)
    return event


@pytest.mark.parametrize(
    "offset",
    [timedelta(seconds=301), timedelta(hours=1), timedelta(days=1), timedelta(days=365), -timedelta(seconds=301)],
    ids=["+301s", "+1h", "+1d", "+1y", "-301s"],
)
def test_a_stripe_event_signed_outside_the_tolerance_either_way_is_refused(stripe_order, offset, caplog):
    # Given a genuine success for a pending payment, signed with the right secret at now + offset
    order, payment = stripe_order
    body = json.dumps(succeeded(order, payment)).encode()
    before = database_state()

    # When it arrives
    with caplog.at_level(logging.INFO):
        response = post_stripe(body, timestamp=int((FROZEN + offset).timestamp()))

    # Then it is refused and the order is still waiting for its payment
    assert_refused(response)
    assert database_state() == before
    assert len(app_log_lines(caplog)) <= 1, app_log_lines(caplog)


@pytest.mark.parametrize("offset", [timedelta(seconds=299), timedelta(0), -timedelta(seconds=299)])
def test_a_stripe_event_signed_within_the_tolerance_is_applied(
    stripe_order, offset, django_capture_on_commit_callbacks
):
    # The same event inside the tolerance is applied: the refusals above are about the time alone
    order, payment = stripe_order
    body = json.dumps(succeeded(order, payment)).encode()

    with django_capture_on_commit_callbacks(execute=True):
        response = post_stripe(body, timestamp=int((FROZEN + offset).timestamp()))

    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == "applied"
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED


# --- Signed bodies the shop cannot read -------------------------------------------------------------------------


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _stripe_bodies(order: Order, payment: Payment) -> dict[str, bytes]:
    def event(**intent) -> bytes:
        return json.dumps(succeeded(order, payment, **intent)).encode()

    def raw(event_dict: dict, marker: str, literal: str) -> bytes:
        return json.dumps(event_dict).replace(f'"{marker}"', literal).encode()

    def other(event_type: str, obj: dict, event_id: str = "evt_harden_other") -> bytes:
        return json.dumps({"id": event_id, "object": "event", "type": event_type, "data": {"object": obj}}).encode()

    base = succeeded(order, payment)
    pi = payment.provider_ref
    return {
        "array": b"[]",
        "array of the event": json.dumps([base]).encode(),
        "string": b'"payment_intent.succeeded"',
        "number": b"42",
        "null": b"null",
        "true": b"true",
        "amount 'NaN'": event(amount="NaN", amount_received="NaN"),
        "amount NaN": raw(succeeded(order, payment, amount_received="@@"), "@@", "NaN"),
        "amount Infinity": raw(succeeded(order, payment, amount_received="@@"), "@@", "Infinity"),
        "amount -Infinity": raw(succeeded(order, payment, amount_received="@@"), "@@", "-Infinity"),
        "amount 1e400": raw(succeeded(order, payment, amount_received="@@"), "@@", "1e400"),
        "amount 10**30": event(amount_received=10**30),
        "amount 10**12": event(amount_received=10**12),
        "amount of 5000 digits": raw(succeeded(order, payment, amount_received="@@"), "@@", "9" * 5000),
        "amount negative": event(amount_received=-1),
        "amount fraction": event(amount_received=2500.5),
        "amount true": event(amount_received=True),
        "amount as decimal text": event(amount_received="25.00"),
        "amount as a word": event(amount="lots"),
        "amount a list": event(amount_received=[2500]),
        "metadata a string": event(metadata="order"),
        "currency a number": event(currency=840),
        "intent id an object": event(id={"id": pi}),
        "created a word": event(created="yesterday"),
        "created beyond year 9999": event(created=10**15),
        "latest_charge fee NaN": event(latest_charge={"id": "ch_1", "balance_transaction": {"fee": "NaN"}}),
        "latest_charge id an object": event(latest_charge={"id": {"x": 1}}),
        "data a list": json.dumps({**base, "data": [base["data"]]}).encode(),
        "data a string": json.dumps({**base, "data": "object"}).encode(),
        "event id too long": json.dumps({**base, "id": "evt_" + "x" * 300}).encode(),
        "event id with NUL": json.dumps({**base, "id": "evt_\u0000"}).encode(),
        "failure with last_payment_error a string": json.dumps(
            {
                **base,
                "type": "payment_intent.payment_failed",
                "data": {
                    "object": {
                        **base["data"]["object"],
                        "status": "requires_payment_method",
                        "last_payment_error": "declined",
                    }
                },
            }
        ).encode(),
        "refund list a string": other("charge.refunded", {"object": "charge", "id": "ch_1", "refunds": "all"}),
        "refund amount NaN": other(
            "charge.refunded",
            {
                "object": "charge",
                "id": "ch_1",
                "payment_intent": pi,
                "refunds": {"data": [{"id": "re_1", "amount": "NaN"}]},
            },
        ),
        "refund amount 10**12": other(
            "refund.created", {"object": "refund", "id": "re_1", "payment_intent": pi, "amount": 10**12}
        ),
        "refund amount huge": other("refund.updated", {"object": "refund", "id": "re_1", "amount": 10**40}),
        "dispute amount NaN": other(
            "charge.dispute.created", {"object": "dispute", "id": "dp_1", "payment_intent": pi, "amount": "NaN"}
        ),
        "dispute due_by a word": other(
            "charge.dispute.created",
            {
                "object": "dispute",
                "id": "dp_1",
                "payment_intent": pi,
                "amount": 2500,
                "evidence_details": {"due_by": "soon"},
            },
        ),
        "dispute evidence a string": other(
            "charge.dispute.created",
            {"object": "dispute", "id": "dp_1", "payment_intent": pi, "amount": 2500, "evidence_details": "x"},
        ),
        "dispute id too long": other(
            "charge.dispute.created", {"object": "dispute", "id": "dp_" + "9" * 300, "payment_intent": pi, "amount": 1}
        ),
        "review on a number": other("review.opened", {"object": "review", "id": "prv_1", "payment_intent": 5}),
        f"nested {DEEP} deep": _nested(DEEP).encode(),
        f"event nested {DEEP} deep": json.dumps({**base, "extra": "@@"}).replace('"@@"', _nested(DEEP)).encode(),
        "event nested 200 deep": json.dumps({**base, "extra": "@@"}).replace('"@@"', _nested(200)).encode(),
        "not UTF-8": json.dumps(base).encode().replace(b"payment_intent.succeeded", b"payment_intent.\xff"),
    }


def test_signed_stripe_bodies_the_shop_cannot_read_are_refused_and_change_nothing(stripe_order, caplog):
    # Given a pending payment, and bodies correctly signed by Stripe's secret that are not events the shop can read
    order, payment = stripe_order
    before = database_state()
    answers, logged = {}, {}

    # When each arrives
    for name, body in _stripe_bodies(order, payment).items():
        caplog.clear()
        with caplog.at_level(logging.INFO):
            answers[name] = post_stripe(body)
        logged[name] = app_log_lines(caplog)

    # Then each is a clear 400, not a server error, logged once at most
    assert {name: r.status_code for name, r in answers.items() if r.status_code != 400} == {}
    assert {name: lines for name, lines in logged.items() if len(lines) > 1} == {}
    for response in answers.values():
        assert_refused(response)
    # And nothing was recorded: no event, the payment still open, the order still waiting
    assert database_state() == before
    payment.refresh_from_db()
    assert payment.status != PaymentStatus.SUCCEEDED
    assert not WebhookEvent.objects.exists()


def _paypal_bodies(payment: Payment) -> dict[str, bytes]:
    def event(event_type: str, resource, event_id: str = "WH-HARDEN-READ") -> bytes:
        return json.dumps({"id": event_id, "event_type": event_type, "resource": resource}).encode()

    def capture(**fields) -> dict:
        resource = {
            "id": "CAPHARDEN1",
            "status": "COMPLETED",
            "amount": {"currency_code": "USD", "value": "25.00"},
            "supplementary_data": {"related_ids": {"order_id": payment.provider_ref}},
        }
        return {**resource, **fields}

    completed = "PAYMENT.CAPTURE.COMPLETED"
    return {
        "array": b"[]",
        "string": b'"PAYMENT.CAPTURE.COMPLETED"',
        "number": b"7",
        "null": b"null",
        "value NaN": event(completed, capture(amount={"currency_code": "USD", "value": "@@"})).replace(b'"@@"', b"NaN"),
        "value 'NaN'": event(completed, capture(amount={"currency_code": "USD", "value": "NaN"})),
        "value Infinity": event(completed, capture(amount={"currency_code": "USD", "value": "Infinity"})),
        "value 30 million dollars": event(completed, capture(amount={"currency_code": "USD", "value": "30000000.00"})),
        "value 10**30": event(completed, capture(amount={"currency_code": "USD", "value": 10**30})),
        "currency a number": event(completed, capture(amount={"currency_code": 840, "value": "25.00"})),
        "amount a string": event(completed, capture(amount="25.00 USD")),
        "supplementary_data a string": event(completed, capture(supplementary_data="order")),
        "capture id too long": event(completed, capture(id="C" * 300)),
        "capture id a number": event(completed, capture(id=12345)),
        "resource a list": event(completed, [capture()]),
        "event id too long": event(completed, capture(), event_id="WH-" + "1" * 300),
        "event id with NUL": event(completed, capture(), event_id="WH-\u0000"),
        "refund without links": event("PAYMENT.CAPTURE.REFUNDED", {"id": "R1", "links": "up"}),
        "refund amount 10**30": event(
            "PAYMENT.CAPTURE.REFUNDED",
            {
                "id": "R1",
                "amount": {"currency_code": "USD", "value": "1" + "0" * 30},
                "links": [{"rel": "up", "href": "https://api.paypal.com/v2/payments/captures/CAPHARDEN1"}],
            },
        ),
        "reversal status_details a string": event(
            "PAYMENT.CAPTURE.REVERSED", {"id": "CAPHARDEN1", "status_details": "reversed"}
        ),
        "dispute transactions of strings": event(
            "CUSTOMER.DISPUTE.CREATED", {"dispute_id": "PP-D-1", "disputed_transactions": ["CAPHARDEN1"]}
        ),
        "dispute without its id": event(
            "CUSTOMER.DISPUTE.CREATED", {"disputed_transactions": [{"seller_transaction_id": "CAPHARDEN1"}]}
        ),
        "dispute outcome a string": event(
            "CUSTOMER.DISPUTE.RESOLVED",
            {
                "dispute_id": "PP-D-1",
                "disputed_transactions": [{"seller_transaction_id": "CAPHARDEN1"}],
                "dispute_outcome": "won",
            },
        ),
        "approval of an object": event("CHECKOUT.ORDER.APPROVED", {"id": {"id": payment.provider_ref}}),
        f"nested {DEEP} deep": _nested(DEEP).encode(),
        f"event nested {DEEP} deep": event(completed, capture(note="@@")).replace(b'"@@"', _nested(DEEP).encode()),
        "event nested 200 deep": event(completed, capture(note="@@")).replace(b'"@@"', _nested(200).encode()),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("verify", ["offline", "api"])
def test_signed_paypal_bodies_the_shop_cannot_read_are_refused_and_change_nothing(
    paypal_order, settings, verify, caplog
):
    # Given a pending PayPal payment, verified offline or by PayPal's API, and bodies the fake signs correctly
    settings.PAYPAL_WEBHOOK_VERIFY = verify
    fake, order, payment = paypal_order
    before = database_state()
    answers, logged = {}, {}

    # When each arrives
    for name, body in _paypal_bodies(payment).items():
        caplog.clear()
        with caplog.at_level(logging.INFO):
            answers[name] = post_paypal(fake, body)
        logged[name] = app_log_lines(caplog)

    # Then each is a clear 400, not a server error, logged once at most
    assert {name: r.status_code for name, r in answers.items() if r.status_code != 400} == {}
    assert {name: lines for name, lines in logged.items() if len(lines) > 1} == {}
    for response in answers.values():
        assert_refused(response)
    # And nothing was recorded and nothing was captured
    assert database_state() == before
    assert fake.captures == {}
    assert not WebhookEvent.objects.exists()
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
