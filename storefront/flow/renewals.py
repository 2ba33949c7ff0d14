"""Renewals: a subscription's next period is one more order through the same flow as a first purchase.

At a period's end the sweep claims the subscriptions due and hands each to a task (`subscription_renew`). The
task makes the period's order (one per period, whoever asks), then charges the saved card off-session: the
payment is recorded at the provider before it is confirmed, and its outcome goes through
`payment_apply_snapshot` like any other, so the webhook that follows finds nothing left to do. A paid renewal
is scored, delivered (the membership runs to the new period's end) and receipted like any order.

A renewal that fails (a declined card, a bank asking for the shopper, a PayPal subscriber who pays by link) is
tried again on the schedule in SUBSCRIPTION_RETRY_DAYS, each time emailing the shopper a link to pay or change
the card; access lasts through SUBSCRIPTION_GRACE_DAYS. When the schedule is used up the subscription is
cancelled, access ends and the shopper is told.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fulfillment.services import subscription_access_extend
from orders.models import Order, OrderStatus, Subscription
from orders.subscriptions import (
    LIVE,
    REMINDED,
    SavedCard,
    subscription_access_until,
    subscription_card_saved,
    subscription_claim_take,
    subscription_first_order_held,
    subscription_free_period,
    subscription_lock,
    subscription_postpone,
    subscription_reminded,
    subscription_renewal_failed,
    subscription_renewal_order,
    subscriptions_claim_due,
    subscriptions_ending,
    subscriptions_to_remind,
)
from payments.models import Payment, PaymentStatus
from payments.providers.base import PaymentDeclined, PaymentError, PaymentSnapshot
from payments.saved_cards import (
    card_save,
    channel_by_code,
    payment_confirm_off_session,
    payment_open_on_saved_card,
    renewal_attempts,
)
from payments.services import REUSABLE, payment_declined_snapshot, payment_fetch
from storefront.flow.payment import payment_apply_snapshot
from storefront.flow.subscription_end import subscription_email_on_commit, subscription_end

logger = logging.getLogger(__name__)

ACTOR = "subscriptions"
CLAIM_LEASE = timedelta(minutes=10)  # a renewal task lost with its worker is handed out again after this
HELD_RECHECK = timedelta(hours=1)  # a subscription whose first order is held is asked about again after this


def renewals_claim_due(*, now: datetime | None = None, limit: int = 1000) -> list[tuple[int, datetime]]:
    """The sweep's share of work: due subscriptions, claimed (see orders.subscriptions.subscriptions_claim_due)."""
    return subscriptions_claim_due(now=now or timezone.now(), lease=CLAIM_LEASE, limit=limit)


def subscription_renew(*, subscription_id: int, claim: datetime, now: datetime | None = None) -> str:
    """Renew one subscription for its next period, once. Returns what happened: renewed, failed, cancelled,
    waiting (a payment left open for the shopper), unavailable (the provider could not be reached: the claim
    runs out and the sweep tries again), or stale (another task's claim, or nothing due)."""
    now = now or timezone.now()
    with transaction.atomic():
        subscription = subscription_lock(subscription_id)
        if not subscription_claim_take(subscription=subscription, claim=claim, lease=CLAIM_LEASE, now=now):
            return "stale"
        if subscription_first_order_held(subscription):  # a reviewer has still to decide: nothing is charged yet
            subscription_postpone(subscription=subscription, until=now + HELD_RECHECK)
            return "held"
        period = subscription.periods_paid + 1
        order = subscription_renewal_order(subscription=subscription, period=period)
    if order.status != OrderStatus.PENDING_PAYMENT:
        return "stale"  # paid meanwhile (the shopper by link, a webhook): the payment moved the subscription on
    channel = channel_by_code(subscription.channel_code) if subscription.saved_card else None
    if channel is None:  # nothing to charge: the shopper pays from the link (PayPal, or no card kept)
        return _renewal_failed(subscription_id, order, "Waiting for the shopper to pay from the link.", now)
    try:
        payment, snapshot = _charge(subscription, order, channel)
    except PaymentDeclined as exc:
        return _renewal_failed(subscription_id, order, str(exc) or "The card was declined.", now)
    except PaymentError as exc:
        logger.warning("subscription %s: renewal not charged, provider unavailable (%s)", subscription_id, exc)
        return "unavailable"
    payment_apply_snapshot(provider_name=payment.provider, snapshot=snapshot, actor=ACTOR)
    if snapshot.status == PaymentStatus.SUCCEEDED:
        return "renewed"
    reason = snapshot.failure_message or (
        "The bank asks the shopper to confirm this payment."
        if snapshot.status == PaymentStatus.REQUIRES_ACTION
        else "The payment did not go through."
    )
    return _renewal_failed(subscription_id, order, reason, now)


