"""Payment business actions. Provider calls never run inside a database transaction.

Every way a payment's outcome reaches us (the shopper's confirmation, a webhook, reconciliation)
ends in `payment_apply_snapshot`, which locks the order, then the payment, and applies the provider's
view once: whichever arrives first acts, the others find nothing left to do.
"""

import logging
from dataclasses import dataclass, replace
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import RedisError

from fulfillment.keys import keys_reserve_for_order
from orders.models import Order, OrderEvent, OrderStatus
from orders.services import PaymentSignals, order_mark_paid
from orders.status import order_event_record, order_lock
from payments.health import provider_call
from payments.models import Payment, PaymentChannel, PaymentStatus, WebhookEvent
from payments.providers import provider_for_channel
from payments.providers.base import (
    PaymentDeclined,
    PaymentError,
    PaymentProvider,
    PaymentRequest,
    PaymentSnapshot,
    ShipTo,
    WebhookNotice,
)
from payments.routing import ChannelOffer, channels_for_order
from riskengine.models import RiskDecision
from riskengine.services import risk_check_before_payment, risk_record_event

logger = logging.getLogger(__name__)

REUSABLE = (PaymentStatus.CREATED, PaymentStatus.REQUIRES_ACTION)
PAID = (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)


class OrderNotPayable(Exception):
    pass


class PaymentBlocked(Exception):
    """The risk screen refused to start a payment (blocklist, card testing). Shown to the shopper generically."""


class OrderOutOfStock(Exception):
    """Keys for the order could not be reserved: the shopper is told before paying."""


class NoChannelAvailable(PaymentError):
    """No channel can take this order now (none eligible, or every one failed)."""


def payment_channel_for(payment: Payment) -> PaymentChannel:
    """The channel a payment was made through (payments from before channels: the provider's own channel)."""
    if payment.channel_id:
        return payment.channel
    return PaymentChannel.objects.get(code=payment.provider)


@dataclass(frozen=True)
class PaymentStart:
    payment: Payment
    failed_channels: tuple[PaymentChannel, ...] = ()  # ranked above `payment`'s and failing just now


def payment_start_for_order(*, order: Order, channel: PaymentChannel | None = None) -> Payment:
    """The order's open payment (see `payment_open_for_order`)."""
    return payment_open_for_order(order=order, channel=channel).payment


def payment_open_for_order(*, order: Order, channel: PaymentChannel | None = None) -> PaymentStart:
    """Reserve the order's keys and return its open payment, on `channel` or the best channel that answers.

    Channels are tried in the router's order; one that fails to create the payment (refused, timed out,
    an error) is recorded against its health and the next is tried, so the shopper is offered the next
    channel without re-entering anything. Provider calls carry an idempotency key per order, channel and
    attempt, so a retried request never creates two payments for one order at one provider.
    """
    if order.status != OrderStatus.PENDING_PAYMENT:
        raise OrderNotPayable(order.number)
    offers = channels_for_order(order=order)
    if channel is not None:
        offers = [offer for offer in offers if offer.channel.pk == channel.pk]
    if not offers:
        raise NoChannelAvailable("No payment method is available for this order right now.")
    open_payments = {
        p.channel_id: p
        for p in Payment.objects.filter(order=order, status__in=REUSABLE, amount=order.total_amount).order_by(
            "created_at"
        )
    }
    for offer in offers:
        existing = open_payments.get(offer.channel.pk)
        if existing is not None:
            keys_reserve_for_order(order=order)  # extends the hold while the shopper is paying
            return PaymentStart(payment=existing)
    screening = risk_check_before_payment(order=order)
    if screening.decision == RiskDecision.DECLINE:
        raise PaymentBlocked(order.number)
    if not keys_reserve_for_order(order=order):
        raise OrderOutOfStock(order.number)
    failure: PaymentError | None = None
    failed: list[PaymentChannel] = []
    for offer in offers:
        try:
            payment = _payment_create(order=order, offer=offer, risk=(screening.score, screening.decision))
            return PaymentStart(payment=payment, failed_channels=tuple(failed))
        except PaymentDeclined:
            raise
        except PaymentError as exc:
            logger.warning("order %s: channel %s could not open a payment (%s)", order.number, offer.channel.code, exc)
            failure = exc
            failed.append(offer.channel)
    raise NoChannelAvailable("Payment is unavailable right now; please try again in a moment.") from failure


