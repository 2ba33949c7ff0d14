"""Stripe events as Stripe sends them, signed like Stripe signs them, for the simulated payments and feedback.

A payment_intent.succeeded carries its charge expanded (card fingerprint and country, billing country,
Radar's outcome, the fee), which is what payments.providers.stripe reads (`_snapshot_from_dict`,
`charge_signals`) and what spares the shop its fetch of the charge. A payment_intent.payment_failed carries
the declined card in last_payment_error.payment_method, so card testing is counted per card.
"""

import hashlib
import hmac
import json
import time
from datetime import datetime


def stripe_signed(event: dict, *, secret: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the event as delivered: `Stripe-Signature: t=<now>,v1=<HMAC-SHA256>`."""
    payload = json.dumps(event, separators=(",", ":"))
    timestamp = int(time.time())
    signature = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return payload.encode(), {"Stripe-Signature": f"t={timestamp},v1={signature}"}


def stripe_event(*, event_id: str, event_type: str, obj: dict) -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }


def _card(fingerprint: str, country: str) -> dict:
    return {"brand": "visa", "fingerprint": fingerprint, "country": country, "funding": "credit"}


def intent_succeeded(
    *,
    intent: str,
    charge: str,
    order_number: str,
    amount: int,
    currency: str,
    card: str,
    card_country: str,
    billing_country: str,
    risk_level: str,
    risk_score: int,
) -> dict:
    latest_charge = {
        "id": charge,
        "object": "charge",
        "amount": amount,
        "amount_refunded": 0,
        "currency": currency.lower(),
        "paid": True,
        "status": "succeeded",
        "payment_intent": intent,
        "outcome": {
            "type": "authorized",
            "network_status": "approved_by_network",
            "risk_level": risk_level,
            "risk_score": risk_score,
            "seller_message": "Payment complete.",
        },
        "balance_transaction": {"id": f"txn_{charge[3:]}", "fee": round(amount * 0.029) + 30},
        "payment_method_details": {"type": "card", "card": _card(card, card_country)},
        "billing_details": {"address": {"country": billing_country}},
    }
    return {
        "id": intent,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "currency": currency.lower(),
        "status": "succeeded",
        "metadata": {"order_number": order_number},
        "latest_charge": latest_charge,
        "last_payment_error": None,
    }


def intent_failed(
    *, intent: str, charge: str, order_number: str, amount: int, currency: str, card: str, card_country: str, code: str
) -> dict:
    return {
        "id": intent,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": 0,
        "currency": currency.lower(),
        "status": "requires_payment_method",
        "metadata": {"order_number": order_number},
        "latest_charge": charge,
        "last_payment_error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": code,
            "message": "Your card was declined.",
            "charge": charge,
            "payment_method": {"type": "card", "card": _card(card, card_country)},
        },
    }


def early_fraud_warning(*, warning_id: str, intent: str, charge: str, fraud_type: str) -> dict:
    return {
        "id": warning_id,
        "object": "radar.early_fraud_warning",
        "actionable": True,
        "charge": charge,
        "payment_intent": intent,
        "fraud_type": fraud_type,
    }


def dispute(
    *, dispute_id: str, intent: str, charge: str, amount: int, currency: str, reason: str, due_by: datetime
) -> dict:
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "currency": currency.lower(),
        "charge": charge,
        "payment_intent": intent,
        "reason": reason,
        "status": "needs_response",
        "evidence_details": {"due_by": int(due_by.timestamp()), "has_evidence": False},
    }
