"""Refunds: money back through the provider, then goods withdrawn (keys revoked, links dead)."""

import logging

from django.core import signing
from django.db import transaction

from fulfillment.keys import keys_release_for_order, keys_revoke_for_order
from fulfillment.models import DeliveryAccess, Membership
from fulfillment.services import memberships_end
from orders.models import Order, OrderStatus, PaymentState
from orders.status import order_lock, order_transition
from payments.models import Payment, PaymentStatus
from payments.providers import get_provider

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


def refund_issue(*, order: Order, actor: str, reason: str) -> Order:
    """Refund the whole order at its provider, then mark it refunded and withdraw what it delivered.

    The provider call carries an idempotency key per order, so a retried refund never pays twice;
    a refund of an already refunded order is a no-op.
    """
    order.refresh_from_db()
    if order.status == OrderStatus.REFUNDED:
        return order
    if order.status not in REFUNDABLE:
        raise RefundNotAllowed(f"order {order.number} is {order.status}")
    payment = Payment.objects.filter(order=order, status=PaymentStatus.SUCCEEDED).order_by("-created_at").first()
    if payment is not None:
        amount = payment.amount_received or payment.amount
        get_provider(payment.provider).refund(
            ref=payment.provider_ref, amount=amount, idempotency_key=f"refund-{order.number}-full"
        )
    return _refund_settle(order_id=order.pk, payment=payment, actor=actor, reason=reason)


@transaction.atomic
def _refund_settle(*, order_id: int, payment: Payment | None, actor: str, reason: str) -> Order:
    from orders.tasks import send_order_email

    order = order_lock(order_id=order_id)
    if order.status == OrderStatus.REFUNDED:
        return order
    order.payment_state = PaymentState.REFUNDED
    order.save(update_fields=["payment_state", "updated_at"])
    if payment is not None:
        Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.REFUNDED)
    order = order_transition(order=order, to_status=OrderStatus.REFUNDED, actor=actor, note=reason[:300])
    keys_revoke_for_order(order=order, actor=actor)
    keys_release_for_order(order=order, actor=actor)
    memberships_end(memberships=list(Membership.objects.filter(line__order=order, ended=False)))
    transaction.on_commit(lambda: send_order_email.delay(order.pk, "order_refunded"))
    logger.info("order %s refunded by %s", order.number, actor)
    return order


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
