"""Stripe through the official SDK. Works the same against api.stripe.com and localstripe."""

import contextlib
import logging
import urllib.parse
import urllib.request
from dataclasses import replace
from datetime import datetime

import requests
import stripe

from payments.providers.base import (
    DisputeEvidence,
    PaymentDeclined,
    PaymentError,
    PaymentRequest,
    PaymentSnapshot,
    ProviderUnavailable,
    RefundResult,
    WebhookNotice,
    WebhookRejected,
)
from payments.providers.stripe_cards import EXPAND as _EXPAND
from payments.providers.stripe_cards import StripeSavedCards
from payments.providers.stripe_events import (
    attempt_ref,
    charge_fee,
    charge_signals,
    failed_card,
    fraud_signal,
    minor_units,
    object_ref,
    refund_from_charge,
    refund_notice,
    signature_verify,
    text_of,
    timestamp_of,
)
from payments.providers.webhook_input import checked_notice, load_event

logger = logging.getLogger(__name__)

_STATUS = {
    "requires_payment_method": "created",
    "requires_confirmation": "created",
    "requires_action": "requires_action",
    "processing": "requires_action",
    "requires_capture": "succeeded",
    "succeeded": "succeeded",
    "canceled": "failed",
}
PAYMENT_EVENTS = {"payment_intent.succeeded", "payment_intent.payment_failed"}
REFUND_EVENTS = {"refund.created", "refund.updated", "charge.refund.updated"}


def _session() -> requests.Session:
    """A session that does not read the environment's proxy settings again on every call (requests does, at a
    cost of about a millisecond of CPU per call): _proxy_for read them once."""
    session = requests.Session()
    session.trust_env = False
    return session


def _proxy_for(api_base: str) -> str | None:
    """The HTTPS proxy the environment names for Stripe's host (HTTPS_PROXY, NO_PROXY), read once."""
    host = urllib.parse.urlsplit(api_base or "https://api.stripe.com").hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get("https") or proxies.get("all")


