"""Stripe through the official SDK. Works the same against api.stripe.com and localstripe."""

import contextlib
import logging
import urllib.parse
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime

import requests
import stripe
from django.utils import timezone

from payments.providers.base import (
    DisputeEvidence,
    FraudSignal,
    PaymentDeclined,
    PaymentError,
    PaymentRequest,
    PaymentSnapshot,
    ProviderUnavailable,
    RefundNotice,
    RefundResult,
    WebhookNotice,
    WebhookRejected,
)
from payments.providers.stripe_cards import EXPAND as _EXPAND
from payments.providers.stripe_cards import StripeSavedCards
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
WEBHOOK_TOLERANCE_SECONDS = 300  # Stripe's default, applied to signatures from the past and from the future


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
        _verify_signature(payload, signature, self._webhook_secret)
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
            notice = replace(notice, sent_at=_timestamp(data.get("created")))  # value is left out, not refused
        return checked_notice(notice)

    def _notice(self, event_id: str, event_type: str, obj: dict) -> WebhookNotice:
        payment = refund = None
        if event_type in PAYMENT_EVENTS:
            if obj.get("object") != "payment_intent" or not obj.get("id"):
                raise WebhookRejected("payment event without a payment intent")
            payment = self._snapshot_from_dict(obj)
        elif event_type == "charge.refunded":
            refund = _refund_from_charge(obj)
        elif event_type in REFUND_EVENTS:
            refund = _refund_notice(obj)
        fraud = _fraud_signal(event_type, obj)
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
        amount = _minor_units(obj.get("amount"))
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
            amount_received=_minor_units(received),
            currency=(obj.get("currency") or "").upper(),
            client_secret=obj.get("client_secret") or "",
            capture_ref=_text(charge.get("id"))[:100],
            failure_message=(last_error.get("message") or "")[:300],
            order_number=((obj.get("metadata") or {}).get("order_number") or ""),
            attempt_ref=_attempt_ref(obj, last_error),
            fee=_charge_fee(charge),
            refunded_amount=_minor_units(charge.get("amount_refunded")),
            created_at=_timestamp(created),
            customer_ref=_ref(obj.get("customer")),
            method_ref=_ref(obj.get("payment_method")),
            **(charge_signals(charge or None) or _failed_card(last_error)),
        )


def _ref(value) -> str:
    """An object's id, whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return _text(value)[:100]


def _verify_signature(payload: bytes, header: str, secret: str) -> None:
    """Stripe's HMAC over the timestamp and the body, made within the tolerance of now, before or after.

    The SDK refuses a signature older than the tolerance; one dated later than the tolerance is refused
    here, so a signed event cannot be held back and replayed after its time.
    """
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRejected("signature verification failed") from exc
    except ValueError as exc:  # the body is not UTF-8
        raise WebhookRejected("payload is not valid JSON") from exc
    if abs(_signed_at(header) - timezone.now().timestamp()) > WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookRejected("signature timestamp outside the tolerance")


def _signed_at(header: str) -> int:
    """The time the SDK checked the signature with, read by its rule: the first t= element."""
    return int(next(parts[1] for parts in (item.split("=", 2) for item in header.split(",")) if parts[0] == "t"))


def _whole_number(value) -> int:
    """An integer as Stripe sends it, or as localstripe echoes one it was given form-encoded: "1500".

    Anything else (a fraction, "NaN", a boolean, a list) is refused with TypeError or ValueError.
    """
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, not {type(value).__name__}")
    return value


def _minor_units(value) -> int:
    """An amount: a whole count of minor units (absent: 0)."""
    return 0 if value is None else _whole_number(value)


def _timestamp(value) -> datetime | None:
    """A Unix time (absent or 0: None)."""
    return datetime.fromtimestamp(_whole_number(value), UTC) if value else None


def _text(value) -> str:
    """An id as Stripe sends it: a string (absent: ""). An object or a number in its place is refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"an id must be a string, not {type(value).__name__}")
    return value


def _charge_fee(charge: dict) -> int | None:
    txn = charge.get("balance_transaction")
    if isinstance(txn, dict) and txn.get("fee") is not None:
        return _minor_units(txn["fee"])
    return None


def _attempt_ref(intent: dict, last_error: dict) -> str:
    charge = last_error.get("charge") or intent.get("latest_charge") or ""
    return (charge.get("id", "") if isinstance(charge, dict) else str(charge))[:100]


