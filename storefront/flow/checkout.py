"""Checkout: place the order, open its payment, take the shopper's card or PayPal approval.

Screening for card testing and holding the order's keys happen here, between asking which channels can
take the order and asking a provider for the payment, so a blocked shopper never reaches a provider and a
sold-out product is refused before anyone pays.
"""

from dataclasses import replace
from datetime import timedelta

from django.db import transaction

from fulfillment.keys import keys_reserve_for_order
from orders.models import Order
from orders.services import order_create
from payments.models import Payment, PaymentChannel, PaymentStatus
from payments.providers.base import PaymentDeclined, PaymentError
from payments.services import (
    PAID,
    OrderOutOfStock,
    PaymentBlocked,
    PaymentStart,
    payment_capture_at_provider,
    payment_channel_for,
    payment_create_on_first_channel,
    payment_declined_snapshot,
    payment_fetch,
    payment_offers,
    payment_open_existing,
    payment_refresh_due,
    payments_known_none,
    payments_none_yet,
)
from riskengine.models import RiskDecision
from riskengine.services import risk_check_before_payment, risk_record_event
from storefront.flow.free_orders import free_order_complete
from storefront.flow.payment import payment_apply_snapshot
from storefront.logs import bind_order


@transaction.atomic
def checkout_create_order(**details) -> Order:
    """Create the pending order (orders.services.order_create takes these `details`: lines, email, shipping,
    locale, purchase IP, user agent, device, coupon) and count it for the risk engine's velocity.

    An order that costs nothing (a free product, a coupon that takes everything) skips the payment step: it is
    screened and released at once (flow.free_orders), and comes back no longer pending payment. A free trial
    costs nothing today but still asks for the card it renews with (flow.trials)."""
    order = order_create(**details)
    bind_order(order.number)
    risk_record_event(order=order, event="order_placed")
    payments_none_yet(order)
    if order.total_amount == 0 and not order.trial_days:
        order = free_order_complete(order=order)
    return order


def payment_start_for_order(*, order: Order, channel: PaymentChannel | None = None) -> Payment:
    """The order's open payment (see `payment_open_for_order`)."""
    return payment_open_for_order(order=order, channel=channel).payment


def payment_open_for_order(*, order: Order, channel: PaymentChannel | None = None) -> PaymentStart:
    """Reserve the order's keys and return its open payment, on `channel` or the best channel that answers.

    A payment already open is reused (its keys' hold extended). Otherwise the risk screen runs first
    (PaymentBlocked), then the keys are held (OrderOutOfStock), then the channels are asked in turn.
    """
    bind_order(order.number)
    offers = payment_offers(order=order, channel=channel)
    existing = payment_open_existing(order=order, offers=offers)
    if existing is not None:
        keys_reserve_for_order(order=order)  # extends the hold while the shopper is paying
        return PaymentStart(payment=existing)
    screening = risk_check_before_payment(order=order)
    if screening.decision == RiskDecision.DECLINE:
        raise PaymentBlocked(order.number)
    if not keys_reserve_for_order(order=order, first_hold=payments_known_none(order)):
        raise OrderOutOfStock(order.number)
    return payment_create_on_first_channel(order=order, offers=offers, risk=(screening.score, screening.decision))


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
    snapshot = payment_fetch(payment=payment)
    if snapshot.status == PaymentStatus.REQUIRES_ACTION:
        snapshot = replace(snapshot, status=PaymentStatus.FAILED, failure_message="The bank check was not completed.")
    payment_apply_snapshot(provider_name=payment.provider, snapshot=snapshot, actor="shopper:new-card")
    payment.refresh_from_db()
    if payment.status in PAID:
        return payment
    return payment_start_for_order(order=Order.objects.get(pk=payment.order_id), channel=payment_channel_for(payment))


def payment_capture(*, payment: Payment, card_token: str = "", actor: str = "") -> Payment:
    """Take the money (payments.services.payment_capture_at_provider), then apply it.

    A declined card is recorded (velocity, events) and this payment retired, so the next attempt is screened
    again: card testing through our own pay endpoint is counted like any other failure. PaymentDeclined is
    raised for the page to show.
    """
    actor = actor or f"{payment.provider}:confirm"
    try:
        snapshot = payment_capture_at_provider(payment=payment, card_token=card_token)
    except PaymentDeclined:
        failed = payment_declined_snapshot(payment=payment)
        if failed is not None:
            payment_apply_snapshot(provider_name=payment.provider, snapshot=failed, actor=actor)
        raise
    payment_apply_snapshot(provider_name=payment.provider, snapshot=snapshot, actor=actor)
    payment.refresh_from_db()
    return payment


def payment_refresh(*, payment: Payment, actor: str, min_interval: timedelta = timedelta(seconds=1)) -> Payment:
    """Ask the provider how a payment that waits on the shopper's bank stands, and apply it (for the order page
    the shopper lands on after 3-D Secure, before or without a webhook). At most once per `min_interval` per
    payment; a provider that cannot be reached leaves the payment as it was."""
    if not payment_refresh_due(payment=payment, min_interval=min_interval):
        return payment
    try:
        snapshot = payment_fetch(payment=payment)
    except PaymentError:
        return payment
    payment_apply_snapshot(provider_name=payment.provider, snapshot=snapshot, actor=actor)
    payment.refresh_from_db()
    return payment