class StripeProvider(StripeSavedCards):
    name = "stripe"

    def __init__(self, *, secret_key: str, webhook_secret: str, api_base: str = "", timeout: float = 10.0):
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else {},
            max_network_retries=0 if api_base else 1,
            http_client=stripe.RequestsClient(timeout=timeout, session=_session(), proxy=_proxy_for(api_base)),
        )
        self._webhook_secret = webhook_secret

    def create_payment(self, request: PaymentRequest) -> PaymentSnapshot:
        params = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "payment_method_types": ["card"],
            "metadata": {"order_number": request.order_number, **request.metadata},
        }
        return self._snapshot_from_dict(
            self._call_dict("post", "/v1/payment_intents", idempotency_key=request.idempotency_key, **params)
        )

    def capture(
        self, *, ref: str, idempotency_key: str, card_token: str = "", save_card_for: str = ""
    ) -> PaymentSnapshot:
        """Attach the card behind a Stripe.js token and confirm on the server (the intent captures itself).

        With `save_card_for`, the card is first kept on a new customer (Stripe's save-then-charge), and the intent
        is paid with it as that customer's: later periods charge it off-session."""
        if not card_token:
            return self.fetch_payment(ref=ref)
        if save_card_for:
            kept = self.save_card(
                email=save_card_for, card_token=card_token, idempotency_key=f"{idempotency_key}-customer"
            )
            card_id = kept.method_ref
            params = {"customer": kept.customer_ref, "payment_method": card_id}
        else:
            token = self._call(lambda: self._client.v1.tokens.retrieve(card_token))
            card_id = token.card.id if token.card else ""
            params = {"payment_method": card_id}
        if not card_id:
            raise PaymentDeclined("The card could not be read; please enter it again.")
        self._call(lambda: self._client.v1.payment_intents.update(ref, params=params))
        intent = self._call(
            lambda: self._client.v1.payment_intents.confirm(
                ref, params={"expand": _EXPAND}, options={"idempotency_key": idempotency_key}
            )
        )
        return self._snapshot(intent)

    def fetch_payment(self, *, ref: str) -> PaymentSnapshot:
        path = f"/v1/payment_intents/{urllib.parse.quote(ref, safe='')}"
        return self._snapshot_from_dict(self._call_dict("get", path, expand=_EXPAND))

    def refund(self, *, ref: str, capture_ref: str, amount: int, currency: str, idempotency_key: str) -> RefundResult:
        refund = self._call(
            lambda: self._client.v1.refunds.create(
                params={"payment_intent": ref, "amount": amount}, options={"idempotency_key": idempotency_key}
            )
        )
        data = refund.to_dict()
        status = data.get("status") or "pending"
        return RefundResult(ref=data["id"], amount=int(data.get("amount") or amount), status=status)

    def recent_payments(self, *, since: datetime) -> list[PaymentSnapshot]:
        found = []
        page = self._call(
            lambda: self._client.v1.payment_intents.list(
                params={"created": {"gte": int(since.timestamp())}, "limit": 100}
            )
        )
        for intent in page.auto_paging_iter():
            snapshot = self._snapshot(intent)
            if snapshot.status == "succeeded":
                found.append(snapshot)
        return found

    def submit_dispute_evidence(self, *, dispute_ref: str, evidence: DisputeEvidence) -> None:
        fields = {
            "product_description": evidence.product_description,
            "customer_email_address": evidence.customer_email,
            "customer_name": evidence.customer_name,
            "customer_purchase_ip": evidence.customer_purchase_ip,
            "service_date": evidence.service_date,
            "access_activity_log": evidence.access_activity_log,
            "uncategorized_text": evidence.uncategorized_text,
        }
        evidence_params = {k: v[:20000] for k, v in fields.items() if v}
        self._call(
            lambda: self._client.v1.disputes.update(dispute_ref, params={"evidence": evidence_params, "submit": True})
        )

    def parse_webhook(self, *, payload: bytes, headers: dict[str, str]) -> WebhookNotice:
        signature = headers.get("Stripe-Signature") or headers.get("stripe-signature") or ""
        if not signature:
            raise WebhookRejected("missing Stripe-Signature header")
        if not self._webhook_secret:
            raise WebhookRejected("this channel has no webhook secret configured")
        signature_verify(payload, signature, self._webhook_secret)
        data = load_event(payload)
        event_id, event_type = data.get("id"), data.get("type")
        if not isinstance(event_id, str) or not isinstance(event_type, str):
            raise WebhookRejected("event without id or type")
        container = data.get("data") or {}
        obj = (container.get("object") or {}) if isinstance(container, dict) else None
        if not isinstance(obj, dict):
            raise WebhookRejected("event without an object")
        try:
            notice = self._notice(event_id, event_type, obj)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, OSError) as exc:
            raise WebhookRejected(f"{event_type[:100]} could not be read") from exc
        with contextlib.suppress(TypeError, ValueError, OverflowError, OSError):  # for the lag metric only: an odd
            notice = replace(notice, sent_at=timestamp_of(data.get("created")))  # value is left out, not refused
        return checked_notice(notice)

    def _notice(self, event_id: str, event_type: str, obj: dict) -> WebhookNotice:
        payment = refund = None
        if event_type in PAYMENT_EVENTS:
            if obj.get("object") != "payment_intent" or not obj.get("id"):
                raise WebhookRejected("payment event without a payment intent")
            payment = self._snapshot_from_dict(obj)
        elif event_type == "charge.refunded":
            refund = refund_from_charge(obj)
        elif event_type in REFUND_EVENTS:
            refund = refund_notice(obj)
        fraud = fraud_signal(event_type, obj)
        return WebhookNotice(event_id=event_id, event_type=event_type, payment=payment, fraud=fraud, refund=refund)

    def _call(self, fn):
        try:
            return fn()
        except stripe.CardError as exc:
            raise PaymentDeclined(exc.user_message or "Your card was declined.") from exc
        except stripe.APIConnectionError as exc:
            timeout = isinstance(exc.__cause__, requests.exceptions.Timeout)
            logger.warning("stripe unreachable (%s)", "timeout" if timeout else type(exc.__cause__).__name__)
            raise ProviderUnavailable("The payment provider could not be reached.", timeout=timeout) from exc
        except stripe.StripeError as exc:
            logger.warning("stripe call failed: %s (%s)", type(exc).__name__, getattr(exc, "code", "") or "")
            error = PaymentError("The payment provider could not do this; please try again.")
            error.status, error.issue = exc.http_status, str(getattr(exc, "code", "") or "")[:100]
            raise error from exc

    def _call_dict(self, method: str, path: str, **params) -> dict:
        """A call through the SDK's raw request, answered as the parsed JSON: the two calls of every paid order
        (open the intent, read it back expanded) skip the SDK's object conversion, about a tenth of the web
        process's CPU per order. Errors are the SDK's own, as with every other call."""
        return self._call(lambda: self._client.raw_request(method, path, **params)).data

    def _snapshot(self, intent) -> PaymentSnapshot:
        return self._snapshot_from_dict(intent.to_dict())

    @staticmethod
    def _snapshot_from_dict(obj: dict) -> PaymentSnapshot:
        raw_status = obj.get("status") or ""
        status = _STATUS.get(raw_status, "created")
        last_error = obj.get("last_payment_error") or {}
        if raw_status == "requires_payment_method" and last_error:
            status = "failed"
        amount = minor_units(obj.get("amount"))
        received = obj.get("amount_received")
        if received is None:  # localstripe omits it; a succeeded intent received its amount
            received = amount if raw_status == "succeeded" else 0
        charge = obj.get("latest_charge")
        charge = charge if isinstance(charge, dict) else {}
        created = obj.get("created")
        return PaymentSnapshot(
            ref=obj["id"],
            status=status,
            amount=amount,
            amount_received=minor_units(received),
            currency=(obj.get("currency") or "").upper(),
            client_secret=obj.get("client_secret") or "",
            capture_ref=text_of(charge.get("id"))[:100],
            failure_message=(last_error.get("message") or "")[:300],
            order_number=((obj.get("metadata") or {}).get("order_number") or ""),
            attempt_ref=attempt_ref(obj, last_error),
            fee=charge_fee(charge),
            refunded_amount=minor_units(charge.get("amount_refunded")),
            created_at=timestamp_of(created),
            customer_ref=object_ref(obj.get("customer")),
            method_ref=object_ref(obj.get("payment_method")),
            **(charge_signals(charge or None) or failed_card(last_error)),
        )
