"""A small, stateful fake of PayPal's REST API for tests and offline demos (stdlib + cryptography + requests only).

The official SDK (``paypalserversdk``, Orders v2) works against it unmodified once its Configuration answers
``get_base_uri()`` with ``fake.url``. State lives in memory; ``fake.orders``, ``fake.captures`` and ``fake.refunds``
hold PayPal-shaped JSON dicts for assertions.

Faked:
- ``POST /v1/oauth2/token`` (Basic client id/secret, client_credentials); a Bearer token on every other API path.
- Orders v2: create (intent CAPTURE; amount, breakdown and item checks), get, capture. Like PayPal, an order created
  with ``payment_source.paypal`` is ``PAYER_ACTION_REQUIRED`` with a ``payer-action`` link, one created with the
  legacy ``application_context`` (or neither) is ``CREATED`` with an ``approve`` link; both links open the buyer page.
  Create and refund answer minimally (id, status, links) unless sent ``Prefer: return=representation``.
- Buyer pages ``/checkoutnow?token=ID`` (approve -> 303 to return_url?token&PayerID) and ``/checkoutnow/cancel``.
- Payments v2: get capture, refund (partial or full, PayPal fee refunded in proportion), get refund.
- ``PayPal-Request-Id`` on create, capture and refund: the same id and body gives the first result, never a second.
- ``GET /v1/reporting/transactions``: captures (T0006) and refunds (T1107), at once rather than hours later.
- Webhooks signed like PayPal's (SHA256withRSA over ``id|time|webhook_id|crc32(body)``, a throwaway CA and a leaf
  for messageverificationcerts.paypal.com at ``GET /certs/<name>.pem``); ``POST /v1/notifications/verify-webhook-
  signature``.
- Controls: approve, capture outcomes (PENDING, DECLINED, INSTRUMENT_DECLINED), reversals, disputes, any event, held,
  dropped and redelivered webhooks, HTTP faults (status, timeout, reset, commit-then-timeout), ``stop()``.

Not faked: intent AUTHORIZE, PATCH/confirm/track of orders, vault, subscriptions, cards, the disputes and webhook
management APIs, PayPal's automatic redelivery of failed webhooks, token expiry, buyer login, currency conversion.
The certificate is not PayPal's: a verifier must trust ``fake.ca_pem`` and the host of ``fake.cert_url``.
A refund carries ``custom_id``/``invoice_id`` only if the refund request set them (follow its ``up`` link).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import functools
import hashlib
import html
import json
import math
import queue
import re
import secrets
import socket
import string
import struct
import threading
import time
import traceback
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ZERO_DECIMAL_CURRENCIES = {"HUF", "JPY", "TWD"}
CURRENCIES = ZERO_DECIMAL_CURRENCIES | {"AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "ILS"}
CURRENCIES |= {"MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "SEK", "SGD", "THB", "USD"}
MERCHANT = {"email_address": "merchant@example.com", "merchant_id": "FAKEMERCHANT1"}
SIGNING_HOST = "messageverificationcerts.paypal.com"
_NAMES = {  # HTTP status -> PayPal error name and message
    400: ("INVALID_REQUEST", "Request is not well-formed, syntactically incorrect, or violates schema."),
    401: ("AUTHENTICATION_FAILURE", "Authentication failed due to invalid authentication credentials."),
    404: ("RESOURCE_NOT_FOUND", "The specified resource does not exist."),
    422: ("UNPROCESSABLE_ENTITY", "The requested action could not be performed, or failed business validation."),
    429: ("RATE_LIMIT_REACHED", "Too many requests. Blocked due to rate limiting."),
    500: ("INTERNAL_SERVER_ERROR", "An internal server error occurred."),
    503: ("SERVICE_UNAVAILABLE", "Service Unavailable."),
}
_ISSUES = {  # PayPal issue -> HTTP status and description
    "MALFORMED_REQUEST_JSON": (400, "The request JSON is not well formed."),
    "MISSING_REQUIRED_PARAMETER": (400, "A required field / parameter is missing."),
    "INVALID_PARAMETER_VALUE": (400, "The value of a field is invalid."),
    "INVALID_PARAMETER_SYNTAX": (400, "The value of a field does not conform to the expected format."),
    "INVALID_RESOURCE_ID": (404, "Specified resource ID does not exist. Please check the resource ID and try again."),
    "CURRENCY_NOT_SUPPORTED": (422, "Currency code is unsupported."),
    "DECIMALS_NOT_SUPPORTED": (422, "Currency does not support decimals."),
    "DECIMAL_PRECISION": (422, "If the currency supports decimals, only two decimal place precision is supported."),
    "CANNOT_BE_ZERO_OR_NEGATIVE": (422, "Must be greater than zero."),
    "AMOUNT_MISMATCH": (422, "Should equal item_total + tax_total + shipping + handling + insurance - discounts."),
    "ITEM_TOTAL_REQUIRED": (422, "If item details are specified, amount.breakdown.item_total is required."),
    "ITEM_TOTAL_MISMATCH": (422, "Should equal sum of (unit_amount * quantity) across all items."),
    "DUPLICATE_REQUEST_ID": (422, "The value of PayPal-Request-Id header has already been used."),
    "ORDER_NOT_APPROVED": (422, "Payer has not yet approved the Order for payment."),
    "ORDER_ALREADY_CAPTURED": (
        422,
        "Order already captured. If 'intent=CAPTURE' only one capture per order is allowed.",
    ),
    "INSTRUMENT_DECLINED": (422, "The instrument presented was either declined by the processor or bank."),
    "DUPLICATE_INVOICE_ID": (422, "Duplicate Invoice ID detected; the account requires a unique Invoice Id."),
    "CAPTURE_FULLY_REFUNDED": (422, "The capture has already been fully refunded."),
    "PENDING_CAPTURE": (422, "Cannot initiate a refund as the capture is pending."),
    "REFUND_NOT_ALLOWED": (422, "Refund cannot be issued for this capture."),
    "REFUND_NOT_PERMITTED_DUE_TO_CHARGEBACK": (422, "Refunds not allowed on this capture due to a chargeback."),
    "REFUND_CAPTURE_CURRENCY_MISMATCH": (422, "Refund must be in the same currency as the capture."),
    "REFUND_AMOUNT_EXCEEDED": (422, "The refund amount must be at most the capture amount not yet refunded."),
}
_REFUSALS = {
    "REFUNDED": "CAPTURE_FULLY_REFUNDED",
    "PENDING": "PENDING_CAPTURE",
    "DECLINED": "REFUND_NOT_ALLOWED",
    "REVERSED": "REFUND_NOT_PERMITTED_DUE_TO_CHARGEBACK",
}
_CAPTURE_EVENTS = {
    "COMPLETED": "PAYMENT.CAPTURE.COMPLETED",
    "PENDING": "PAYMENT.CAPTURE.PENDING",
    "DECLINED": "PAYMENT.CAPTURE.DENIED",
}
_VALUE_RE = re.compile(r"-?([0-9]+|[0-9]*\.[0-9]+)")
Response = tuple[int, dict[str, str], bytes]


class PayPalError(Exception):
    """An error the fake answers with PayPal's body: name, message, debug_id, details[{issue, description}]."""

    def __init__(self, issue: str, description: str | None = None, *, field: str | None = None, links=(), status=0):
        self.status, default = (status, "") if status else _ISSUES[issue]
        self.issue, self.description, self.field, self.links = issue, description or default, field, list(links)
        super().__init__(f"{self.status} {issue}: {self.description}")

    def body(self) -> dict:
        detail = {"issue": self.issue, "description": self.description}
        detail |= {"field": self.field, "location": "body"} if self.field else {}
        name, message = _NAMES.get(self.status, _NAMES[500])
        info = _link(f"https://developer.paypal.com/docs/api/orders/v2/#error-{self.issue}", "information_link")
        return {
            "name": name,
            "message": message,
            "debug_id": _debug_id(),
            "details": [detail],
            "links": [*self.links, info],
        }


