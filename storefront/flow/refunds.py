"""A refund asked for (staff, the shopper, a review, the risk engine, a deadline) or reported by the provider:
money back through payments, then the refunded goods withdrawn: keys revoked, links dead, memberships ended,
the order moved and its shopper told.

A refund settles when the provider accepts it, or when the provider's own notice of it arrives, whichever is
first. Refunds made in the provider's dashboard arrive as notices and are applied the same way.
"""

import logging

from django.db import transaction
from django.utils import timezone

from fulfillment.keys import keys_release_for_order, keys_revoke_for_order
from fulfillment.models import DeliveryAccess, Membership
from fulfillment.services import memberships_end
from orders.links import BadLink, shopper_refund_token_check
from orders.models import Order, OrderEventType, OrderLine, OrderStatus, PaymentState, SubscriptionStatus
from orders.status import (
    can_transition,
    determine_fulfilment_status,
    order_event_record,
    order_lock,
    order_payment_state_set,
    order_transition,
)
from orders.subscriptions import subscription_lock
from orders.tasks import send_order_email
from payments.models import Payment, PaymentStatus, Refund, RefundStatus
from payments.providers.base import RefundNotice
from payments.refunds import (
    REFUNDABLE,
    NothingCharged,
    RefundNotAllowed,
    payment_refunded,
    payment_refunded_before_success,
    refund_at_provider,
    refund_duplicate_prepare,
    refund_failed,
    refund_for_notice,
    refund_line_ids,
    refund_lines_set,
    refund_mark_settled,
    refund_prepare,
    refund_record_from_provider,
)
from payments.services import payment_find, payment_lock
from riskengine.review import review_cases_close_for_refund
from storefront.flow.events import order_emit
from storefront.flow.subscription_end import subscription_end

logger = logging.getLogger(__name__)


def refund_issue(*, order: Order, actor: str, reason: str, lines: list[OrderLine] | None = None) -> Order:
    """Refund the order at its provider, whole or only `lines`, then withdraw what those lines delivered.

    Refunding every remaining line refunds the rest of the payment (shipping included) and marks the
    order refunded; fewer lines leave it partly refunded. A refund already made is a no-op; a retry
    of one that did not finish reuses its idempotency key, so the provider never pays twice.
    """
    line_ids = refund_line_ids(order, lines)
    with transaction.atomic():
        locked = order_lock(order_id=order.pk)
        refund = refund_prepare(order=locked, actor=actor, reason=reason, line_ids=line_ids)
        if isinstance(refund, NothingCharged):
            _withdraw(order=locked, line_ids=refund.line_ids, whole=refund.whole, actor=actor, reason=reason)
            refund = None
    if refund is not None:
        refund_send(refund=refund)
    order.refresh_from_db()
    return order


def refund_send(*, refund: Refund) -> Refund:
    """Ask the provider for the money (outside any transaction) and settle. Safe to call again."""
    provider_ref = refund_at_provider(refund=refund)
    return refund_settle(refund_id=refund.pk, provider_ref=provider_ref)


@transaction.atomic
def refund_settle(*, refund_id: int, provider_ref: str) -> Refund:
    """Record the accepted refund and withdraw its lines. Idempotent: a settled refund is left alone."""
    refund = Refund.objects.only("order_id").get(pk=refund_id)
    order = order_lock(order_id=refund.order_id)
    settled = refund_mark_settled(refund_id=refund_id, provider_ref=provider_ref)
    if settled is None:
        return Refund.objects.get(pk=refund_id)
    if settled.money_only:
        order_event_record(
            order=order,
            type=OrderEventType.DUPLICATE_PAYMENT_REFUNDED,
            actor=settled.actor,
            data={"payment": settled.payment.provider_ref, "amount": settled.amount, "refund": provider_ref},
        )
    else:
        _withdraw(
            order=order,
            line_ids=settled.line_ids,
            whole=settled.whole_order,
            actor=settled.actor,
            reason=settled.reason,
        )
    return settled


def _subscription_end_if_current(*, order: Order, actor: str, reason: str) -> None:
    """A refunded order that paid a subscription's current period (the first, declined by the risk engine or
    rejected in review; the last, refunded by staff) ends the subscription: nothing more is charged, access
    ends now. Refunding an older period changes nothing else."""
    if not order.subscription_id:
        return
    subscription = subscription_lock(order.subscription_id)
    if order.subscription_period < subscription.periods_paid:
        return
    subscription_end(subscription, note=f"Period refunded: {reason}", actor=actor)


def _keys_serve_later_periods(order: Order) -> bool:
    """Whether the order's keys are a live subscription's, paid for by later periods too (a key sold by period
    is delivered once and extended by each renewal): refunding an older period then takes back the money only."""
    if not order.subscription_id:
        return False
    subscription = order.subscription
    live = subscription.status != SubscriptionStatus.CANCELLED
    return live and order.subscription_period is not None and order.subscription_period < subscription.periods_paid


