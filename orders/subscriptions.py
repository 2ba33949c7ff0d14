"""Subscriptions: every change to a subscription happens here, each with its event.

A subscription starts when the first order of a product sold by period is paid, and moves on one period each
time a renewal order (one per period, see `subscription_renewal_order`) is paid. Periods are counted from the
first one's start in calendar months (a subscription begun on 31 January renews on 28 February, then 31 March),
so they never drift. The flow layer (storefront.flow.renewals) decides when to charge and what access follows.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from catalog.models import BillingInterval
from orders.mailbox import email_key
from orders.models import (
    Order,
    OrderEventType,
    OrderLine,
    OrderStatus,
    Subscription,
    SubscriptionEvent,
    SubscriptionEventType,
    SubscriptionStatus,
)
from orders.selectors import order_lines, order_lines_remember
from orders.status import order_event_record

MONTHS = {BillingInterval.MONTH: 1, BillingInterval.QUARTER: 3, BillingInterval.YEAR: 12}
LIVE = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
REMINDED = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE)  # past due: the failure emails say it all


def period_end(*, anchor: datetime, interval: str, periods: int) -> datetime:
    """The end of period number `periods` of a subscription whose first period began at `anchor`."""
    return anchor + relativedelta(months=MONTHS[BillingInterval(interval)] * periods)


def subscription_access_until(subscription: Subscription) -> datetime:
    """When what the subscription gives (a membership, a license key) stops working if nothing more is paid: the
    paid period's end plus the grace that a failed renewal's retries need."""
    return subscription.current_period_end + timedelta(days=settings.SUBSCRIPTION_GRACE_DAYS)


def trial_days_offered(*, product, email: str) -> int:
    """The free trial a checkout of `product` by `email` gets: the product's, once per mailbox (an address that
    subscribed to it before, however written, trial or not, pays from the start). Checked again, locked, when
    the trial starts (`trial_taken`)."""
    if not product.billing_interval or not product.trial_days:
        return 0
    return 0 if trial_taken(product_id=product.pk, email=email) else product.trial_days


def trial_taken(*, product_id: int, email: str, card_fingerprint: str = "", other_than: int | None = None) -> bool:
    """Whether this mailbox (however written), or this card, already subscribed to the product: its free trial
    is used. `other_than`: an order not to count (the one starting now)."""
    mailbox = Q(subscription__mailbox=email_key(email))
    card = Q(card_fingerprint=card_fingerprint) if card_fingerprint else Q(pk__in=[])
    started = Order.objects.filter(mailbox | card, subscription__product_id=product_id).exclude(pk=other_than)
    return started.exists()


def order_renewing_line(order: Order) -> OrderLine | None:
    """The order's line of a product sold by period, if it has one (checkout allows at most one)."""
    return next((line for line in order_lines(order) if line.product.billing_interval), None)


def subscription_lock(subscription_id: int) -> Subscription:
    return Subscription.objects.select_for_update().get(pk=subscription_id)


def _event(subscription: Subscription, type: SubscriptionEventType, *, actor: str, period=None, note: str = ""):
    SubscriptionEvent.objects.create(
        subscription=subscription, type=SubscriptionEventType(type), period=period, actor=actor, note=note[:300]
    )


def _save(subscription: Subscription, *fields: str) -> None:
    subscription.save(update_fields=[*fields, "updated_at"])


@dataclass(frozen=True)
class SavedCard:
    """How renewals are paid: the first payment's provider and channel and, when the card was saved, its refs."""

    provider: str
    channel_code: str = ""
    customer_ref: str = ""
    method_ref: str = ""


