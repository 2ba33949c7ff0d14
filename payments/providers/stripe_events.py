"""Reading what Stripe sends: webhook signatures, and the payment, charge, refund and fraud fields of its objects,
each checked (a missing or odd value is refused or left out, never trusted). Used by payments.providers.stripe."""

from datetime import UTC, datetime

import stripe
from django.utils import timezone

from payments.providers.base import FraudSignal, RefundNotice, WebhookRejected

WEBHOOK_TOLERANCE_SECONDS = 300  # Stripe's default, applied to signatures from the past and from the future


def object_ref(value) -> str:
    """An object's id, whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return text_of(value)[:100]


def signature_verify(payload: bytes, header: str, secret: str) -> None:
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


def minor_units(value) -> int:
    """An amount: a whole count of minor units (absent: 0)."""
    return 0 if value is None else _whole_number(value)


def timestamp_of(value) -> datetime | None:
    """A Unix time (absent or 0: None)."""
    return datetime.fromtimestamp(_whole_number(value), UTC) if value else None


def text_of(value) -> str:
    """An id as Stripe sends it: a string (absent: ""). An object or a number in its place is refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"an id must be a string, not {type(value).__name__}")
    return value


def charge_fee(charge: dict) -> int | None:
    txn = charge.get("balance_transaction")
    if isinstance(txn, dict) and txn.get("fee") is not None:
        return minor_units(txn["fee"])
    return None


def attempt_ref(intent: dict, last_error: dict) -> str:
    charge = last_error.get("charge") or intent.get("latest_charge") or ""
    return (charge.get("id", "") if isinstance(charge, dict) else str(charge))[:100]


def failed_card(last_error: dict) -> dict:
    """The declined card (last_payment_error.payment_method), so card testing is counted per card."""
    card = ((last_error.get("payment_method") or {}).get("card")) or {}
    if not card:
        return {}
    return {"card_fingerprint": (card.get("fingerprint") or "")[:64], "card_country": (card.get("country") or "")[:2]}


def refund_from_charge(charge: dict) -> RefundNotice:
    """charge.refunded: the newest refund on the charge, and the charge's refunded total."""
    refunds = ((charge.get("refunds") or {}).get("data")) or []
    latest = refunds[0] if refunds and isinstance(refunds[0], dict) else {}
    if not charge.get("id") or not latest.get("id"):
        raise WebhookRejected("charge.refunded without a charge or a refund")
    return RefundNotice(
        ref=latest["id"],
        payment_ref=text_of(charge.get("payment_intent")),
        capture_ref=charge["id"],
        amount=minor_units(latest.get("amount")),
        currency=(latest.get("currency") or charge.get("currency") or "").upper(),
        status=latest.get("status") or "succeeded",
        payment_refunded_total=minor_units(charge.get("amount_refunded")),
    )


def refund_notice(refund: dict) -> RefundNotice:
    if refund.get("object") != "refund" or not refund.get("id"):
        raise WebhookRejected("refund event without a refund")
    return RefundNotice(
        ref=refund["id"],
        payment_ref=text_of(refund.get("payment_intent")),
        capture_ref=text_of(refund.get("charge")),
        amount=minor_units(refund.get("amount")),
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


def fraud_signal(event_type: str, obj: dict) -> FraudSignal | None:
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
        capture_ref=text_of(obj.get("charge"))[:100],
        reason=str(reason)[:100],
        fraud=fraud,
        dispute_ref=text_of(obj.get("id")) if is_dispute else "",
        amount=minor_units(obj.get("amount")) if is_dispute else 0,
        currency=(obj.get("currency") or "").upper() if is_dispute else "",
        status=str(obj.get("status") or "") if is_dispute else "",
        due_by=timestamp_of(due_by),
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
