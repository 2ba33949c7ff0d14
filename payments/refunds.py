"""Refunds: money back through the provider, then the refunded goods withdrawn (keys revoked, links dead).

A refund is written down (pending, with its idempotency key) before the provider is called, so a
retry, a double click or reconciliation reuses the same key and the provider pays once. It settles
when the provider accepts it, or when the provider's own notice of it arrives, whichever is first.
Refunds made in the provider's dashboard arrive as notices and are applied the same way.
"""

import logging
import uuid

from django.core import signing
from django.db import transaction
from django.utils import timezone

from fulfillment.keys import keys_release_for_order, keys_revoke_for_order
from fulfillment.models import DeliveryAccess, Membership
from fulfillment.services import memberships_end
from orders.models import Order, OrderLine, OrderStatus, PaymentState
from orders.status import can_transition, determine_fulfilment_status, order_event_record, order_lock, order_transition
from payments.health import provider_call
from payments.models import Payment, PaymentStatus, Refund, RefundStatus
from payments.providers import provider_for_channel
from payments.providers.base import ProviderUnavailable, RefundNotice
from riskengine.review import review_cases_close_for_refund

logger = logging.getLogger(__name__)

REFUNDABLE = (
    OrderStatus.PAID,
    OrderStatus.ON_HOLD,
    OrderStatus.AWAITING_STOCK,
    OrderStatus.AWAITING_SHIPMENT,
    OrderStatus.FULFILLED,
    OrderStatus.SHIPPED,
)
_SHOPPER_REFUND_SALT = "payments.backorder-refund"


class RefundNotAllowed(Exception):
    pass


def refund_issue(*, order: Order, actor: str, reason: str, lines: list[OrderLine] | None = None) -> Order:
    """Refund the order at its provider, whole or only `lines`, then withdraw what those lines delivered.

    Refunding every remaining line refunds the rest of the payment (shipping included) and marks the
    order refunded; fewer lines leave it partly refunded. A refund already made is a no-op; a retry
    of one that did not finish reuses its idempotency key, so the provider never pays twice.
    """
    refund = _refund_prepare(order_id=order.pk, actor=actor, reason=reason, line_ids=_ids(order, lines))
    if refund is not None:
        refund_send(refund=refund)
    order.refresh_from_db()
    return order


def _ids(order: Order, lines: list[OrderLine] | None) -> list[int] | None:
    if lines is None:
        return None
    ids = sorted({line.pk for line in lines})
    if not ids:
        raise RefundNotAllowed("choose at least one line")
    if set(ids) - set(order.lines.values_list("pk", flat=True)):
        raise RefundNotAllowed("a line is not part of this order")
    return ids


@transaction.atomic
def _refund_prepare(*, order_id: int, actor: str, reason: str, line_ids: list[int] | None) -> Refund | None:
    order = order_lock(order_id=order_id)
    if order.status == OrderStatus.REFUNDED:
        return None
    if order.status not in REFUNDABLE:
        raise RefundNotAllowed(f"order {order.number} is {order.status}")
    open_lines = list(order.lines.filter(refunded_at__isnull=True).order_by("pk"))
    pending = list(Refund.objects.filter(order=order, status=RefundStatus.PENDING))
    taken = {line_id for refund in pending for line_id in refund.line_ids}
    wanted = [line.pk for line in open_lines] if line_ids is None else line_ids
    for refund in pending:  # the same refund asked for again: retry it with its own key
        if refund.whole_order == (line_ids is None) and sorted(refund.line_ids) == sorted(wanted):
            return refund
    if set(wanted) & taken:
        raise RefundNotAllowed("a refund of these lines is already under way")
    if set(wanted) - {line.pk for line in open_lines}:
        raise RefundNotAllowed("a line was refunded already")
    payment = (
        Payment.objects.select_for_update()
        .filter(order=order, status=PaymentStatus.SUCCEEDED, duplicate=False)
        .order_by("-created_at")
        .first()
    )
    whole = line_ids is None or set(wanted) == {line.pk for line in open_lines}
    if payment is None:  # nothing was charged through a provider (e.g. a hand-made test order)
        _withdraw(order=order, line_ids=wanted, whole=whole, actor=actor, reason=reason)
        return None
    if whole:
        amount = payment.refundable_amount - sum(r.amount for r in pending)
    else:
        amount = sum(line.line_total for line in open_lines if line.pk in wanted)
    if amount <= 0 or amount > payment.refundable_amount - sum(r.amount for r in pending):
        raise RefundNotAllowed("nothing left to refund on this payment")
    return Refund.objects.create(
        payment=payment,
        order=order,
        amount=amount,
        currency=payment.currency,
        idempotency_key=f"refund-{order.number}-{uuid.uuid4().hex[:16]}",
        line_ids=wanted,
        whole_order=whole,
        reason=reason[:300],
        actor=actor[:100],
    )