def subscription_start(*, order: Order, card: SavedCard, actor: str, now: datetime | None = None) -> Subscription:
    """Start the subscription the order's renewing line buys; its first period begins now. Call with the order
    locked, when it is paid. Idempotent: an order that started one already returns it."""
    if order.subscription_id:
        return order.subscription
    line = order_renewing_line(order)
    if line is None:
        raise ValueError(f"order {order.number} buys nothing sold by period")
    now = now or timezone.now()
    interval = line.product.billing_interval
    # a free trial is period 0: nothing paid yet, the first charge (period 1) falls due when the trial ends
    first = 0 if order.trial_days else 1
    ends = period_end(anchor=now, interval=interval, periods=1) if first else now + timedelta(days=order.trial_days)
    subscription = Subscription.objects.create(
        email=order.email,
        mailbox=email_key(order.email),
        locale=order.locale,
        product=line.product,
        interval=interval,
        quantity=line.quantity,
        unit_price=line.unit_price,
        currency=order.currency,
        provider=card.provider,
        channel_code=card.channel_code,
        customer_ref=card.customer_ref,
        method_ref=card.method_ref,
        status=SubscriptionStatus.TRIALING if first == 0 else SubscriptionStatus.ACTIVE,
        periods_paid=first,
        current_period_start=now,
        current_period_end=ends,
        next_attempt_at=ends,
    )
    Order.objects.filter(pk=order.pk).update(subscription=subscription, subscription_period=first)
    order.subscription, order.subscription_period = subscription, first
    note = f"{order.number}, free trial of {order.trial_days} days" if first == 0 else order.number
    _event(subscription, SubscriptionEventType.STARTED, actor=actor, period=first, note=note)
    return subscription


def _anchor(subscription: Subscription) -> datetime:
    """The first paid period's start, from which every period end is counted (a trial's end, during one)."""
    if subscription.periods_paid == 0:
        return subscription.current_period_end
    return subscription.current_period_start - relativedelta(
        months=MONTHS[BillingInterval(subscription.interval)] * (subscription.periods_paid - 1)
    )


def _advance(subscription: Subscription, *, periods: int) -> None:
    anchor = _anchor(subscription)
    subscription.periods_paid = periods
    subscription.current_period_start = period_end(anchor=anchor, interval=subscription.interval, periods=periods - 1)
    subscription.current_period_end = period_end(anchor=anchor, interval=subscription.interval, periods=periods)
    subscription.next_attempt_at = subscription.current_period_end
    subscription.failed_attempts = 0


def subscription_period_paid(*, order: Order, card: SavedCard | None, actor: str) -> Subscription:
    """A renewal order was paid: the subscription moves to that period (once; a second notice of the same payment
    changes nothing). A subscription that was past due is recovered; a card saved by this payment replaces the
    one on file. Call with the order locked."""
    subscription = subscription_lock(order.subscription_id)
    period = order.subscription_period
    if period <= subscription.periods_paid:
        return subscription
    recovered = subscription.status == SubscriptionStatus.PAST_DUE or subscription.failed_attempts > 0
    _advance(subscription, periods=period)
    if subscription.status != SubscriptionStatus.CANCELLED:
        subscription.status = SubscriptionStatus.ACTIVE
    fields = ["periods_paid", "current_period_start", "current_period_end", "next_attempt_at", "failed_attempts"]
    if card is not None and card.customer_ref and card.method_ref:
        subscription.customer_ref, subscription.method_ref = card.customer_ref, card.method_ref
        fields += ["customer_ref", "method_ref"]
    _save(subscription, "status", *fields)
    kind = SubscriptionEventType.RECOVERED if recovered else SubscriptionEventType.RENEWED
    _event(subscription, kind, actor=actor, period=period, note=order.number)
    return subscription


def subscription_renewal_order(*, subscription: Subscription, period: int) -> Order:
    """The order that pays `period`, created the first time it is asked for: one per period, whoever asks."""
    existing = Order.objects.filter(subscription=subscription, subscription_period=period).first()
    if existing is not None:
        return existing
    product = subscription.product
    try:
        with transaction.atomic():
            order = Order.objects.create(
                email=subscription.email,
                locale=subscription.locale,
                currency=subscription.currency,
                subtotal_amount=subscription.amount,
                total_amount=subscription.amount,
                subscription=subscription,
                subscription_period=period,
            )
            line = OrderLine.objects.create(
                order=order,
                product=product,
                product_name=product.name,
                kind=product.kind,
                unit_price=subscription.unit_price,
                quantity=subscription.quantity,
                line_total=subscription.amount,
            )
            order_event_record(
                order=order,
                type=OrderEventType.ORDER_CREATED,
                actor="subscriptions",
                data={"total": order.total_amount, "subscription": subscription.pk, "period": period},
            )
    except IntegrityError:  # another worker made it first
        return Order.objects.get(subscription=subscription, subscription_period=period)
    order_lines_remember(order, [line])
    return order