def _id(length: int = 17) -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(length))


def _debug_id() -> str:
    return secrets.token_hex(7)[:13]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _link(href: str, rel: str, method: str = "GET") -> dict:
    return {"href": href, "rel": rel, "method": method}


def _quantize(currency: str, amount: Decimal) -> Decimal:
    exponent = Decimal(1) if currency in ZERO_DECIMAL_CURRENCIES else Decimal("0.01")
    return amount.quantize(exponent, rounding=ROUND_HALF_UP)


def _money(currency: str, amount: Decimal) -> dict:
    return {"currency_code": currency, "value": str(_quantize(currency, amount))}


def _parse_money(money: Any, field: str, *, allow_zero: bool = False) -> tuple[str, Decimal]:
    """Check a PayPal money object as PayPal does and return (currency, amount)."""
    if not isinstance(money, dict) or not money.get("currency_code") or money.get("value") in (None, ""):
        raise PayPalError("MISSING_REQUIRED_PARAMETER", field=field)
    currency, value = money["currency_code"], money["value"]
    if currency not in CURRENCIES:
        raise PayPalError("CURRENCY_NOT_SUPPORTED", field=f"{field}/currency_code")
    if not isinstance(value, str) or not _VALUE_RE.fullmatch(value):
        raise PayPalError("INVALID_PARAMETER_SYNTAX", field=f"{field}/value")
    decimals = len(value.partition(".")[2])
    if decimals and currency in ZERO_DECIMAL_CURRENCIES:
        raise PayPalError("DECIMALS_NOT_SUPPORTED", field=f"{field}/value")
    if decimals > 2:
        raise PayPalError("DECIMAL_PRECISION", field=f"{field}/value")
    amount = Decimal(value)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise PayPalError("CANNOT_BE_ZERO_OR_NEGATIVE", field=f"{field}/value")
    return currency, amount


def _check_breakdown(unit: dict, field: str, total: Decimal) -> None:
    """PayPal's AMOUNT_MISMATCH and ITEM_TOTAL_* checks of amount.breakdown against the total and the items."""
    breakdown, items = unit["amount"].get("breakdown") or {}, unit.get("items") or []
    parts = {k: _parse_money(v, f"{field}/amount/breakdown/{k}", allow_zero=True)[1] for k, v in breakdown.items()}
    signs = {"shipping_discount": -1, "discount": -1}
    if breakdown and sum(signs.get(k, 1) * v for k, v in parts.items()) != total:
        raise PayPalError("AMOUNT_MISMATCH", field=f"{field}/amount/value")
    if items and "item_total" not in parts:
        raise PayPalError("ITEM_TOTAL_REQUIRED", field=f"{field}/amount/breakdown/item_total")
    prices = [_parse_money(it.get("unit_amount"), f"{field}/items/unit_amount", allow_zero=True)[1] for it in items]
    if (
        items
        and sum(p * int(it.get("quantity", 1)) for p, it in zip(prices, items, strict=True)) != parts["item_total"]
    ):
        raise PayPalError("ITEM_TOTAL_MISMATCH", field=f"{field}/amount/breakdown/item_total")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fake PayPal (tests only)"),
        ]
    )


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        ("content_commitment", "data_encipherment", "key_agreement", "encipher_only", "decipher_only"), False
    )
    leaf = not signs_certificates
    return x509.KeyUsage(
        digital_signature=leaf, key_encipherment=leaf, key_cert_sign=not leaf, crl_sign=not leaf, **flags
    )