def _payment_create(*, order: Order, offer: ChannelOffer, risk: tuple[int, str]) -> Payment:
    channel = offer.channel
    provider = provider_for_channel(channel)
    attempt = Payment.objects.filter(order=order, channel=channel).count() + 1
    with provider_call(channel=channel, operation="create_payment", order=order):
        snapshot = provider.create_payment(
            PaymentRequest(
                order_number=order.number,
                amount=order.total_amount,
                currency=order.currency,
                email=order.email,
                idempotency_key=f"order-{order.number}-{channel.code}-payment-{attempt}",
                metadata={"risk_score": str(risk[0]), "risk_band": risk[1]},
                description=f"Order {order.number}",
                return_url=settings.SITE_URL + reverse("pay-return", kwargs={"token": order.token}),
                cancel_url=settings.SITE_URL
                + reverse("pay", kwargs={"token": order.token})
                + f"?cancelled={channel.code}",
                ship_to=_ship_to(order),
                locale=order.locale,
            )
        )
    payment, _ = Payment.objects.get_or_create(
        provider=provider.name,
        provider_ref=snapshot.ref,
        defaults={
            "order": order,
            "channel": channel,
            "amount": order.total_amount,
            "currency": order.currency,
            "client_secret": snapshot.client_secret,
            "approval_url": snapshot.approval_url,
            "expected_fee": offer.expected_fee,
            "status": snapshot.status if snapshot.status in REUSABLE else PaymentStatus.CREATED,
        },
    )
    return payment


def _ship_to(order: Order) -> ShipTo | None:
    if not order.ship_line1:
        return None
    return ShipTo(
        name=order.ship_name,
        line1=order.ship_line1,
        line2=order.ship_line2,
        city=order.ship_city,
        postal_code=order.ship_postal_code,
        country=order.ship_country,
    )


def payment_confirm_card(*, payment: Payment, card_token: str) -> Payment:
    """Confirm a Stripe payment with a card tokenised by Stripe.js, and apply the result at once.

    A success is applied through the same idempotent path as the webhook, so whichever arrives first
    delivers and the other is a no-op.

    A payment still waiting on a bank check (3-D Secure) that the shopper left unfinished is asked about
    first: if it was paid meanwhile, that stands; otherwise it is retired and the card goes on a new payment.
    """
    if payment.status == PaymentStatus.REQUIRES_ACTION:
        payment = _payment_replace_unfinished(payment=payment)
        if payment.status in PAID:
            return payment
    return payment_capture(payment=payment, card_token=card_token)


def _payment_replace_unfinished(*, payment: Payment) -> Payment:
    channel = payment_channel_for(payment)
    with provider_call(channel=channel, operation="fetch", order=payment.order):
        snapshot = provider_for_channel(channel).fetch_payment(ref=payment.provider_ref)
    if snapshot.status == PaymentStatus.REQUIRES_ACTION:
        snapshot = replace(snapshot, status=PaymentStatus.FAILED, failure_message="The bank check was not completed.")
    payment_apply_snapshot(provider_name=payment.provider, snapshot=snapshot, actor="shopper:new-card")
    payment.refresh_from_db()
    if payment.status in PAID:
        return payment
    return payment_start_for_order(order=Order.objects.get(pk=payment.order_id), channel=channel)


