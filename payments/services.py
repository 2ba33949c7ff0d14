"""Payments: open one on the best channel, ask the provider about it, record what it says.

Provider calls never run inside a database transaction. What a payment's outcome means for the order
(paid, scored, delivered, held, a duplicate refunded) is the flow layer's: storefront.flow.payment.
"""

import logging
from dataclasses import dataclass, replace
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import RedisError

from orders.models import Order, OrderStatus
from orders.subscriptions import order_renewing_line
from payments.health import provider_call
from payments.models import Payment, PaymentChannel, PaymentStatus, WebhookEvent
from payments.providers import provider_for_channel
from payments.providers.base import (
    PaymentDeclined,
    PaymentError,
    PaymentRequest,
    PaymentSnapshot,
    ShipTo,
    WebhookNotice,
)
from payments.routing import ChannelOffer, channels_for_order
from payments.signals import webhook_received

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


def payment_offers(*, order: Order, channel: PaymentChannel | None = None) -> list[ChannelOffer]:
    """The channels that can take this order now, best first (only `channel`, when given)."""
    if order.status != OrderStatus.PENDING_PAYMENT:
        raise OrderNotPayable(order.number)
    offers = channels_for_order(order=order)
    if channel is not None:
        offers = [offer for offer in offers if offer.channel.pk == channel.pk]
    if not offers:
        raise NoChannelAvailable("No payment method is available for this order right now.")
    return offers


def payments_of(order: Order) -> list[Payment]:
    """The order's payments, oldest first (none, without asking, for an order placed in this request:
    payments_none_yet)."""
    known = getattr(order, "_prefetched_objects_cache", {}).get("payments")
    if known is not None:
        return list(known)
    return list(Payment.objects.filter(order=order).order_by("created_at", "pk"))


def payments_known_none(order: Order) -> bool:
    """Whether the order is known (without asking) to have no payment: placed in this request, not yet paid for."""
    known = getattr(order, "_prefetched_objects_cache", {}).get("payments")
    return known is not None and not list(known)


def payments_none_yet(order: Order) -> None:
    """An order just created has no payment: remember that instead of asking (until its first is created)."""
    cached = order.payments.none()
    cached._result_cache, cached._prefetch_done = [], True
    order._prefetched_objects_cache = {**getattr(order, "_prefetched_objects_cache", {}), "payments": cached}


def payment_open_existing(*, order: Order, offers: list[ChannelOffer]) -> Payment | None:
    """The order's payment still open on the best of these channels, for its current total."""
    open_payments = {
        p.channel_id: p for p in payments_of(order) if p.status in REUSABLE and p.amount == order.total_amount
    }
    for offer in offers:
        if offer.channel.pk in open_payments:
            return open_payments[offer.channel.pk]
    return None


def payment_create_on_first_channel(*, order: Order, offers: list[ChannelOffer], risk: tuple[int, str]) -> PaymentStart:
    """Create the payment on the first channel that answers.

    Channels are tried in the router's order; one that fails to create the payment (refused, timed out,
    an error) is recorded against its health and the next is tried, so the shopper is offered the next
    channel without re-entering anything. Provider calls carry an idempotency key per order, channel and
    attempt, so a retried request never creates two payments for one order at one provider.
    """
    failure: PaymentError | None = None
    failed: list[PaymentChannel] = []
    for offer in offers:
        try:
            payment = _payment_create(order=order, offer=offer, risk=risk)
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
    attempt = sum(1 for p in payments_of(order) if p.channel_id == channel.pk) + 1
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
    try:  # outside any transaction, like every provider call: a failed insert spoils nothing
        payment = Payment.objects.create(
            provider=provider.name,
            provider_ref=snapshot.ref,
            order=order,
            channel=channel,
            amount=order.total_amount,
            currency=order.currency,
            client_secret=snapshot.client_secret,
            approval_url=snapshot.approval_url,
            expected_fee=offer.expected_fee,
            status=snapshot.status if snapshot.status in REUSABLE else PaymentStatus.CREATED,
        )
    except IntegrityError:  # the provider replayed a payment we recorded already (an idempotent retry)
        return Payment.objects.get(provider=provider.name, provider_ref=snapshot.ref)
    getattr(order, "_prefetched_objects_cache", {}).pop("payments", None)  # it has one now: ask from here on
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


def payment_fetch(*, payment: Payment) -> PaymentSnapshot:
    """The provider's view of a payment now (raises PaymentError when it cannot be asked)."""
    channel = payment_channel_for(payment)
    with provider_call(channel=channel, operation="fetch", order=payment.order):
        return provider_for_channel(channel).fetch_payment(ref=payment.provider_ref)


def payment_capture_at_provider(*, payment: Payment, card_token: str = "") -> PaymentSnapshot:
    """Take the money: Stripe with the shopper's card token, PayPal once the buyer approved.

    The capture carries an idempotency key per payment (and card), so the return page, the approval webhook
    and reconciliation may all capture the same PayPal order and it is taken once. Raises PaymentDeclined.
    """
    channel = payment_channel_for(payment)
    # a product sold by period keeps the card for its renewals
    save_card_for = payment.order.email if card_token and order_renewing_line(payment.order) else ""
    with provider_call(channel=channel, operation="capture", order=payment.order):
        return provider_for_channel(channel).capture(
            ref=payment.provider_ref,
            # one confirmation per card: a retry of the same request replays, a new card is a new attempt
            idempotency_key=f"capture-{payment.pk}-{card_token}" if card_token else f"capture-{payment.pk}",
            card_token=card_token,
            save_card_for=save_card_for,
        )