@functools.cache
def _pki() -> tuple[rsa.RSAPrivateKey, x509.Certificate, x509.Certificate]:
    """A throwaway CA and the leaf that signs webhooks, made once per process: key generation is the slow part."""
    now = datetime.now(UTC)
    ca_key, leaf_key = rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())

    def builder(subject: x509.Name, key: rsa.RSAPrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(_name("Fake PayPal Test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
        )

    ca_cert = (
        builder(_name("Fake PayPal Test CA"), ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_cert = (
        builder(_name(SIGNING_HOST), leaf_key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SIGNING_HOST)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return leaf_key, leaf_cert, ca_cert


class _Request:
    def __init__(self, method: str, path: str, query: dict[str, str], headers: Any, raw: bytes):
        self.method, self.path, self.query, self.headers, self.raw = method, path, query, headers, raw
        self.representation = "return=representation" in (headers.get("Prefer") or "")

    def json(self) -> dict:
        try:
            return (json.loads(self.raw) if self.raw.strip() else None) or {}
        except ValueError:
            raise PayPalError("MALFORMED_REQUEST_JSON") from None


def _json(status: int, body: Any) -> Response:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _html(status: int, title: str, body: str = "") -> Response:
    page = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Fake PayPal</title></head><body>'
    return status, {"Content-Type": "text/html; charset=utf-8"}, f"{page}<h1>{title}</h1>{body}</body></html>".encode()


def _redirect(url: str, **params: str) -> Response:
    return 303, {"Location": url + ("&" if "?" in url else "?") + urlencode(params)}, b""


class FakePayPal:
    """The fake server and its Python control API. Start it with ``paypal_fake_start()``; times are UTC."""

    def __init__(self, *, client_id="fake-client", client_secret="fake-secret", webhook_id="WH-FAKE"):
        self.client_id, self.client_secret, self.webhook_id = client_id, client_secret, webhook_id
        self.fee_percent, self.fee_fixed = Decimal("3.49"), Decimal("0.49")  # PayPal fee: percent of gross + fixed
        self.webhook_delay = 0.2  # seconds from an action to its webhook
        self.timeout_seconds = 5.0  # how long "timeout" faults stall: longer than the client's timeout
        self.block_duplicate_invoice_id = True  # PayPal's default account setting (DUPLICATE_INVOICE_ID on capture)
        self.url = ""
        self._leaf_key, leaf_cert, ca_cert = _pki()
        self.ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        self.cert_chain_pem = leaf_cert.public_bytes(serialization.Encoding.PEM) + self.ca_pem
        fingerprint = leaf_cert.fingerprint(hashes.SHA256()).hex()
        self.cert_name = f"CERT-{fingerprint[:8]}-{fingerprint[8:16]}-{fingerprint[16:24]}"
        self._lock = threading.RLock()
        self._tokens: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._sockets: set[socket.socket] = set()
        self._outbox: queue.Queue = queue.Queue()
        self.reset()

    # ---- lifecycle and state -----------------------------------------------------------------------------------------
    @property
    def cert_url(self) -> str:
        return f"{self.url}/certs/{self.cert_name}.pem"

    def start(self, port: int = 0) -> FakePayPal:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        serve = functools.partial(self._server.serve_forever, poll_interval=0.05)  # stop() waits one poll at most
        threading.Thread(target=serve, name="paypal-fake", daemon=True).start()
        threading.Thread(target=self._deliver_forever, name="paypal-fake-webhooks", daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the port (new connections are refused) and cut the open keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._outbox.put(None)

    def __enter__(self) -> FakePayPal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget orders, payments, events, webhooks, faults and requests; credentials, tokens and certificates stay."""
        with contextlib.suppress(queue.Empty):  # undelivered events of the previous test go too
            while self._outbox.queue and self._outbox.queue[0] is not None:
                self._outbox.get_nowait()
        with self._lock:
            self.orders: dict[str, dict] = {}
            self.captures: dict[str, dict] = {}
            self.refunds: dict[str, dict] = {}
            self.events: list[dict] = []  # every event emitted, delivered or not
            self.delivered: list[tuple[dict, int | None]] = []  # (event, receiver's status or None if unreachable)
            self.dropped: list[dict] = []
            self.requests_seen: list[tuple[str, str, str | None]] = []  # (method, path, PayPal-Request-Id)
            self.webhooks: list[tuple[str, str, set[str] | None]] = []  # (url, webhook id, event types or None)
            self._meta: dict[str, dict] = {}  # order id -> return/cancel url, payer_action, capture ids per unit
            self._refunds_of: dict[str, list[str]] = {}  # capture id -> refund ids
            self._idempotency: dict[tuple[str, str], tuple[str, Callable[[], dict]]] = {}
            self._signed: dict[str, bytes] = {}  # transmission id -> body, for verify-webhook-signature
            self._faults: list[list] = []
            self._held: list | None = None
            self._dropping = False
            self._capture_outcomes: list[str] = []

    # ---- buyer and payment lifecycle ---------------------------------------------------------------------------------
    def approve(self, order_id: str, *, country: str = "US", email: str = "buyer@example.com") -> dict:
        """What the buyer does on PayPal's page: the order becomes APPROVED with a payer; a webhook follows."""
        with self._lock:
            order = self.orders[order_id]
            if order["status"] not in ("CREATED", "PAYER_ACTION_REQUIRED", "APPROVED"):
                raise ValueError(f"order {order_id} is {order['status']} and can no longer be approved")
            payer_id = base64.b32encode(hashlib.sha256(email.encode()).digest()).decode()[:13]  # stable per buyer
            who = {"name": {"given_name": "Test", "surname": "Buyer"}, "email_address": email}
            order["payer"] = who | {"payer_id": payer_id, "address": {"country_code": country}}
            wallet = who | {"account_id": payer_id, "account_status": "VERIFIED", "address": {"country_code": country}}
            order["payment_source"] = {"paypal": wallet}
            order["status"], order["update_time"] = "APPROVED", _now()
            view = self._order_view(order_id)
            self.send_event("CHECKOUT.ORDER.APPROVED", view)
            return view

    def set_capture_outcome(self, *outcomes: str) -> None:
        """Outcomes of the next captures, one each: COMPLETED, PENDING, DECLINED or INSTRUMENT_DECLINED (a 422)."""
        self._capture_outcomes.extend(outcomes)

    def settle_capture(self, capture_id: str, status: str = "COMPLETED") -> dict:
        """Resolve a PENDING capture: COMPLETED (PAYMENT.CAPTURE.COMPLETED) or DECLINED (PAYMENT.CAPTURE.DENIED)."""
        with self._lock:
            capture = self.captures[capture_id]
            capture.pop("status_details", None)
            capture["status"], capture["update_time"] = status, _now()
            if status == "COMPLETED":
                capture["seller_receivable_breakdown"] = self._breakdown(capture["amount"])
            self.send_event(_CAPTURE_EVENTS[status], capture)
            return capture

    def reverse_capture(self, capture_id: str) -> dict:
        """A chargeback took the money back: the capture becomes REVERSED and PAYMENT.CAPTURE.REVERSED is sent."""
        with self._lock:
            capture = self.captures[capture_id]
            capture["status"], capture["update_time"] = "REVERSED", _now()
            self.send_event("PAYMENT.CAPTURE.REVERSED", capture)
            return capture

    def open_dispute(self, capture_id: str, *, reason: str = "MERCHANDISE_OR_SERVICE_NOT_RECEIVED") -> dict:
        """Send CUSTOMER.DISPUTE.CREATED for a capture; return the dispute resource."""
        capture, now = self.captures[capture_id], _now()
        dispute_id = "PP-D-" + "".join(secrets.choice(string.digits) for _ in range(5))
        transaction = {
            "seller_transaction_id": capture_id,
            "buyer_transaction_id": _id(),
            "create_time": capture["create_time"],
            "transaction_status": "COMPLETED",
            "gross_amount": capture["amount"],
            "invoice_number": capture.get("invoice_id"),
            "custom": capture.get("custom_id"),
            "seller": {"merchant_id": MERCHANT["merchant_id"]},
        }
        dispute = {
            "dispute_id": dispute_id,
            "create_time": now,
            "update_time": now,
            "disputed_transactions": [transaction],
            "reason": reason,
            "status": "OPEN",
            "dispute_amount": capture["amount"],
            "dispute_life_cycle_stage": "INQUIRY",
            "dispute_channel": "INTERNAL",
            "links": [_link(f"{self.url}/v1/customer/disputes/{dispute_id}", "self")],
        }
        self.send_event("CUSTOMER.DISPUTE.CREATED", dispute)
        return dispute

    # ---- webhooks ----------------------------------------------------------------------------------------------------
    def register_webhook(self, url: str, *, webhook_id: str | None = None, event_types: list[str] | None = None):
        """Deliver events to url, signed for webhook_id (default: the fake's); event_types None means all of them."""
        self.webhooks.append((url, webhook_id or self.webhook_id, set(event_types) if event_types else None))

    def hold_webhooks(self) -> None:
        """Queue events instead of sending them, until release_webhooks()."""
        with self._lock:
            self._held = [] if self._held is None else self._held

    def release_webhooks(self) -> None:
        """Send the held events in the order they happened, and stop holding."""
        with self._lock:
            held, self._held = self._held or [], None
            for event, raw in held:
                self._outbox.put((time.monotonic(), event, raw))

    def drop_webhooks(self, drop: bool = True) -> None:
        """Lose events on purpose (they go to ``dropped``), as when PayPal's delivery never arrives."""
        self._dropping = drop

    def send_event(self, event_type: str, resource: dict, *, redeliver_id: str | None = None) -> dict:
        """Emit any event, e.g. CUSTOMER.DISPUTE.CREATED; redeliver_id reuses an event id as PayPal's resends do."""
        event_id = redeliver_id or f"WH-{_id()}-{_id()}"
        kind = {"CHECKOUT.ORDER": "checkout-order", "CUSTOMER.DISPUTE": "dispute"}.get(event_type.rsplit(".", 1)[0])
        kind = kind or ("refund" if event_type == "PAYMENT.CAPTURE.REFUNDED" else "capture")
        href = f"{self.url}/v1/notifications/webhooks-events/{event_id}"
        event = {
            "id": event_id,
            "event_version": "1.0",
            "create_time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "resource_type": kind,
            "resource_version": "1.0" if kind == "dispute" else "2.0",
            "event_type": event_type,
            "summary": f"{event_type} (fake PayPal)",
            "resource": copy.deepcopy(resource),
            "links": [_link(href, "self"), _link(f"{href}/resend", "resend", "POST")],
        }
        self._emit(event)
        return event

    def redeliver(self, event_id: str) -> None:
        """Send an earlier event again, byte for byte, with new transmission headers."""
        self._emit(next(event for event in self.events if event["id"] == event_id))

    def wait_delivered(self, count: int = 1, timeout: float = 5.0) -> list[tuple[dict, int | None]]:
        """Block until at least count deliveries were attempted; return ``delivered``."""
        deadline = time.monotonic() + timeout
        while len(self.delivered) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.delivered)} of {count} webhooks delivered after {timeout} s")
            time.sleep(0.01)
        return self.delivered

    def signed_headers(self, body: bytes, *, webhook_id=None, private_key=None, cert_url=None) -> dict[str, str]:
        """PayPal's webhook headers for body; another private_key or cert_url forges them."""
        transmission_id, transmission_time = str(uuid.uuid4()), _now()
        message = f"{transmission_id}|{transmission_time}|{webhook_id or self.webhook_id}|{zlib.crc32(body)}"
        signature = (private_key or self._leaf_key).sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
        self._signed[transmission_id] = body
        return {
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": transmission_time,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
            "PAYPAL-CERT-URL": cert_url or self.cert_url,
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            "Content-Type": "application/json",
            "User-Agent": "PayPal/AUHD-214.0-58254009",
        }

    def _emit(self, event: dict) -> None:
        raw = json.dumps(event).encode()
        with self._lock:
            self.events.append(event)
            if self._dropping:
                self.dropped.append(event)
            elif self._held is not None:
                self._held.append((event, raw))
            else:
                self._outbox.put((time.monotonic() + self.webhook_delay, event, raw))

    def _deliver_forever(self) -> None:
        """A single worker, so events arrive in the order they happened."""
        while (item := self._outbox.get()) is not None:
            due, event, raw = item
            time.sleep(max(0.0, due - time.monotonic()))
            for url, webhook_id, types in list(self.webhooks):
                if types is None or event["event_type"] in types:
                    headers = self.signed_headers(raw, webhook_id=webhook_id)
                    try:
                        self.delivered.append(
                            (event, requests.post(url, data=raw, headers=headers, timeout=5).status_code)
                        )
                    except requests.RequestException:
                        self.delivered.append((event, None))

    # ---- fault injection ---------------------------------------------------------------------------------------------
    def fail(self, path_prefix: str, mode: int | str, times: int = 1, *, seconds: float | None = None) -> None:
        """Make the next `times` requests whose path starts with path_prefix fail.

        mode: an HTTP status (500, 503, 429...) answered with PayPal's error body; "timeout" (stall `seconds`, then
        close unanswered; nothing happens); "reset" (close the connection at once; nothing happens);
        "commit_then_timeout" (the action IS done, then no answer: what a PayPal-Request-Id retry is for).
        """
        if not isinstance(mode, int) and mode not in ("timeout", "reset", "commit_then_timeout"):
            raise ValueError(f"unknown fault mode {mode!r}")
        with self._lock:
            self._faults.append([path_prefix, mode, times, self.timeout_seconds if seconds is None else seconds])

    def _take_fault(self, path: str) -> tuple[int | str | None, float]:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault[0]) and fault[2] > 0:
                    fault[2] -= 1
                    return fault[1], fault[3]
        return None, 0.0

    # ---- HTTP plumbing -----------------------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        req = _Request(handler.command, split.path, dict(parse_qsl(split.query)), handler.headers, raw)
        self.requests_seen.append((req.method, req.path, req.headers.get("PayPal-Request-Id")))
        mode, seconds = self._take_fault(req.path)
        if mode == "reset":  # linger 0: closing sends a TCP RST
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if isinstance(mode, int):
            injected = PayPalError(_NAMES.get(mode, _NAMES[500])[0], "Injected by the fake.", status=mode)
            status, headers, body = _json(mode, injected.body())
        elif mode in (None, "commit_then_timeout"):
            status, headers, body = self._dispatch(req)
        if mode in ("timeout", "commit_then_timeout"):
            time.sleep(seconds)
        if mode in ("reset", "timeout", "commit_then_timeout"):
            handler.close_connection = True
            return
        try:
            handler.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body)), "Paypal-Debug-Id": _debug_id()}.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:  # the client gave up
            handler.close_connection = True

    def _dispatch(self, req: _Request) -> Response:
        try:
            for method, pattern, name, needs_token in _ROUTES:
                match = re.fullmatch(pattern, req.path)
                if match and method == req.method:
                    if needs_token and (req.headers.get("Authorization") or "")[len("Bearer ") :] not in self._tokens:
                        error, message = _NAMES[401]
                        return _json(401, {"name": error, "message": message, "debug_id": _debug_id(), "details": []})
                    with self._lock:
                        return getattr(self, name)(req, **match.groupdict())
            raise PayPalError("INVALID_RESOURCE_ID", f"The fake does not implement {req.method} {req.path}.")
        except PayPalError as error:
            return _json(error.status, error.body())
        except Exception:  # a bug in the fake: answer like PayPal's 500 and show it
            traceback.print_exc()
            return _json(500, PayPalError("INTERNAL_SERVER_ERROR", "The fake crashed.", status=500).body())

    def _idempotent(self, req: _Request, act: Callable[[], Callable[[], dict]]) -> Response:
        """PayPal-Request-Id: the same id and body get the first result (as it is now); the action never runs twice."""
        request_id = req.headers.get("PayPal-Request-Id")
        digest = hashlib.sha256(json.dumps(req.json(), sort_keys=True).encode()).hexdigest()
        if request_id and (req.path, request_id) in self._idempotency:
            first_digest, view = self._idempotency[(req.path, request_id)]
            if first_digest != digest:
                raise PayPalError("DUPLICATE_REQUEST_ID")
            return _json(200, view())
        view = act()
        if request_id:
            self._idempotency[(req.path, request_id)] = (digest, view)
        return _json(201, view())

    # ---- API: OAuth --------------------------------------------------------------------------------------------------
    def _api_token(self, req: _Request) -> Response:
        auth = req.headers.get("Authorization") or ""
        try:
            credentials = tuple(base64.b64decode(auth.removeprefix("Basic ")).decode().split(":", 1))
        except ValueError:
            credentials = ()
        if not auth.startswith("Basic ") or credentials != (self.client_id, self.client_secret):
            return _json(401, {"error": "invalid_client", "error_description": "Client Authentication failed"})
        if dict(parse_qsl(req.raw.decode())).get("grant_type") != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"})
        token = "A21AA" + secrets.token_urlsafe(48)
        self._tokens.add(token)
        scope = "https://uri.paypal.com/services/payments/payment/authcapture openid"
        answer = {"scope": scope, "access_token": token, "token_type": "Bearer", "app_id": "APP-80W284485P519543T"}
        return _json(200, answer | {"expires_in": 32400, "nonce": f"{_now()}{secrets.token_hex(8)}"})

    # ---- API: orders -------------------------------------------------------------------------------------------------
    def _api_create_order(self, req: _Request) -> Response:
        body = req.json()
        if not body.get("intent"):
            raise PayPalError("MISSING_REQUIRED_PARAMETER", field="/intent")
        if body["intent"] != "CAPTURE":
            raise PayPalError("INVALID_PARAMETER_VALUE", "The fake only supports intent CAPTURE.", field="/intent")
        if not body.get("purchase_units"):
            raise PayPalError("MISSING_REQUIRED_PARAMETER", field="/purchase_units")
        units = []
        for unit in body["purchase_units"]:
            field = f"/purchase_units/@reference_id=='{unit.get('reference_id') or 'default'}'"
            _check_breakdown(unit, field, _parse_money(unit.get("amount"), f"{field}/amount")[1])
            kept = {k: unit[k] for k in ("amount", "description", "custom_id", "invoice_id", "items") if k in unit}
            units.append({"reference_id": unit.get("reference_id") or "default", "payee": MERCHANT} | kept)
        wallet = (body.get("payment_source") or {}).get("paypal")
        context = (wallet or {}).get("experience_context") or body.get("application_context") or {}

        def create() -> Callable[[], dict]:
            order_id, now = _id(), _now()
            status = "CREATED" if wallet is None else "PAYER_ACTION_REQUIRED"
            order = {"id": order_id, "intent": "CAPTURE", "status": status, "purchase_units": copy.deepcopy(units)}
            self.orders[order_id] = order | {"create_time": now, "update_time": now}
            if wallet is not None:
                self.orders[order_id]["payment_source"] = {"paypal": {}}
            self._meta[order_id] = {
                "return_url": context.get("return_url"),
                "cancel_url": context.get("cancel_url"),
                "payer_action": wallet is not None,
                "captures": [[] for _ in units],
            }
            return functools.partial(self._order_view, order_id, "full" if req.representation else "create")

        return self._idempotent(req, create)

    def _api_get_order(self, req: _Request, id: str) -> Response:
        return _json(200, self._order_view(self._find(self.orders, id)))

    def _api_capture_order(self, req: _Request, id: str) -> Response:
        order, meta = self.orders[self._find(self.orders, id)], self._meta[id]

        def capture() -> Callable[[], dict]:
            if order["status"] == "COMPLETED":
                raise PayPalError("ORDER_ALREADY_CAPTURED")
            if order["status"] != "APPROVED":
                raise PayPalError("ORDER_NOT_APPROVED")
            outcome = self._capture_outcomes.pop(0) if self._capture_outcomes else "COMPLETED"
            if outcome == "INSTRUMENT_DECLINED":  # the buyer must approve again, with another funding source
                order["status"] = "PAYER_ACTION_REQUIRED" if meta["payer_action"] else "CREATED"
                raise PayPalError(outcome, links=[_link(f"{self.url}/checkoutnow?token={id}", "redirect")])
            used = {c.get("invoice_id") for c in self.captures.values() if c["status"] != "DECLINED"} - {None}
            if self.block_duplicate_invoice_id and any(u.get("invoice_id") in used for u in order["purchase_units"]):
                raise PayPalError("DUPLICATE_INVOICE_ID")
            now = _now()
            for index, unit in enumerate(order["purchase_units"]):
                capture_id = _id()
                amount = {k: unit["amount"][k] for k in ("currency_code", "value")}
                base = f"{self.url}/v2/payments/captures/{capture_id}"
                capture = {
                    "id": capture_id,
                    "status": outcome,
                    "amount": amount,
                    "final_capture": True,
                    "disbursement_mode": "INSTANT",
                    "seller_protection": {"status": "ELIGIBLE", "dispute_categories": ["ITEM_NOT_RECEIVED"]},
                    **{k: unit[k] for k in ("custom_id", "invoice_id") if k in unit},
                    "links": [
                        _link(base, "self"),
                        _link(f"{base}/refund", "refund", "POST"),
                        _link(f"{self.url}/v2/checkout/orders/{id}", "up"),
                    ],
                    "create_time": now,
                    "update_time": now,
                    "payee": MERCHANT,
                    "supplementary_data": {"related_ids": {"order_id": id}},
                }
                if outcome == "COMPLETED":
                    capture["seller_receivable_breakdown"] = self._breakdown(amount)
                if outcome == "PENDING":
                    capture["status_details"] = {"reason": "PENDING_REVIEW"}
                self.captures[capture_id] = capture
                meta["captures"][index].append(capture_id)
                self.send_event(_CAPTURE_EVENTS[outcome], capture)
            order["status"], order["update_time"] = "COMPLETED", now
            return functools.partial(self._order_view, id, "full" if req.representation else "capture")

        return self._idempotent(req, capture)

    def _order_view(self, order_id: str, shape: str = "full") -> dict:
        """The order as PayPal shows it now, with payments and links; shape "create"/"capture" is the minimal answer."""
        order, meta = copy.deepcopy(self.orders[order_id]), self._meta[order_id]
        for unit, capture_ids in zip(order["purchase_units"], meta["captures"], strict=True):
            captures = [{k: v for k, v in self.captures[c].items() if k != "supplementary_data"} for c in capture_ids]
            refunds = [self.refunds[r] for c in capture_ids for r in self._refunds_of.get(c, [])]
            if captures:
                unit["payments"] = copy.deepcopy({"captures": captures} | ({"refunds": refunds} if refunds else {}))
        base, status = f"{self.url}/v2/checkout/orders/{order_id}", order["status"]
        order["links"] = [_link(base, "self")]
        if status in ("CREATED", "PAYER_ACTION_REQUIRED"):
            rel = "approve" if status == "CREATED" else "payer-action"
            order["links"].append(_link(f"{self.url}/checkoutnow?token={order_id}", rel))
        if status in ("CREATED", "APPROVED"):
            order["links"] += [_link(base, "update", "PATCH"), _link(f"{base}/capture", "capture", "POST")]
        if shape == "create":
            return {k: order[k] for k in ("id", "payment_source", "status", "links") if k in order}
        if shape == "capture":
            units = [{k: u[k] for k in ("reference_id", "payments") if k in u} for u in order["purchase_units"]]
            kept = {k: order[k] for k in ("id", "status", "payment_source", "payer", "links") if k in order}
            return kept | {"purchase_units": units}
        return order

    def _breakdown(self, amount: dict) -> dict:
        currency, gross = amount["currency_code"], Decimal(amount["value"])
        fee = _quantize(currency, gross * self.fee_percent / 100 + self.fee_fixed)
        return {
            k: _money(currency, v)
            for k, v in (("gross_amount", gross), ("paypal_fee", fee), ("net_amount", gross - fee))
        }

    @staticmethod
    def _find(table: dict, resource_id: str) -> str:
        if resource_id not in table:
            raise PayPalError("INVALID_RESOURCE_ID")
        return resource_id

    # ---- API: payments -----------------------------------------------------------------------------------------------
    def _api_get_capture(self, req: _Request, id: str) -> Response:
        return _json(200, self.captures[self._find(self.captures, id)])

    def _api_get_refund(self, req: _Request, id: str) -> Response:
        return _json(200, self.refunds[self._find(self.refunds, id)])

    def _api_refund(self, req: _Request, id: str) -> Response:
        capture, body = self.captures[self._find(self.captures, id)], req.json()

        def refund() -> Callable[[], dict]:
            if capture["status"] in _REFUSALS:
                raise PayPalError(_REFUSALS[capture["status"]])
            currency, gross = capture["amount"]["currency_code"], Decimal(capture["amount"]["value"])
            earlier = [self.refunds[r] for r in self._refunds_of.get(id, [])]
            remaining = amount = gross - sum(Decimal(r["amount"]["value"]) for r in earlier)
            if "amount" in body:
                refund_currency, amount = _parse_money(body["amount"], "/amount")
                if refund_currency != currency:
                    raise PayPalError("REFUND_CAPTURE_CURRENCY_MISMATCH", field="/amount/currency_code")
                if amount > remaining:
                    raise PayPalError("REFUND_AMOUNT_EXCEEDED", field="/amount/value")
            capture_fee = Decimal(capture["seller_receivable_breakdown"]["paypal_fee"]["value"])
            fee_back = sum(Decimal(r["seller_payable_breakdown"]["paypal_fee"]["value"]) for r in earlier)
            fee = capture_fee - fee_back if amount == remaining else _quantize(currency, capture_fee * amount / gross)
            refund_id, now, total = _id(), _now(), gross - remaining + amount
            self.refunds[refund_id] = {
                "id": refund_id,
                "status": "COMPLETED",
                "amount": _money(currency, amount),
                **{k: body[k] for k in ("invoice_id", "custom_id", "note_to_payer") if body.get(k)},
                "seller_payable_breakdown": {
                    "gross_amount": _money(currency, amount),
                    "paypal_fee": _money(currency, fee),
                    "net_amount": _money(currency, amount - fee),
                    "total_refunded_amount": _money(currency, total),
                },
                "payer": MERCHANT,
                "create_time": now,
                "update_time": now,
                "links": [
                    _link(f"{self.url}/v2/payments/refunds/{refund_id}", "self"),
                    _link(f"{self.url}/v2/payments/captures/{id}", "up"),
                ],
            }
            self._refunds_of.setdefault(id, []).append(refund_id)
            capture["status"], capture["update_time"] = "REFUNDED" if total == gross else "PARTIALLY_REFUNDED", now
            self.send_event("PAYMENT.CAPTURE.REFUNDED", self.refunds[refund_id])
            if req.representation:
                return lambda: self.refunds[refund_id]
            return lambda: {k: self.refunds[refund_id][k] for k in ("id", "status", "links")}

        return self._idempotent(req, refund)

    # ---- API: transaction search -------------------------------------------------------------------------------------
    def _api_search(self, req: _Request) -> Response:
        try:
            start, end = (datetime.fromisoformat(req.query[name]) for name in ("start_date", "end_date"))
        except (KeyError, ValueError):
            raise PayPalError(
                "INVALID_REQUEST", "start_date and end_date are required (RFC 3339).", status=400
            ) from None
        if end - start > timedelta(days=31):
            raise PayPalError("INVALID_REQUEST", "Date range is greater than 31 days.", status=400)
        rows = []
        for capture in self.captures.values():
            order = self.orders[capture["supplementary_data"]["related_ids"]["order_id"]]
            entries = [(capture, "T0006", order["id"], "ODR", 1)]
            entries += [
                (self.refunds[r], "T1107", capture["id"], "TXN", -1) for r in self._refunds_of.get(capture["id"], [])
            ]
            for item, code, reference, reference_type, sign in entries:
                currency, value = item["amount"]["currency_code"], Decimal(item["amount"]["value"])
                breakdown = item.get("seller_receivable_breakdown") or item.get("seller_payable_breakdown") or {}
                fee = Decimal(breakdown.get("paypal_fee", {}).get("value", "0"))
                info = {
                    "paypal_account_id": order.get("payer", {}).get("payer_id"),
                    "transaction_id": item["id"],
                    "paypal_reference_id": reference,
                    "paypal_reference_id_type": reference_type,
                    "transaction_event_code": code,
                    "transaction_initiation_date": item["create_time"].replace("Z", "+0000"),
                    "transaction_updated_date": item["update_time"].replace("Z", "+0000"),
                    "transaction_amount": _money(currency, sign * value),
                    "fee_amount": _money(currency, -sign * fee),  # PayPal reports the fee taken as negative
                    "transaction_status": {"PENDING": "P", "DECLINED": "D", "REVERSED": "V"}.get(item["status"], "S"),
                    "protection_eligibility": "01",
                    **({"invoice_id": item["invoice_id"]} if item.get("invoice_id") else {}),
                    **({"custom_field": item["custom_id"]} if item.get("custom_id") else {}),
                }
                in_range = start <= datetime.fromisoformat(item["create_time"]) <= end
                if in_range and req.query.get("transaction_id") in (None, item["id"]):
                    rows.append({"transaction_info": info})
        try:
            page_size, page = int(req.query.get("page_size", 100)), int(req.query.get("page", 1))
        except ValueError:
            raise PayPalError("INVALID_REQUEST", "page and page_size are numbers.", status=400) from None
        return _json(
            200,
            {
                "transaction_details": rows[(page - 1) * page_size : page * page_size],
                "account_number": MERCHANT["merchant_id"],
                "start_date": req.query["start_date"],
                "end_date": req.query["end_date"],
                "last_refreshed_datetime": _now(),
                "page": page,
                "total_items": len(rows),
                "total_pages": math.ceil(len(rows) / page_size),
                "links": [_link(f"{self.url}{req.path}?{urlencode(req.query)}", "self")],
            },
        )

    # ---- API: webhook signatures -------------------------------------------------------------------------------------
    def _api_verify(self, req: _Request) -> Response:
        body = req.json()
        names = ("auth_algo", "cert_url", "transmission_id", "transmission_sig", "transmission_time", "webhook_id")
        for name in (*names, "webhook_event"):
            if not body.get(name):
                raise PayPalError("MISSING_REQUIRED_PARAMETER", field=f"/{name}")
        algo, cert_url, transmission_id, signature, transmission_time, webhook_id = (body[n] for n in names)
        raw = self._signed.get(transmission_id)
        ok = raw is not None and algo == "SHA256withRSA" and cert_url == self.cert_url
        if ok and json.loads(raw) == body["webhook_event"]:
            message = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(raw)}".encode()
            try:
                self._leaf_key.public_key().verify(
                    base64.b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256()
                )
            except (InvalidSignature, ValueError):
                ok = False
        else:
            ok = False
        return _json(200, {"verification_status": "SUCCESS" if ok else "FAILURE"})

    def _page_cert(self, req: _Request, name: str) -> Response:
        if name != self.cert_name:
            return _html(404, "Unknown certificate")
        return 200, {"Content-Type": "application/x-pem-file"}, self.cert_chain_pem

    # ---- buyer pages -------------------------------------------------------------------------------------------------
    def _page_checkout(self, req: _Request) -> Response:
        order = self.orders.get(req.query.get("token", ""))
        if order is None:
            return _html(404, "This checkout session is not known")
        amount, token = order["purchase_units"][0]["amount"], html.escape(order["id"])
        price = html.escape(f"{amount['value']} {amount['currency_code']}")
        return _html(
            200,
            "Fake PayPal",
            f"""
<p>Order {token} ({order["status"]}): pay <strong id="amount">{price}</strong> to {MERCHANT["email_address"]}.</p>
<form method="post" action="/checkoutnow?token={token}">
<label>Email <input name="email" value="buyer@example.com"></label>
<label>Country <input name="country" value="US" maxlength="2"></label>
<button type="submit" id="approve">Approve and pay</button></form>
<p><a id="cancel" href="/checkoutnow/cancel?token={token}">Cancel and return to merchant</a></p>""",
        )

    def _page_approve(self, req: _Request) -> Response:
        order_id, form = req.query.get("token", ""), dict(parse_qsl(req.raw.decode()))
        if order_id not in self.orders:
            return _html(404, "This checkout session is not known")
        try:
            self.approve(order_id, country=form.get("country") or "US", email=form.get("email") or "buyer@example.com")
        except ValueError as error:
            return _html(409, html.escape(str(error)))
        if not self._meta[order_id]["return_url"]:
            return _html(200, "Approved. You can close this window.")
        return _redirect(
            self._meta[order_id]["return_url"], token=order_id, PayerID=self.orders[order_id]["payer"]["payer_id"]
        )

    def _page_cancel(self, req: _Request) -> Response:
        order_id = req.query.get("token", "")
        cancel_url = self._meta.get(order_id, {}).get("cancel_url")
        return _redirect(cancel_url, token=order_id) if cancel_url else _html(200, "Cancelled.")