def payment_capture(*, payment: Payment, card_token: str = "", actor: str = "") -> Payment:
    """Take the money: Stripe with the shopper's card token, PayPal once the buyer approved. Then apply it.

    The capture carries an idempotency key per payment, so the return page, the approval webhook and
    reconciliation may all capture the same PayPal order and it is taken once.
    """
    channel = payment_channel_for(payment)
    provider = provider_for_channel(channel)
    actor = actor or f"{payment.provider}:confirm"
    try:
        with provider_call(channel=channel, operation="capture", order=payment.order):
            snapshot = provider.capture(
                ref=payment.provider_ref,
                # one confirmation per card: a retry of the same request replays, a new card is a new attempt
                idempotency_key=f"capture-{payment.pk}-{card_token}" if card_token else f"capture-{payment.pk}",
                card_token=card_token,
            )
    except PaymentDeclined:
        _record_decline(payment=payment, channel=channel, provider=provider, actor=actor)
        raise
    payment_apply_snapshot(provider_name=payment.provider, snapshot=snapshot, actor=actor)
    payment.refresh_from_db()
    return payment


def payment_refresh(*, payment: Payment, actor: str, min_interval: timedelta = timedelta(seconds=1)) -> Payment:
    """Ask the provider how a payment that waits on the shopper's bank stands, and apply it (for the order page
    the shopper lands on after 3-D Secure, before or without a webhook). At most once per `min_interval` per
    payment; a provider that cannot be reached leaves the payment as it was."""
    if payment.status != PaymentStatus.REQUIRES_ACTION or not _first_ask_within(payment, min_interval):
        return payment
    if not Payment.objects.filter(pk=payment.pk, updated_at=payment.updated_at).update(updated_at=timezone.now()):
        return payment  # another request is asking right now
    channel = payment_channel_for(payment)
    try:
        with provider_call(channel=channel, operation="fetch", order=payment.order):
            snapshot = provider_for_channel(channel).fetch_payment(ref=payment.provider_ref)
    except PaymentError:
        return payment
    payment_apply_snapshot(provider_name=payment.provider, snapshot=snapshot, actor=actor)
    payment.refresh_from_db()
    return payment


def _first_ask_within(payment: Payment, interval: timedelta) -> bool:
    """Whether nobody asked about this payment within `interval` (a page reloaded in a loop must not hammer the
    provider and open its breaker for every shopper). The cache counts; without it, the payment's own clock."""
    try:
        return cache.add(f"payment-refresh:{payment.pk}", 1, timeout=max(1, round(interval.total_seconds())))
    except RedisError:
        return payment.updated_at <= timezone.now() - interval


def _record_decline(*, payment: Payment, channel: PaymentChannel, provider: PaymentProvider, actor: str) -> None:
    """Record the declined attempt (velocity, events) and retire this payment, so the next attempt is
    screened again: card testing through our own pay endpoint is counted like any other failure."""
    try:
        with provider_call(channel=channel, operation="fetch", order=payment.order):
            failed = provider.fetch_payment(ref=payment.provider_ref)
    except PaymentError:
        return
    if failed.status != PaymentStatus.FAILED:
        failed = replace(failed, status=PaymentStatus.FAILED, failure_message="declined")
    payment_apply_snapshot(provider_name=payment.provider, snapshot=failed, actor=actor)


def payment_find(*, provider_name: str, ref: str = "", capture_ref: str = "") -> Payment | None:
    """Our payment for a provider's payment id, or for its capture/charge id."""
    if ref:
        found = Payment.objects.filter(provider=provider_name, provider_ref=ref).first()
        if found is not None:
            return found
    if capture_ref:
        return Payment.objects.filter(provider=provider_name, capture_ref=capture_ref).first()
    return None