def subscriptions_claim_due(*, now: datetime, lease: timedelta, limit: int) -> list[tuple[int, datetime]]:
    """Claim up to `limit` subscriptions whose renewal is due, for the sweep to hand out: each one's next try moves
    `lease` ahead, so the next sweep does not hand it out again while its task waits or runs, and a task that is
    lost is replaced after the lease. Returns (id, claim): a task acts only while the claim is still the one it
    was given. Rows another sweep holds are skipped."""
    claim = now + lease
    with transaction.atomic():
        ids = list(
            Subscription.objects.select_for_update(skip_locked=True)
            .filter(status__in=LIVE, cancel_at_period_end=False, next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        Subscription.objects.filter(pk__in=ids).update(next_attempt_at=claim, updated_at=now)
    return [(pk, claim) for pk in ids]


def subscription_claim_take(*, subscription: Subscription, claim: datetime, lease: timedelta, now: datetime) -> bool:
    """Take the sweep's claim on this (locked) subscription for one task: only while the claim is still the one
    the task was given, and only once (a second task given the same claim finds it taken). The attempt then
    holds it for `lease`; a task lost meanwhile is replaced by the sweep after that."""
    held = (
        subscription.status in LIVE
        and not subscription.cancel_at_period_end
        and subscription.next_attempt_at is not None
        and abs((subscription.next_attempt_at - claim).total_seconds()) < 0.001
    )
    if not held:
        return False
    running = now + lease
    subscription.next_attempt_at = (
        running if abs((running - claim).total_seconds()) >= 1 else claim + timedelta(seconds=1)
    )
    _save(subscription, "next_attempt_at")
    return True


def subscriptions_ending(*, now: datetime) -> list[int]:
    """Subscriptions set to cancel at period end whose period is over."""
    return list(
        Subscription.objects.filter(
            status__in=LIVE, cancel_at_period_end=True, current_period_end__lte=now
        ).values_list("pk", flat=True)
    )


def subscriptions_to_remind(*, now: datetime, ahead: timedelta) -> list[int]:
    """Live subscriptions renewing within `ahead` whose reminder for the coming period has not gone out."""
    return list(
        Subscription.objects.filter(
            status__in=REMINDED,
            cancel_at_period_end=False,
            current_period_end__gt=now,
            current_period_end__lte=now + ahead,
            reminded_period__lte=models.F("periods_paid"),
        ).values_list("pk", flat=True)
    )


def subscription_first_order_held(subscription: Subscription) -> bool:
    """Whether the order that started it (a free trial's, or the first period's) still waits for a reviewer."""
    first = subscription.orders.order_by("subscription_period", "pk").values_list("status", flat=True).first()
    return first == OrderStatus.ON_HOLD


def subscription_postpone(*, subscription: Subscription, until: datetime) -> None:
    """Try the renewal again at `until` (locked): nothing is charged meanwhile."""
    subscription.next_attempt_at = until
    _save(subscription, "next_attempt_at")


def subscription_renewal_failed(
    *, subscription: Subscription, period: int, reason: str, retry_days: list[int], now: datetime
) -> bool:
    """Record a failed attempt for `period` and plan the next from the schedule (days after the period ended).
    False when the schedule is used up: the caller cancels. Locked."""
    subscription.failed_attempts += 1
    subscription.status = SubscriptionStatus.PAST_DUE
    _event(subscription, SubscriptionEventType.RENEWAL_FAILED, actor="subscriptions", period=period, note=reason)
    if subscription.failed_attempts > len(retry_days):
        _save(subscription, "failed_attempts", "status")
        return False
    retry_at = subscription.current_period_end + timedelta(days=retry_days[subscription.failed_attempts - 1])
    subscription.next_attempt_at = max(retry_at, now)
    _save(subscription, "failed_attempts", "status", "next_attempt_at")
    return True


def subscription_cancel(*, subscription: Subscription, actor: str, note: str = "", now: datetime | None = None):
    """End it now: no more renewals. Access is the caller's (storefront.flow.renewals). Locked; idempotent."""
    if subscription.status == SubscriptionStatus.CANCELLED:
        return subscription
    subscription.status = SubscriptionStatus.CANCELLED
    subscription.cancelled_at = now or timezone.now()
    subscription.next_attempt_at = None
    _save(subscription, "status", "cancelled_at", "next_attempt_at")
    _event(subscription, SubscriptionEventType.CANCELLED, actor=actor, period=subscription.periods_paid, note=note)
    return subscription


def subscription_cancel_at_period_end(*, subscription: Subscription, actor: str, reason: str = "") -> Subscription:
    """The shopper's cancellation: nothing more is charged; access lasts to the end of the paid period."""
    if subscription.status not in LIVE or subscription.cancel_at_period_end:
        return subscription
    subscription.cancel_at_period_end = True
    subscription.cancel_reason = reason.strip()[:300]
    _save(subscription, "cancel_at_period_end", "cancel_reason")
    _event(subscription, SubscriptionEventType.CANCEL_REQUESTED, actor=actor, note=subscription.cancel_reason)
    return subscription


def subscription_resume(*, subscription: Subscription, actor: str) -> Subscription:
    """Undo a cancellation at period end, while the period lasts."""
    if not subscription.cancel_at_period_end or subscription.status not in LIVE:
        return subscription
    subscription.cancel_at_period_end = False
    subscription.next_attempt_at = max(subscription.current_period_end, timezone.now())
    _save(subscription, "cancel_at_period_end", "next_attempt_at")
    _event(subscription, SubscriptionEventType.RESUMED, actor=actor)
    return subscription


def subscription_free_period(*, subscription: Subscription, actor: str) -> Subscription:
    """The merchant gives one period: the current one is extended by a period, nothing is charged for it."""
    if subscription.status == SubscriptionStatus.CANCELLED:
        return subscription
    anchor = _anchor(subscription)
    subscription.current_period_end = period_end(
        anchor=anchor, interval=subscription.interval, periods=subscription.periods_paid + 1
    )
    subscription.current_period_start = period_end(
        anchor=anchor, interval=subscription.interval, periods=subscription.periods_paid
    )
    subscription.periods_paid += 1
    subscription.next_attempt_at = subscription.current_period_end
    subscription.failed_attempts = 0
    subscription.status = SubscriptionStatus.ACTIVE
    _save(
        subscription,
        "current_period_end",
        "current_period_start",
        "periods_paid",
        "next_attempt_at",
        "failed_attempts",
        "status",
    )
    _event(subscription, SubscriptionEventType.FREE_PERIOD, actor=actor, period=subscription.periods_paid)
    return subscription


def subscription_card_saved(*, subscription: Subscription, card: SavedCard, actor: str) -> Subscription:
    """A new card for the next renewals; a past-due subscription is tried again with it at once."""
    subscription.customer_ref, subscription.method_ref = card.customer_ref, card.method_ref
    fields = ["customer_ref", "method_ref"]
    if subscription.status == SubscriptionStatus.PAST_DUE:
        subscription.next_attempt_at = timezone.now()
        fields.append("next_attempt_at")
    _save(subscription, *fields)
    _event(subscription, SubscriptionEventType.CARD_UPDATED, actor=actor)
    return subscription


def subscription_reminded(*, subscription: Subscription, period: int) -> None:
    subscription.reminded_period = period
    _save(subscription, "reminded_period")
    _event(subscription, SubscriptionEventType.REMINDER_SENT, actor="mailer", period=period)


def subscription_orders(subscription: Subscription) -> list[Order]:
    """Its orders, the first purchase first: the renewals the shopper sees."""
    return list(subscription.orders.exclude(status=OrderStatus.CANCELLED).order_by("subscription_period", "created_at"))
