"""Stripe through the official SDK. Works the same against api.stripe.com and localstripe."""

import logging

import stripe
from django.conf import settings

from payments.providers.base import (
    FraudSignal,
    PaymentDeclined,
    PaymentError,
    PaymentRequest,
    PaymentSnapshot,
    RefundResult,
    WebhookNotice,
    WebhookRejected,
)

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


class StripeProvider:
    name = "stripe"

    def __init__(
        self,
        *,
        secret_key: str | None = None,
        webhook_secret: str | None = None,
        api_base: str | None = None,
    ):
        base = settings.STRIPE_API_BASE if api_base is None else api_base
        self._client = stripe.StripeClient(
            secret_key or settings.STRIPE_SECRET_KEY,
            base_addresses={"api": base} if base else {},
            max_network_retries=2 if not base else 0,
            http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
        )
        self._webhook_secret = webhook_secret or settings.STRIPE_WEBHOOK_SECRET

    def create_payment(self, request: PaymentRequest) -> PaymentSnapshot:
        params = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "payment_method_types": ["card"],
            "metadata": {"order_number": request.order_number, **request.metadata},
        }
        intent = self._call(
            lambda: self._client.v1.payment_intents.create(
                params=params, options={"idempotency_key": request.idempotency_key}
            )
        )
        return self._snapshot(intent)

    def confirm_with_card_token(self, *, ref: str, card_token: str) -> PaymentSnapshot:
        """Attach the card behind a Stripe.js token and confirm on the server."""
        token = self._call(lambda: self._client.v1.tokens.retrieve(card_token))
        card_id = token.card.id if token.card else ""
        if not card_id:
            raise PaymentDeclined("The card could not be read; please enter it again.")
        self._call(lambda: self._client.v1.payment_intents.update(ref, params={"payment_method": card_id}))
        intent = self._call(lambda: self._client.v1.payment_intents.confirm(ref, params={"expand": ["latest_charge"]}))
        return self._snapshot(intent)

    def fetch_payment(self, *, ref: str) -> PaymentSnapshot:
        intent = self._call(lambda: self._client.v1.payment_intents.retrieve(ref, params={"expand": ["latest_charge"]}))
        return self._snapshot(intent)

    def refund(self, *, ref: str, amount: int, idempotency_key: str) -> RefundResult:
        refund = self._call(
            lambda: self._client.v1.refunds.create(
                params={"payment_intent": ref, "amount": amount}, options={"idempotency_key": idempotency_key}
            )
        )
        data = refund.to_dict()
        return RefundResult(ref=data["id"], amount=int(data.get("amount") or amount), status=data.get("status") or "")

    def parse_webhook(self, *, payload: bytes, headers: dict[str, str]) -> WebhookNotice:
        signature = headers.get("Stripe-Signature") or headers.get("stripe-signature") or ""
        if not signature:
            raise WebhookRejected("missing Stripe-Signature header")
        try:
            event = stripe.Webhook.construct_event(payload, signature, self._webhook_secret)
        except stripe.SignatureVerificationError as exc:
            raise WebhookRejected("signature verification failed") from exc
        except ValueError as exc:
            raise WebhookRejected("payload is not valid JSON") from exc
        data = event.to_dict()
        event_id, event_type = data.get("id"), data.get("type")
        if not isinstance(event_id, str) or not isinstance(event_type, str):
            raise WebhookRejected("event without id or type")
        payment = None
        if event_type in PAYMENT_EVENTS:
            obj = (data.get("data") or {}).get("object") or {}
            if obj.get("object") != "payment_intent" or not obj.get("id"):
                raise WebhookRejected("payment event without a payment intent")
            payment = self._snapshot_from_dict(obj)
        fraud = _fraud_signal(event_type, (data.get("data") or {}).get("object") or {})
        return WebhookNotice(event_id=event_id, event_type=event_type, payment=payment, fraud=fraud)

    def _call(self, fn):
        try:
            return fn()
        except stripe.CardError as exc:
            raise PaymentDeclined(exc.user_message or "Your card was declined.") from exc
        except stripe.StripeError as exc:
            logger.warning("stripe call failed: %s", type(exc).__name__)
            raise PaymentError("The payment provider could not be reached; please try again.") from exc

    def _snapshot(self, intent) -> PaymentSnapshot:
        return self._snapshot_from_dict(intent.to_dict())

    @staticmethod
    def _snapshot_from_dict(obj: dict) -> PaymentSnapshot:
        raw_status = obj.get("status") or ""
        status = _STATUS.get(raw_status, "created")
        last_error = obj.get("last_payment_error") or {}
        if raw_status == "requires_payment_method" and last_error:
            status = "failed"
        amount = int(obj.get("amount") or 0)
        received = obj.get("amount_received")
        if received is None:  # localstripe omits it; a succeeded intent received its amount
            received = amount if raw_status == "succeeded" else 0
        return PaymentSnapshot(
            ref=obj["id"],
            status=status,
            amount=amount,
            amount_received=int(received),
            currency=(obj.get("currency") or "").upper(),
            client_secret=obj.get("client_secret") or "",
            failure_message=(last_error.get("message") or "")[:300],
            order_number=((obj.get("metadata") or {}).get("order_number") or ""),
            attempt_ref=_attempt_ref(obj, last_error),
            **(charge_signals(obj.get("latest_charge")) or _failed_card(last_error)),
        )


def _attempt_ref(intent: dict, last_error: dict) -> str:
    charge = last_error.get("charge") or intent.get("latest_charge") or ""
    return (charge.get("id", "") if isinstance(charge, dict) else str(charge))[:100]


def _failed_card(last_error: dict) -> dict:
    """The declined card (last_payment_error.payment_method), so card testing is counted per card."""
    card = ((last_error.get("payment_method") or {}).get("card")) or {}
    if not card:
        return {}
    return {"card_fingerprint": (card.get("fingerprint") or "")[:64], "card_country": (card.get("country") or "")[:2]}


_FRAUD_EVENTS = {
    "charge.dispute.created": "dispute",
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
    return FraudSignal(kind=kind, payment_ref=payment_ref, reason=str(reason)[:100], fraud=fraud)


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