def refund_send(*, refund: Refund) -> Refund:
    """Ask the provider for the money (outside any transaction) and settle. Safe to call again.

    A provider that could not be reached leaves the refund pending, for the next try or reconciliation;
    a provider that refuses it marks it failed. Either way the error is raised for the caller to show.
    """
    from payments.services import payment_channel_for

    payment = refund.payment
    channel = payment_channel_for(payment)
    Refund.objects.filter(pk=refund.pk).update(attempts=refund.attempts + 1)
    try:
        with provider_call(channel=channel, operation="refund", order=refund.order):
            result = provider_for_channel(channel).refund(
                ref=payment.provider_ref,
                capture_ref=payment.capture_ref,
                amount=refund.amount,
                currency=refund.currency,
                idempotency_key=refund.idempotency_key,
            )
    except ProviderUnavailable:
        raise
    except Exception as exc:
        Refund.objects.filter(pk=refund.pk, status=RefundStatus.PENDING).update(
            status=RefundStatus.FAILED, failure=str(exc)[:200]
        )
        raise
    if result.status == "failed":
        Refund.objects.filter(pk=refund.pk).update(status=RefundStatus.FAILED, failure="declined by the provider")
        raise RefundNotAllowed("the provider declined the refund")
    return refund_settle(refund_id=refund.pk, provider_ref=result.ref)


@transaction.atomic
def refund_settle(*, refund_id: int, provider_ref: str) -> Refund:
    """Record the accepted refund and withdraw its lines. Idempotent: a settled refund is left alone."""
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    order = order_lock(order_id=refund.order_id)
    refund = Refund.objects.select_for_update().get(pk=refund_id)
    if refund.status == RefundStatus.SUCCEEDED:
        return refund
    refund.status, refund.provider_ref, refund.settled_at = RefundStatus.SUCCEEDED, provider_ref, timezone.now()
    refund.save(update_fields=["status", "provider_ref", "settled_at"])
    _payment_refunded(payment_id=refund.payment_id, amount=refund.amount)
    if refund.money_only:
        order_event_record(
            order=order,
            type="duplicate_payment_refunded",
            actor=refund.actor,
            data={"payment": refund.payment.provider_ref, "amount": refund.amount, "refund": provider_ref},
        )
    else:
        _withdraw(
            order=order, line_ids=refund.line_ids, whole=refund.whole_order, actor=refund.actor, reason=refund.reason
        )
    logger.info("order %s: refund of %d %s settled (%s)", order.number, refund.amount, refund.currency, refund.actor)
    return refund


def _payment_refunded(*, payment_id: int, amount: int) -> Payment:
    payment = Payment.objects.select_for_update().get(pk=payment_id)
    payment.refunded_amount += amount
    if payment.refunded_amount >= (payment.amount_received or payment.amount):
        payment.status = PaymentStatus.REFUNDED
    payment.save(update_fields=["refunded_amount", "status", "updated_at"])
    return payment


def _withdraw(*, order: Order, line_ids: list[int], whole: bool, actor: str, reason: str) -> None:
    """Take back what these lines delivered (keys, links, memberships) and move the order. In a transaction."""
    from orders.tasks import send_order_email

    now = timezone.now()
    lines = list(order.lines.filter(pk__in=line_ids, refunded_at__isnull=True))
    OrderLine.objects.filter(pk__in=[line.pk for line in lines]).update(refunded_at=now)
    keys_revoke_for_order(order=order, actor=actor, lines=lines)
    memberships_end(memberships=list(Membership.objects.filter(line__in=lines, ended=False)))
    if whole:
        order.payment_state = PaymentState.REFUNDED
        order.save(update_fields=["payment_state", "updated_at"])
        order_transition(order=order, to_status=OrderStatus.REFUNDED, actor=actor, note=reason[:300])
        keys_release_for_order(order=order, actor=actor)
        review_cases_close_for_refund(order=order, actor=actor)
        template = "order_refunded"
    else:
        order.payment_state = PaymentState.PARTIALLY_REFUNDED
        order.save(update_fields=["payment_state", "updated_at"])
        order_event_record(
            order=order,
            type="partial_refund",
            actor=actor,
            note=reason[:300],
            data={"lines": [line.pk for line in lines], "products": [line.product_name for line in lines]},
        )
        _move_after_partial_refund(order=order, actor=actor)
        template = "order_partially_refunded"
    transaction.on_commit(lambda: send_order_email.delay(order.pk, template), robust=True)


def _move_after_partial_refund(*, order: Order, actor: str) -> None:
    """An order waiting only for the lines just refunded is now complete."""
    if order.status not in (OrderStatus.AWAITING_STOCK, OrderStatus.AWAITING_SHIPMENT):
        return
    target = determine_fulfilment_status(list(order.lines.all()))
    if target != order.status and can_transition(order.status, target):
        order_transition(order=order, to_status=target, actor=actor, note="The outstanding lines were refunded.")