def _withdraw(*, order: Order, line_ids: list[int], whole: bool, actor: str, reason: str) -> None:
    """Take back what these lines delivered (keys, links, memberships) and move the order. In a transaction."""
    now = timezone.now()
    lines = list(order.lines.filter(pk__in=line_ids, refunded_at__isnull=True))
    OrderLine.objects.filter(pk__in=[line.pk for line in lines]).update(refunded_at=now)
    if not _keys_serve_later_periods(order):
        keys_revoke_for_order(order=order, actor=actor, lines=lines)
    memberships_end(memberships=list(Membership.objects.filter(line__in=lines, ended=False)))
    if whole:
        order_transition(
            order=order,
            locked=True,
            to_status=OrderStatus.REFUNDED,
            payment_state=PaymentState.REFUNDED,
            actor=actor,
            note=reason[:300],
        )
        keys_release_for_order(order=order, actor=actor)
        review_cases_close_for_refund(order=order, actor=actor)
        _subscription_end_if_current(order=order, actor=actor, reason=reason)
        template = "order_refunded"
    else:
        order_payment_state_set(order=order, state=PaymentState.PARTIALLY_REFUNDED, actor=actor)
        order_event_record(
            order=order,
            type=OrderEventType.PARTIAL_REFUND,
            actor=actor,
            note=reason[:300],
            data={"lines": [line.pk for line in lines], "products": [line.product_name for line in lines]},
        )
        _move_after_partial_refund(order=order, actor=actor)
        template = "order_partially_refunded"
    transaction.on_commit(lambda: send_order_email.delay(order.pk, template), robust=True)
    order_emit(event="order.refunded", order=order, whole=whole, refunded_line_ids=[line.pk for line in lines])


def _move_after_partial_refund(*, order: Order, actor: str) -> None:
    """An order waiting only for the lines just refunded is now complete."""
    if order.status not in (OrderStatus.AWAITING_STOCK, OrderStatus.AWAITING_SHIPMENT):
        return
    target = determine_fulfilment_status(list(order.lines.all()))
    if target != order.status and can_transition(order.status, target):
        order_transition(
            order=order, locked=True, to_status=target, actor=actor, note="The outstanding lines were refunded."
        )


def refund_duplicate(*, payment: Payment) -> str:
    """Give back the whole of a duplicate payment. The goods stay: the order was paid by another payment."""
    with transaction.atomic():
        order_lock(order_id=payment.order_id)
        payment = payment_lock(payment_id=payment.pk)
        refund = refund_duplicate_prepare(payment=payment)
        if refund is None:
            return payment.status
    if refund.status == RefundStatus.SUCCEEDED:
        return PaymentStatus.REFUNDED
    refund_send(refund=refund)
    return PaymentStatus.REFUNDED


@transaction.atomic
def refund_notice_apply(*, provider_name: str, notice: RefundNotice) -> str:
    """A refund the provider reports: ours (settle it if still pending) or one made in its dashboard.

    A dashboard refund of everything left withdraws the whole order; a partial one is recorded as money
    only (which lines it covers is for staff to say) and flagged on the order. Repeats act once.
    """
    payment = payment_find(provider_name=provider_name, ref=notice.payment_ref, capture_ref=notice.capture_ref)
    if payment is None:
        logger.warning("%s refund %s for an unknown payment", provider_name, notice.ref)
        return "unknown_payment"
    order = order_lock(order_id=payment.order_id)
    known = refund_for_notice(payment=payment, notice=notice)
    if known is not None:
        if known.status == RefundStatus.SUCCEEDED:
            return "duplicate"
        if notice.status == "failed":
            refund_failed(refund=known, failure="failed at the provider")
            return "refund_failed"
        refund_settle(refund_id=known.pk, provider_ref=notice.ref)
        return "refund_settled"
    if notice.status == "failed":
        return "ignored"
    payment = payment_lock(payment_id=payment.pk)
    refund = refund_record_from_provider(payment=payment, notice=notice, provider_name=provider_name)
    if payment.status != PaymentStatus.SUCCEEDED:
        return _refund_before_success(order=order, payment=payment, refund=refund)
    payment_refunded(payment_id=payment.pk, amount=notice.amount)
    if refund.whole_order and order.status in REFUNDABLE:
        open_lines = list(order.lines.filter(refunded_at__isnull=True).values_list("pk", flat=True))
        refund_lines_set(refund=refund, line_ids=open_lines)
        _withdraw(order=order, line_ids=open_lines, whole=True, actor=refund.actor, reason=refund.reason)
        return "refunded"
    order_payment_state_set(order=order, state=PaymentState.PARTIALLY_REFUNDED, actor=refund.actor)
    order_event_record(
        order=order,
        type=OrderEventType.PARTIAL_REFUND_AT_PROVIDER,
        actor=refund.actor,
        note="Part of the payment was refunded at the provider; choose the lines it covers in admin.",
        data={"refund": notice.ref, "amount": notice.amount},
    )
    return "partial_refund_recorded"


def _refund_before_success(*, order: Order, payment: Payment, refund: Refund) -> str:
    """The refund overtook the success notice (or the success was never applied): nothing is delivered.

    The payment is closed as refunded, so a late success is ignored, and an unpaid order is cancelled.
    """
    payment_refunded_before_success(payment=payment, amount=refund.amount)
    if order.status == OrderStatus.PENDING_PAYMENT:
        order_transition(
            order=order,
            locked=True,
            to_status=OrderStatus.CANCELLED,
            actor=refund.actor,
            note="The payment was refunded at the provider before it was recorded here.",
        )
    return "refunded_before_payment"


def shopper_refund_check(*, order: Order, token: str) -> None:
    """Raise RefundNotAllowed unless the signed link is this order's and the order may be refunded by its shopper.

    Shoppers may choose a refund while their order waits for stock, unless a product forbids refunds
    once its key was revealed and one was.
    """
    try:
        shopper_refund_token_check(order=order, token=token)
    except BadLink as exc:
        raise RefundNotAllowed(str(exc)) from None
    if order.status != OrderStatus.AWAITING_STOCK:
        raise RefundNotAllowed(f"order is {order.status}")
    revealed_locked = DeliveryAccess.objects.filter(
        order=order, kind="reveal", line__product__no_refund_after_reveal=True
    ).exists()
    if revealed_locked:
        raise RefundNotAllowed("a key was revealed")
