"""Refunds at the provider: written down (pending, with its idempotency key) before the provider is called, so
a retry, a double click or reconciliation reuses the same key and the provider pays once.

What a refund takes back (keys revoked, links dead, the order moved) is the flow layer's:
storefront.flow.refunds.
"""

import logging
import uuid
from dataclasses import dataclass

from django.utils import timezone

from orders.models import Order, OrderLine, OrderStatus
from payments.health import provider_call
from payments.models import Payment, PaymentStatus, Refund, RefundStatus
from payments.providers import provider_for_channel
from payments.providers.base import ProviderUnavailable, RefundNotice
from payments.services import payment_channel_for

logger = logging.getLogger(__name__)

REFUNDABLE = (
    OrderStatus.PAID,
    OrderStatus.ON_HOLD,
    OrderStatus.AWAITING_STOCK,
    OrderStatus.AWAITING_SHIPMENT,
    OrderStatus.FULFILLED,
    OrderStatus.SHIPPED,
)


class RefundNotAllowed(Exception):
    pass


@dataclass(frozen=True)
class NothingCharged:
    """A refund of an order no provider charged (a hand-made order): only the goods are taken back."""

    line_ids: list[int]
    whole: bool


def refund_line_ids(order: Order, lines: list[OrderLine] | None) -> list[int] | None:
    """The ids of the lines to refund (None: the whole order), checked to belong to the order."""
    if lines is None:
        return None
    ids = sorted({line.pk for line in lines})
    if not ids:
        raise RefundNotAllowed("choose at least one line")
    if set(ids) - set(order.lines.values_list("pk", flat=True)):
        raise RefundNotAllowed("a line is not part of this order")
    return ids


def refund_prepare(
    *, order: Order, actor: str, reason: str, line_ids: list[int] | None
) -> Refund | NothingCharged | None:
    """Write down the refund of an order (locked by the caller), whole (`line_ids` None) or those lines.

    Returns the pending refund to send (an identical one already pending is returned to be retried with its
    own key), NothingCharged when no provider payment exists, or None when the order is refunded already.
    """
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
    if payment is None:
        return NothingCharged(line_ids=wanted, whole=whole)
    if whole:
        amount = payment.refundable_amount - sum(r.amount for r in pending)
    else:
        amount = sum(line.paid_amount for line in open_lines if line.pk in wanted)  # less its share of a coupon
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


def refund_duplicate_prepare(*, payment: Payment) -> Refund | None:
    """The money-only refund of a duplicate payment (locked by the caller), created once; None if not due."""
    if not payment.duplicate or payment.status != PaymentStatus.SUCCEEDED:
        return None
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
    return refund


def refund_at_provider(*, refund: Refund) -> str:
    """Ask the provider for the money (outside any transaction); returns the provider's refund id.

    A provider that could not be reached leaves the refund pending, for the next try or reconciliation;
    a provider that refuses it marks it failed. Either way the error is raised for the caller to show.
    """
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
    return result.ref


def refund_mark_settled(*, refund_id: int, provider_ref: str) -> Refund | None:
    """Record an accepted refund and the money it took off its payment (the order locked by the caller).
    Returns the refund, or None when it was settled already."""
    refund = Refund.objects.select_for_update().select_related("payment").get(pk=refund_id)
    if refund.status == RefundStatus.SUCCEEDED:
        return None
    refund.status, refund.provider_ref, refund.settled_at = RefundStatus.SUCCEEDED, provider_ref, timezone.now()
    refund.save(update_fields=["status", "provider_ref", "settled_at"])
    payment_refunded(payment_id=refund.payment_id, amount=refund.amount)
    logger.info("order %s: refund of %d %s settled (%s)", refund.order_id, refund.amount, refund.currency, refund.actor)
    return refund


def refund_for_notice(*, payment: Payment, notice: RefundNotice) -> Refund | None:
    """Our refund a provider's notice is about: by its id, or (sent but its answer lost) the one pending for
    the amount."""
    known = Refund.objects.filter(payment=payment, provider_ref=notice.ref).first()
    if known is None:
        known = Refund.objects.filter(
            payment=payment, status=RefundStatus.PENDING, provider_ref="", amount=notice.amount
        ).first()
    return known


def refund_record_from_provider(*, payment: Payment, notice: RefundNotice, provider_name: str) -> Refund:
    """Record, as settled, a refund made at the provider (its dashboard) on a payment locked by the caller; it
    covers the whole order when nothing is left to refund."""
    received = payment.amount_received or payment.amount
    everything = (notice.payment_refunded_total or payment.refunded_amount + notice.amount) >= received
    return Refund.objects.create(
        payment=payment,
        order_id=payment.order_id,
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


def refund_lines_set(*, refund: Refund, line_ids: list[int]) -> None:
    Refund.objects.filter(pk=refund.pk).update(line_ids=line_ids)
    refund.line_ids = line_ids


def payment_refunded_before_success(*, payment: Payment, amount: int) -> None:
    """A refund that overtook the payment's success (locked by the caller): the payment is closed as refunded,
    so a late success is ignored."""
    payment.refunded_amount += amount
    payment.status = PaymentStatus.REFUNDED
    payment.save(update_fields=["refunded_amount", "status", "updated_at"])


def payment_refunded(*, payment_id: int, amount: int) -> Payment:
    payment = Payment.objects.select_for_update().get(pk=payment_id)
    payment.refunded_amount += amount
    if payment.refunded_amount >= (payment.amount_received or payment.amount):
        payment.status = PaymentStatus.REFUNDED
    payment.save(update_fields=["refunded_amount", "status", "updated_at"])
    return payment


def refund_failed(*, refund: Refund, failure: str) -> None:
    Refund.objects.filter(pk=refund.pk).update(status=RefundStatus.FAILED, failure=failure[:200])