@transaction.atomic
def payment_apply_snapshot(*, provider_name: str, snapshot: PaymentSnapshot, actor: str) -> Payment | None:
    """Bring our Payment (and its order) in line with the provider's view of it. Idempotent.

    Locks the order, then the payment (the order every writer uses). A success pays the order once;
    a second success for an order already paid, or for one that was cancelled meanwhile, is marked a
    duplicate and refunded after commit, so no shopper pays twice.
    """
    found = payment_find(provider_name=provider_name, ref=snapshot.ref, capture_ref=snapshot.capture_ref)
    if found is None:
        logger.warning("%s payment %s is not one of ours; ignored", provider_name, snapshot.ref or snapshot.capture_ref)
        return None
    order_lock(order_id=found.order_id)
    payment = Payment.objects.select_for_update().get(pk=found.pk)
    if payment.status in PAID:
        _note_fee(payment, snapshot)
        return payment
    if snapshot.status == PaymentStatus.FAILED:
        _record_failed_attempt(payment=payment, snapshot=snapshot, actor=actor)
    if payment.status == snapshot.status:
        return payment
    payment.status = snapshot.status
    payment.failure_message = snapshot.failure_message
    payment.amount_received = snapshot.amount_received or None
    payment.capture_ref = snapshot.capture_ref or payment.capture_ref
    if snapshot.approval_url:
        payment.approval_url = snapshot.approval_url
    fields = ["status", "failure_message", "amount_received", "capture_ref", "approval_url", "updated_at"]
    if snapshot.status == PaymentStatus.SUCCEEDED:
        payment.succeeded_at = timezone.now()
        payment.actual_fee = snapshot.fee if snapshot.fee is not None else payment.actual_fee
        fields += ["succeeded_at", "actual_fee"]
    payment.save(update_fields=fields)
    if snapshot.status == PaymentStatus.SUCCEEDED:
        _payment_succeeded(payment=payment, snapshot=snapshot, actor=actor)
    return payment


def _note_fee(payment: Payment, snapshot: PaymentSnapshot) -> None:
    """A later notice may carry facts the first lacked (the fee, the capture id)."""
    changed = []
    if snapshot.fee is not None and payment.actual_fee is None and snapshot.status == PaymentStatus.SUCCEEDED:
        payment.actual_fee = snapshot.fee
        changed.append("actual_fee")
    if snapshot.capture_ref and not payment.capture_ref:
        payment.capture_ref = snapshot.capture_ref
        changed.append("capture_ref")
    if changed:
        payment.save(update_fields=[*changed, "updated_at"])


def _payment_succeeded(*, payment: Payment, snapshot: PaymentSnapshot, actor: str) -> None:
    from payments.tasks import refund_duplicate_payment

    order = payment.order
    already_paid = Payment.objects.filter(order=order, status__in=PAID, duplicate=False).exclude(pk=payment.pk).exists()
    if already_paid or order.status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED):
        Payment.objects.filter(pk=payment.pk).update(duplicate=True)
        why = "the order was already paid" if already_paid else f"the order is {order.status}"
        order_event_record(
            order=order,
            type="duplicate_payment",
            actor=actor,
            note=f"A second payment arrived ({why}); it is refunded.",
            data={"payment": payment.provider_ref, "amount": snapshot.amount_received},
        )
        transaction.on_commit(lambda: refund_duplicate_payment.delay(payment.pk), robust=True)
        return
    order_mark_paid(
        order_id=payment.order_id,
        amount=snapshot.amount_received,
        currency=snapshot.currency,
        payment_ref=snapshot.ref,
        actor=actor,
        signals=PaymentSignals(
            card_fingerprint=snapshot.card_fingerprint,
            card_country=snapshot.card_country,
            billing_country=snapshot.billing_country or snapshot.payer_country,
            radar=snapshot.radar,
        ),
    )


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