def _charge(subscription: Subscription, order: Order, channel) -> tuple[Payment, PaymentSnapshot]:
    """Charge the saved card for `order`: a payment a previous run opened is asked about first and confirmed
    only if it never was; otherwise a new one is opened (recorded) and confirmed. Raises PaymentError."""
    attempts = renewal_attempts(order)
    open_one = next((p for p in reversed(attempts) if p.status in REUSABLE), None)
    if open_one is not None:
        snapshot = payment_fetch(payment=open_one)
        if snapshot.status != PaymentStatus.CREATED:
            return open_one, snapshot
        return open_one, _confirm(open_one)
    payment = payment_open_on_saved_card(
        order=order,
        channel=channel,
        customer_ref=subscription.customer_ref,
        method_ref=subscription.method_ref,
        attempt=len(attempts) + 1,
    )
    return payment, _confirm(payment)


def _confirm(payment: Payment) -> PaymentSnapshot:
    try:
        return payment_confirm_off_session(payment=payment)
    except PaymentDeclined:
        failed = payment_declined_snapshot(payment=payment)
        if failed is not None:
            payment_apply_snapshot(provider_name=payment.provider, snapshot=failed, actor=ACTOR)
        raise


def _renewal_failed(subscription_id: int, order: Order, reason: str, now: datetime) -> str:
    with transaction.atomic():
        subscription = subscription_lock(subscription_id)
        if subscription.periods_paid >= order.subscription_period or subscription.status not in LIVE:
            return "stale"
        retries = list(settings.SUBSCRIPTION_RETRY_DAYS)
        if subscription_renewal_failed(
            subscription=subscription, period=order.subscription_period, reason=reason, retry_days=retries, now=now
        ):
            subscription_email_on_commit(subscription, "subscription_renewal_failed", order)
            return "failed" if subscription.saved_card else "waiting"
        subscription_end(subscription, note="Not paid after every retry.", actor=ACTOR, now=now)
        return "cancelled"


def subscriptions_end_cancelled(*, now: datetime | None = None) -> int:
    """End the subscriptions set to cancel at period end whose period is over."""
    now = now or timezone.now()
    ended = 0
    for pk in subscriptions_ending(now=now):
        with transaction.atomic():
            subscription = subscription_lock(pk)
            if subscription.current_period_end <= now:
                note = subscription.cancel_reason or "Cancelled at period end."
                ended += subscription_end(subscription, note=note, actor=ACTOR, now=now)
    return ended


def subscriptions_remind(*, now: datetime | None = None) -> int:
    """Email every subscriber whose renewal (or trial's end) comes within SUBSCRIPTION_REMINDER_DAYS, once."""
    now = now or timezone.now()
    sent = 0
    for pk in subscriptions_to_remind(now=now, ahead=timedelta(days=settings.SUBSCRIPTION_REMINDER_DAYS)):
        with transaction.atomic():
            subscription = subscription_lock(pk)
            coming = subscription.periods_paid + 1
            if subscription.reminded_period >= coming or subscription.status not in REMINDED:
                continue
            subscription_reminded(subscription=subscription, period=coming)
            subscription_email_on_commit(subscription, "subscription_reminder")
            sent += 1
    return sent


def subscription_cancel_now(*, subscription_id: int, actor: str, note: str = "") -> Subscription:
    """Staff: cancel at once, access ending now."""
    with transaction.atomic():
        subscription = subscription_lock(subscription_id)
        subscription_end(subscription, note=note or "Cancelled by staff.", actor=actor)
    return subscription


def subscription_give_free_period(*, subscription_id: int, actor: str) -> Subscription:
    """Staff: one period free; access runs to the new period's end (and its grace)."""
    with transaction.atomic():
        subscription = subscription_free_period(subscription=subscription_lock(subscription_id), actor=actor)
        subscription_access_extend(subscription_id=subscription.pk, until=subscription_access_until(subscription))
    return subscription


def subscription_update_card(*, subscription: Subscription, card_token: str, actor: str) -> Subscription:
    """Keep a new card for the coming renewals (a past-due one is tried again with it at once). Stripe only;
    raises PaymentError when the card cannot be kept."""
    channel = channel_by_code(subscription.channel_code) if subscription.channel_code else None
    if channel is None or subscription.provider != "stripe":
        raise PaymentError("This subscription is paid by link; there is no card to change.")
    key = f"subscription-{subscription.pk}-card-{card_token}"
    kept = card_save(channel=channel, email=subscription.email, card_token=card_token, key=key)
    with transaction.atomic():
        locked = subscription_lock(subscription.pk)
        card = SavedCard(
            provider=locked.provider,
            channel_code=locked.channel_code,
            customer_ref=kept.customer_ref,
            method_ref=kept.method_ref,
        )
        return subscription_card_saved(subscription=locked, card=card, actor=actor)
