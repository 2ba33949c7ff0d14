"""Payment business actions. Provider calls never run inside a database transaction."""

import logging
from dataclasses import replace

from django.db import IntegrityError, transaction

from fulfillment.keys import keys_reserve_for_order
from orders.models import Order, OrderEvent, OrderStatus
from orders.services import PaymentSignals, order_mark_paid
from orders.status import order_event_record
from payments.models import Payment, PaymentStatus, WebhookEvent
from payments.providers import get_provider
from payments.providers.base import (
    PaymentDeclined,
    PaymentError,
    PaymentProvider,
    PaymentRequest,
    PaymentSnapshot,
    WebhookNotice,
)
from riskengine.models import RiskDecision
from riskengine.services import risk_check_before_payment, risk_record_event

logger = logging.getLogger(__name__)

REUSABLE = (PaymentStatus.CREATED, PaymentStatus.REQUIRES_ACTION)


class OrderNotPayable(Exception):
    pass


class PaymentBlocked(Exception):
    """The risk screen refused to start a payment (blocklist, card testing). Shown to the shopper generically."""


class OrderOutOfStock(Exception):
    """Keys for the order could not be reserved: the shopper is told before paying."""


def payment_start_for_order(*, order: Order, provider: PaymentProvider | None = None) -> Payment:
    """Reserve the order's keys and return its open payment, creating one for the exact order total.

    The provider call carries an idempotency key derived from the order, so a retried
    request never creates two payments for one order.
    """
    if order.status != OrderStatus.PENDING_PAYMENT:
        raise OrderNotPayable(order.number)
    provider = provider or get_provider("stripe")
    existing = (
        Payment.objects.filter(order=order, provider=provider.name, status__in=REUSABLE).order_by("-created_at").first()
    )
    if existing and existing.amount == order.total_amount:
        keys_reserve_for_order(order=order)  # extends the hold while the shopper is paying
        return existing
    screening = risk_check_before_payment(order=order)
    if screening.decision == RiskDecision.DECLINE:
        raise PaymentBlocked(order.number)
    if not keys_reserve_for_order(order=order):
        raise OrderOutOfStock(order.number)
    attempt = Payment.objects.filter(order=order).count() + 1
    snapshot = provider.create_payment(
        PaymentRequest(
            order_number=order.number,
            amount=order.total_amount,
            currency=order.currency,
            email=order.email,
            idempotency_key=f"order-{order.number}-payment-{attempt}",
            metadata={"risk_score": str(screening.score), "risk_band": screening.decision},
        )
    )
    payment, _ = Payment.objects.get_or_create(
        provider=provider.name,
        provider_ref=snapshot.ref,
        defaults={
            "order": order,
            "amount": order.total_amount,
            "currency": order.currency,
            "client_secret": snapshot.client_secret,
        },
    )
    return payment


def payment_confirm_card(*, payment: Payment, card_token: str, provider: PaymentProvider | None = None) -> Payment:
    """Confirm the payment with a card tokenised by Stripe.js, and apply the result at once.

    A success is applied through the same idempotent path as the webhook, so whichever
    arrives first delivers and the other is a no-op.
    """
    provider = provider or get_provider(payment.provider)
    try:
        snapshot = provider.confirm_with_card_token(ref=payment.provider_ref, card_token=card_token)
    except PaymentDeclined:
        # Record the declined attempt (velocity, events) and retire this intent, so the next attempt is
        # screened again: card testing through our own pay endpoint is counted like any other failure.
        try:
            failed = provider.fetch_payment(ref=payment.provider_ref)
        except PaymentError:
            failed = None
        if failed is not None:
            if failed.status != PaymentStatus.FAILED:
                failed = replace(failed, status=PaymentStatus.FAILED, failure_message="declined")
            payment_apply_snapshot(provider_name=payment.provider, snapshot=failed, actor=f"{payment.provider}:confirm")
        raise
    payment_apply_snapshot(provider_name=payment.provider, snapshot=snapshot, actor=f"{payment.provider}:confirm")
    payment.refresh_from_db()
    return payment