def payment_declined_snapshot(*, payment: Payment) -> PaymentSnapshot | None:
    """The provider's record of a declined attempt (card, attempt id), marked failed; None if unreachable."""
    try:
        failed = payment_fetch(payment=payment)
    except PaymentError:
        return None
    if failed.status != PaymentStatus.FAILED:
        failed = replace(failed, status=PaymentStatus.FAILED, failure_message="declined")
    return failed


def payment_refresh_due(*, payment: Payment, min_interval: timedelta) -> bool:
    """Whether to ask the provider about a payment waiting on the shopper's bank now: at most once per
    `min_interval` per payment, and one request at a time (a page reloaded in a loop must not hammer the
    provider and open its breaker for every shopper). The cache counts; without it, the payment's own clock."""
    if payment.status != PaymentStatus.REQUIRES_ACTION:
        return False
    try:
        first = cache.add(f"payment-refresh:{payment.pk}", 1, timeout=max(1, round(min_interval.total_seconds())))
    except RedisError:
        first = payment.updated_at <= timezone.now() - min_interval
    if not first:
        return False
    return bool(Payment.objects.filter(pk=payment.pk, updated_at=payment.updated_at).update(updated_at=timezone.now()))


def payment_find(*, provider_name: str, ref: str = "", capture_ref: str = "") -> Payment | None:
    """Our payment for a provider's payment id, or for its capture/charge id."""
    if ref:
        found = Payment.objects.filter(provider=provider_name, provider_ref=ref).first()
        if found is not None:
            return found
    if capture_ref:
        return Payment.objects.filter(provider=provider_name, capture_ref=capture_ref).first()
    return None


def payment_lock(*, payment_id: int) -> Payment:
    """Load a payment under a row lock (after its order's: the order every writer uses)."""
    return Payment.objects.select_for_update().get(pk=payment_id)


def payment_record_snapshot(*, payment: Payment, snapshot: PaymentSnapshot) -> bool:
    """Write the provider's view onto a locked payment not yet paid. Returns whether anything changed."""
    if payment.status == snapshot.status:
        return False
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
    return True


def payment_lock_with_siblings(*, order_id: int, payment_id: int) -> tuple[Payment, list[Payment]]:
    """A payment and the order's other payments, locked in one query (after the order's lock)."""
    payments = list(Payment.objects.select_for_update().filter(order_id=order_id).order_by("pk"))
    payment = next(p for p in payments if p.pk == payment_id)
    return payment, [p for p in payments if p.pk != payment_id]


def payment_is_duplicate(*, payment: Payment, siblings: list[Payment]) -> bool:
    """Whether another payment of the order already paid it."""
    return any(p.status in PAID and not p.duplicate for p in siblings)


def payment_mark_duplicate(*, payment: Payment) -> None:
    Payment.objects.filter(pk=payment.pk).update(duplicate=True)
    payment.duplicate = True


def payment_note_fee(*, payment: Payment, snapshot: PaymentSnapshot) -> None:
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


def webhook_notice_read(*, channel: PaymentChannel, payload: bytes, headers: dict[str, str]) -> WebhookNotice:
    """Verify and parse a provider notification; raises WebhookRejected (nothing recorded) when it fails."""
    provider = provider_for_channel(channel)
    notice = provider.parse_webhook(payload=payload, headers=headers)
    webhook_received.send(sender=WebhookNotice, provider=provider.name, sent_at=notice.sent_at)
    return notice


def webhook_seen(*, provider_name: str, event_id: str) -> bool:
    return WebhookEvent.objects.filter(provider=provider_name, event_id=event_id).exists()


def webhook_event_record(*, channel: PaymentChannel, notice: WebhookNotice, outcome: str) -> WebhookEvent:
    """The unique row that makes a notification act once, written last in the transaction that acted on it: a
    concurrent delivery of the same event waits on it and fails (IntegrityError), undoing its own work."""
    return WebhookEvent.objects.create(
        provider=provider_for_channel(channel).name,
        channel=channel,
        event_id=notice.event_id,
        event_type=notice.event_type,
        payment_ref=_notice_ref(notice),
        outcome=outcome,
    )


def _notice_ref(notice: WebhookNotice) -> str:
    if notice.payment is not None:
        return notice.payment.ref or notice.payment.capture_ref
    if notice.refund is not None:
        return notice.refund.payment_ref or notice.refund.capture_ref
    if notice.fraud is not None:
        return notice.fraud.payment_ref or notice.fraud.capture_ref
    return notice.approved_ref


def webhook_with_provider_facts(
    *, channel: PaymentChannel, notice: WebhookNotice, ours: Payment | None
) -> WebhookNotice:
    """Before deciding, ask the provider what the event only points at. Best effort, outside transactions.

    A Stripe success carries its charge as an id: fetch it expanded (card, Radar, fee), unless it is not one of
    our payments (`ours`, found by the caller) or we already know it all (paid, with its fee). A PayPal
    approval means nobody captured yet: capture now (idempotent with the return page's capture).
    """
    provider = provider_for_channel(channel)
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
    if provider.name != "stripe" or ours is None or (ours.status in PAID and ours.actual_fee is not None):
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