def refund_duplicate(*, payment: Payment) -> str:
    """Give back the whole of a duplicate payment. The goods stay: the order was paid by another payment."""
    with transaction.atomic():
        order_lock(order_id=payment.order_id)
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        if not payment.duplicate or payment.status != PaymentStatus.SUCCEEDED:
            return payment.status
        refund = Refund.objects.filter(payment=payment, money_only=True).exclude(status=RefundStatus.FAILED).first()
        if refund is None:
            refund = Refund.objects.create(
                payment=payment,
                order=payment.order,
                amount=payment.refundable_amount,
                currency=payment.currency,
                idempotency_key=f"duplicate-{payment.provider}-{payment.pk}",
                money_only=True,
                reason="A second payment for an order already paid.",
                actor="payments:duplicate",
            )
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
    from payments.services import payment_find

    payment = payment_find(provider_name=provider_name, ref=notice.payment_ref, capture_ref=notice.capture_ref)
    if payment is None:
        logger.warning("%s refund %s for an unknown payment", provider_name, notice.ref)
        return "unknown_payment"
    order = order_lock(order_id=payment.order_id)
    known = Refund.objects.filter(payment=payment, provider_ref=notice.ref).first()
    if known is None:  # ours, sent but not settled (its answer was lost): the one pending for this amount
        known = Refund.objects.filter(
            payment=payment, status=RefundStatus.PENDING, provider_ref="", amount=notice.amount
        ).first()
    if known is not None:
        if known.status == RefundStatus.SUCCEEDED:
            return "duplicate"
        if notice.status == "failed":
            Refund.objects.filter(pk=known.pk).update(status=RefundStatus.FAILED, failure="failed at the provider")
            return "refund_failed"
        refund_settle(refund_id=known.pk, provider_ref=notice.ref)
        return "refund_settled"
    if notice.status == "failed":
        return "ignored"
    payment = Payment.objects.select_for_update().get(pk=payment.pk)
    received = payment.amount_received or payment.amount
    everything = (notice.payment_refunded_total or payment.refunded_amount + notice.amount) >= received
    refund = Refund.objects.create(
        payment=payment,
        order=order,
        amount=notice.amount,
        currency=notice.currency or payment.currency,
        status=RefundStatus.SUCCEEDED,
        provider_ref=notice.ref,
        idempotency_key=f"provider-{provider_name}-{notice.ref}"[:100],
        line_ids=[],
        whole_order=everything,
        reason="Refunded at the provider.",
        actor=f"{provider_name}:dashboard",
        settled_at=timezone.now(),
    )
    if payment.status != PaymentStatus.SUCCEEDED:
        return _refund_before_success(order=order, payment=payment, refund=refund)
    _payment_refunded(payment_id=payment.pk, amount=notice.amount)
    if everything and order.status in REFUNDABLE:
        open_lines = list(order.lines.filter(refunded_at__isnull=True).values_list("pk", flat=True))
        Refund.objects.filter(pk=refund.pk).update(line_ids=open_lines)
        _withdraw(order=order, line_ids=open_lines, whole=True, actor=refund.actor, reason=refund.reason)
        return "refunded"
    order.payment_state = PaymentState.PARTIALLY_REFUNDED
    order.save(update_fields=["payment_state", "updated_at"])
    order_event_record(
        order=order,
        type="partial_refund_at_provider",
        actor=refund.actor,
        note="Part of the payment was refunded at the provider; choose the lines it covers in admin.",
        data={"refund": notice.ref, "amount": notice.amount},
    )
    return "partial_refund_recorded"


def _refund_before_success(*, order: Order, payment: Payment, refund: Refund) -> str:
    """The refund overtook the success notice (or the success was never applied): nothing is delivered.

    The payment is closed as refunded, so a late success is ignored, and an unpaid order is cancelled.
    """
    payment.refunded_amount += refund.amount
    payment.status = PaymentStatus.REFUNDED
    payment.save(update_fields=["refunded_amount", "status", "updated_at"])
    if order.status == OrderStatus.PENDING_PAYMENT:
        order_transition(
            order=order,
            to_status=OrderStatus.CANCELLED,
            actor=refund.actor,
            note="The payment was refunded at the provider before it was recorded here.",
        )
    return "refunded_before_payment"


def shopper_refund_token(order: Order) -> str:
    return signing.TimestampSigner(salt=_SHOPPER_REFUND_SALT).sign(order.number)


def shopper_refund_check(*, order: Order, token: str) -> None:
    """Raise RefundNotAllowed unless the signed link is this order's and the order may be refunded by its shopper.

    Shoppers may choose a refund while their order waits for stock, unless a product forbids refunds
    once its key was revealed and one was.
    """
    try:
        number = signing.TimestampSigner(salt=_SHOPPER_REFUND_SALT).unsign(token, max_age=60 * 60 * 24 * 60)
    except signing.BadSignature:
        raise RefundNotAllowed("invalid link") from None
    if number != order.number:
        raise RefundNotAllowed("invalid link")
    if order.status != OrderStatus.AWAITING_STOCK:
        raise RefundNotAllowed(f"order is {order.status}")
    revealed_locked = DeliveryAccess.objects.filter(
        order=order, kind="reveal", line__product__no_refund_after_reveal=True
    ).exists()
    if revealed_locked:
        raise RefundNotAllowed("a key was revealed")