@transaction.atomic
def payment_apply_snapshot(*, provider_name: str, snapshot: PaymentSnapshot, actor: str) -> Payment | None:
    """Bring our Payment (and its order) in line with the provider's view of it. Idempotent."""
    payment = Payment.objects.select_for_update().filter(provider=provider_name, provider_ref=snapshot.ref).first()
    if payment is None:
        logger.warning("%s payment %s is not one of ours; ignored", provider_name, snapshot.ref)
        return None
    if payment.status in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED):
        return payment
    if snapshot.status == PaymentStatus.FAILED:
        _record_failed_attempt(payment=payment, snapshot=snapshot, actor=actor)
    if payment.status == snapshot.status:
        return payment
    payment.status = snapshot.status
    payment.failure_message = snapshot.failure_message
    payment.amount_received = snapshot.amount_received or None
    payment.save(update_fields=["status", "failure_message", "amount_received", "updated_at"])
    if snapshot.status == PaymentStatus.SUCCEEDED:
        order_mark_paid(
            order_id=payment.order_id,
            amount=snapshot.amount_received,
            currency=snapshot.currency,
            payment_ref=snapshot.ref,
            actor=actor,
            signals=PaymentSignals(
                card_fingerprint=snapshot.card_fingerprint,
                card_country=snapshot.card_country,
                billing_country=snapshot.billing_country,
                radar=snapshot.radar,
            ),
        )
    return payment


def _record_failed_attempt(*, payment: Payment, snapshot: PaymentSnapshot, actor: str) -> None:
    """Count each failed attempt once (a confirm response and its webhook describe the same attempt),
    however many cards are tried on one PaymentIntent: card testing shows up in the counters."""
    attempt = snapshot.attempt_ref
    if (
        attempt
        and OrderEvent.objects.filter(order_id=payment.order_id, type="payment_failed", data__attempt=attempt).exists()
    ):
        return
    if not attempt and payment.status == PaymentStatus.FAILED and snapshot.status == payment.status:
        return  # nothing tells this notice from the one already counted
    risk_record_event(
        order=payment.order, event="payment_failed", card_fingerprint=snapshot.card_fingerprint, attempt=attempt
    )
    order_event_record(
        order=payment.order,
        type="payment_failed",
        actor=actor,
        note=snapshot.failure_message,
        data={"payment": snapshot.ref, "attempt": attempt, "card": snapshot.card_fingerprint},
    )


def webhook_process(*, provider_name: str, payload: bytes, headers: dict[str, str]) -> str:
    """Verify, record once, and apply a provider notification. Returns what happened.

    Raises WebhookRejected (nothing recorded) when the notification fails verification.
    Each event id is acted on at most once: the unique WebhookEvent row is written in the
    same transaction as its effects, so a redelivery either sees it or waits for it.
    """
    provider = get_provider(provider_name)
    notice = provider.parse_webhook(payload=payload, headers=headers)
    if notice.payment is not None and notice.payment.status == PaymentStatus.SUCCEEDED and not notice.payment.radar:
        notice = _with_charge_details(provider, notice)
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                provider=provider_name,
                event_id=notice.event_id,
                event_type=notice.event_type,
                payment_ref=notice.payment.ref if notice.payment else "",
            )
            if notice.fraud is not None:
                from riskengine.feedback import fraud_signal_apply

                outcome = fraud_signal_apply(provider_name=provider_name, signal=notice.fraud)
            elif notice.payment is None:
                outcome = "ignored"
            else:
                snapshot = notice.payment
                if snapshot.status == PaymentStatus.FAILED and not snapshot.attempt_ref:
                    # each failure notification is one attempt (redeliveries stopped above by the event id)
                    snapshot = replace(snapshot, attempt_ref=f"event:{notice.event_id}")
                applied = payment_apply_snapshot(
                    provider_name=provider_name, snapshot=snapshot, actor=f"{provider_name}:webhook"
                )
                outcome = "applied" if applied else "unknown_payment"
            event.outcome = outcome
            event.save(update_fields=["outcome"])
    except IntegrityError:
        if WebhookEvent.objects.filter(provider=provider_name, event_id=notice.event_id).exists():
            return "duplicate"
        raise
    return outcome


def _with_charge_details(provider: PaymentProvider, notice: WebhookNotice) -> WebhookNotice:
    """Events carry the charge as an id: fetch it expanded (card, Radar) before deciding. Best effort."""
    if not Payment.objects.filter(provider=provider.name, provider_ref=notice.payment.ref).exists():
        return notice
    try:
        fetched = provider.fetch_payment(ref=notice.payment.ref)
    except PaymentError:
        logger.warning("could not fetch charge details for %s; Radar not assessed", notice.payment.ref)
        return notice
    merged = replace(
        notice.payment,
        card_fingerprint=fetched.card_fingerprint,
        card_country=fetched.card_country,
        billing_country=fetched.billing_country,
        radar=fetched.radar,
    )
    return replace(notice, payment=merged)