def _failed_card(last_error: dict) -> dict:
    """The declined card (last_payment_error.payment_method), so card testing is counted per card."""
    card = ((last_error.get("payment_method") or {}).get("card")) or {}
    if not card:
        return {}
    return {"card_fingerprint": (card.get("fingerprint") or "")[:64], "card_country": (card.get("country") or "")[:2]}


def _refund_from_charge(charge: dict) -> RefundNotice:
    """charge.refunded: the newest refund on the charge, and the charge's refunded total."""
    refunds = ((charge.get("refunds") or {}).get("data")) or []
    latest = refunds[0] if refunds and isinstance(refunds[0], dict) else {}
    if not charge.get("id") or not latest.get("id"):
        raise WebhookRejected("charge.refunded without a charge or a refund")
    return RefundNotice(
        ref=latest["id"],
        payment_ref=_text(charge.get("payment_intent")),
        capture_ref=charge["id"],
        amount=_minor_units(latest.get("amount")),
        currency=(latest.get("currency") or charge.get("currency") or "").upper(),
        status=latest.get("status") or "succeeded",
        payment_refunded_total=_minor_units(charge.get("amount_refunded")),
    )


def _refund_notice(refund: dict) -> RefundNotice:
    if refund.get("object") != "refund" or not refund.get("id"):
        raise WebhookRejected("refund event without a refund")
    return RefundNotice(
        ref=refund["id"],
        payment_ref=_text(refund.get("payment_intent")),
        capture_ref=_text(refund.get("charge")),
        amount=_minor_units(refund.get("amount")),
        currency=(refund.get("currency") or "").upper(),
        status=refund.get("status") or "pending",
    )


_FRAUD_EVENTS = {
    "charge.dispute.created": "dispute",
    "charge.dispute.closed": "dispute_closed",
    "radar.early_fraud_warning.created": "early_fraud_warning",
    "review.opened": "review_opened",
    "review.closed": "review_closed",
}


def _fraud_signal(event_type: str, obj: dict) -> FraudSignal | None:
    kind = _FRAUD_EVENTS.get(event_type)
    if kind is None:
        return None
    payment_ref = obj.get("payment_intent") or ""
    if not isinstance(payment_ref, str) or not payment_ref:
        raise WebhookRejected(f"{event_type} without a payment intent")
    reason = obj.get("reason") or obj.get("fraud_type") or obj.get("closed_reason") or ""
    fraud = not (kind == "review_closed" and obj.get("closed_reason") in ("approved", "refunded", "disputed"))
    if kind == "dispute_closed":
        fraud = obj.get("status") != "won"
    due_by = ((obj.get("evidence_details") or {}).get("due_by")) if kind.startswith("dispute") else None
    is_dispute = obj.get("object") == "dispute"
    return FraudSignal(
        kind=kind,
        payment_ref=payment_ref,
        capture_ref=_text(obj.get("charge"))[:100],
        reason=str(reason)[:100],
        fraud=fraud,
        dispute_ref=_text(obj.get("id")) if is_dispute else "",
        amount=_minor_units(obj.get("amount")) if is_dispute else 0,
        currency=(obj.get("currency") or "").upper() if is_dispute else "",
        status=str(obj.get("status") or "") if is_dispute else "",
        due_by=_timestamp(due_by),
    )


def charge_signals(charge) -> dict:
    """Card and Radar facts from an expanded charge. Missing fields mean "not assessed", never an error."""
    if not isinstance(charge, dict):
        return {}
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    outcome = charge.get("outcome") or {}
    three_d = card.get("three_d_secure") or {}
    billing = ((charge.get("billing_details") or {}).get("address") or {}).get("country") or ""
    radar = {}
    if outcome:
        radar = {
            "outcome_type": outcome.get("type") or "",
            "risk_level": outcome.get("risk_level") or "",
            "risk_score": outcome.get("risk_score"),
            "rule": (outcome.get("rule") or {}).get("id", "")
            if isinstance(outcome.get("rule"), dict)
            else outcome.get("rule") or "",
            "seller_message": outcome.get("seller_message") or "",
        }
    if three_d:
        radar["three_d_secure"] = {
            "result": three_d.get("result") or "",
            "liability_shift": three_d.get("result") in ("authenticated", "attempt_acknowledged"),
        }
    return {
        "card_fingerprint": (card.get("fingerprint") or "")[:64],
        "card_country": (card.get("country") or "")[:2].upper(),
        "billing_country": billing[:2].upper(),
        "radar": radar,
    }