def webhook_process(*, channel: PaymentChannel, payload: bytes, headers: dict[str, str]) -> str:
    """Verify, record once, and apply a provider notification. Returns what happened.

    Raises WebhookRejected (nothing recorded) when the notification fails verification.
    Each event id is acted on at most once: the unique WebhookEvent row is written in the
    same transaction as its effects, so a redelivery either sees it or waits for it.
    """
    from payments.disputes import fraud_notice_apply
    from payments.refunds import refund_notice_apply

    provider = provider_for_channel(channel)
    notice = provider.parse_webhook(payload=payload, headers=headers)
    if WebhookEvent.objects.filter(provider=provider.name, event_id=notice.event_id).exists():
        return "duplicate"
    notice = _with_provider_facts(channel, provider, notice)
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                provider=provider.name,
                channel=channel,
                event_id=notice.event_id,
                event_type=notice.event_type,
                payment_ref=_notice_ref(notice),
            )
            if notice.fraud is not None:
                outcome = fraud_notice_apply(provider_name=provider.name, signal=notice.fraud)
            elif notice.refund is not None:
                outcome = refund_notice_apply(provider_name=provider.name, notice=notice.refund)
            elif notice.payment is None:
                outcome = "ignored"
            else:
                snapshot = notice.payment
                if snapshot.status == PaymentStatus.FAILED and not snapshot.attempt_ref:
                    # each failure notification is one attempt (redeliveries stopped above by the event id)
                    snapshot = replace(snapshot, attempt_ref=f"event:{notice.event_id}")
                applied = payment_apply_snapshot(
                    provider_name=provider.name, snapshot=snapshot, actor=f"{provider.name}:webhook"
                )
                outcome = "applied" if applied else "unknown_payment"
            event.outcome = outcome
            event.save(update_fields=["outcome"])
    except IntegrityError:
        if WebhookEvent.objects.filter(provider=provider.name, event_id=notice.event_id).exists():
            return "duplicate"
        raise
    return outcome


def _notice_ref(notice: WebhookNotice) -> str:
    if notice.payment is not None:
        return notice.payment.ref or notice.payment.capture_ref
    if notice.refund is not None:
        return notice.refund.payment_ref or notice.refund.capture_ref
    if notice.fraud is not None:
        return notice.fraud.payment_ref or notice.fraud.capture_ref
    return notice.approved_ref


def _with_provider_facts(channel: PaymentChannel, provider: PaymentProvider, notice: WebhookNotice) -> WebhookNotice:
    """Before deciding, ask the provider what the event only points at. Best effort, outside transactions.

    A Stripe success carries its charge as an id: fetch it expanded (card, Radar, fee). A PayPal
    approval means nobody captured yet: capture now (idempotent with the return page's capture).
    """
    if notice.approved_ref:
        payment = payment_find(provider_name=provider.name, ref=notice.approved_ref)
        if payment is None or payment.status in PAID:
            return notice
        try:
            with provider_call(channel=channel, operation="capture", order=payment.order):
                captured = provider.capture(ref=payment.provider_ref, idempotency_key=f"capture-{payment.pk}")
        except PaymentError as exc:
            logger.warning("paypal order %s approved but not captured yet: %s", notice.approved_ref, exc)
            return notice
        return replace(notice, payment=captured)
    payment = notice.payment
    if payment is None or payment.status != PaymentStatus.SUCCEEDED or (payment.radar and payment.fee is not None):
        return notice
    if (
        provider.name != "stripe"
        or not Payment.objects.filter(provider=provider.name, provider_ref=payment.ref).exists()
    ):
        return notice
    if channel.breaker_open():  # the provider keeps failing: decide without Radar rather than wait on it again
        logger.warning("channel %s breaker open; charge details for %s not fetched", channel.code, payment.ref)
        return notice
    try:
        with provider_call(channel=channel, operation="fetch"):
            fetched = provider.fetch_payment(ref=payment.ref)
    except PaymentError:
        logger.warning("could not fetch charge details for %s; Radar not assessed", payment.ref)
        return notice
    merged = replace(
        payment,
        card_fingerprint=fetched.card_fingerprint,
        card_country=fetched.card_country,
        billing_country=fetched.billing_country,
        radar=fetched.radar,
        fee=fetched.fee,
        capture_ref=fetched.capture_ref or payment.capture_ref,
    )
    return replace(notice, payment=merged)