_ORDER, _CAPTURE = r"/v2/checkout/orders/(?P<id>[^/]+)", r"/v2/payments/captures/(?P<id>[^/]+)"
_ROUTES = [  # method, path pattern, FakePayPal method, needs a Bearer token
    ("POST", r"/v1/oauth2/token", "_api_token", False),
    ("POST", r"/v2/checkout/orders", "_api_create_order", True),
    ("GET", _ORDER, "_api_get_order", True),
    ("POST", _ORDER + "/capture", "_api_capture_order", True),
    ("GET", _CAPTURE, "_api_get_capture", True),
    ("POST", _CAPTURE + "/refund", "_api_refund", True),
    ("GET", r"/v2/payments/refunds/(?P<id>[^/]+)", "_api_get_refund", True),
    ("GET", r"/v1/reporting/transactions", "_api_search", True),
    ("POST", r"/v1/notifications/verify-webhook-signature", "_api_verify", True),
    ("GET", r"/certs/(?P<name>[^/]+)\.pem", "_page_cert", False),
    ("GET", r"/checkoutnow", "_page_checkout", False),
    ("POST", r"/checkoutnow", "_page_approve", False),
    ("GET", r"/checkoutnow/cancel", "_page_cancel", False),
]


def _make_handler(fake: FakePayPal) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's pooled session expects
        server_version = "FakePayPal/1.0"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers and body: no 40 ms stall
            fake._sockets.add(self.connection)

        def finish(self) -> None:
            fake._sockets.discard(self.connection)
            super().finish()

        def do_GET(self) -> None:
            fake._serve(self)

        do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def paypal_fake_start(
    *, client_id="fake-client", client_secret="fake-secret", webhook_id="WH-FAKE", port=0
) -> FakePayPal:
    """Start a fake PayPal on 127.0.0.1 (a free port unless told one); stop it with ``.stop()``."""
    return FakePayPal(client_id=client_id, client_secret=client_secret, webhook_id=webhook_id).start(port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the fake PayPal until Ctrl-C.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--webhook", help="URL that receives the signed webhooks")
    parser.add_argument("--webhook-id", default="WH-FAKE")
    args = parser.parse_args()
    fake = paypal_fake_start(port=args.port, webhook_id=args.webhook_id)
    if args.webhook:
        fake.register_webhook(args.webhook)
    print(f"fake PayPal at {fake.url} (client fake-client / fake-secret, webhook id {args.webhook_id})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    fake.stop()
