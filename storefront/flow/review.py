"""A review decided: a person approves a held order (delivered at once) or rejects it (refunded, labelled fraud,
its identifiers blocklisted); a case nobody decided in time is refunded."""

import logging

from django.db import transaction
from django.utils import timezone

from fulfillment.services import order_deliver_locked
from orders.models import Order, OrderEventType, OrderStatus
from orders.status import order_event_record, order_lock, order_transition
from payments.providers.base import PaymentError
from payments.refunds import RefundNotAllowed
from riskengine.models import ReviewStatus
from riskengine.review import (
    review_case_decide,
    review_case_expire,
    review_case_for_decision,
    review_cases_overdue,
    risk_blocklist_order_identifiers,
)
from storefront.flow.events import order_emit
from storefront.flow.refunds import refund_issue

logger = logging.getLogger(__name__)


def review_approve(*, case_id: int, user, note: str) -> Order:
    """Release the held order: delivery runs inside this transaction, so the key is out at commit."""
    actor = f"reviewer:{user.get_username()}"
    with transaction.atomic():
        case = review_case_for_decision(case_id=case_id, user=user, note=note)
        order = order_lock(order_id=case.order_id)
        order_transition(
            order=order, locked=True, to_status=OrderStatus.PAID, actor=actor, note=f"Approved: {note}"[:300]
        )
        review_case_decide(case=case, status=ReviewStatus.APPROVED, user=user, note=note, is_fraud=False)
        order = order_deliver_locked(order=order, actor=actor)
        order_emit(event="order.review_decided", order=order, decision="approved")
        return order


def review_reject(*, case_id: int, user, note: str, blocklist: list[str] | None = None) -> Order:
    """Refund and close the held order, labelling it fraud and blocklisting the chosen identifiers."""
    actor = f"reviewer:{user.get_username()}"
    with transaction.atomic():
        case = review_case_for_decision(case_id=case_id, user=user, note=note)
        order = case.order
    order = refund_issue(order=order, actor=actor, reason=f"Rejected in review: {note}")
    with transaction.atomic():
        review_case_decide(case=case, status=ReviewStatus.REJECTED, user=user, note=note, is_fraud=True)
        blocked = risk_blocklist_order_identifiers(order=order, kinds=blocklist or [], actor=actor, reason=note)
        order_event_record(
            order=order, type=OrderEventType.REVIEW_REJECTED, actor=actor, note=note, data={"blocked": blocked}
        )
        order_emit(event="order.review_decided", order=order, decision="rejected")
    return order


def review_expire_overdue(*, now=None) -> int:
    """Refund held orders nobody reviewed before the deadline, and tell the shopper (refund email)."""
    now = now or timezone.now()
    expired = 0
    for case in review_cases_overdue(now=now):
        try:
            refund_issue(order=case.order, actor="review-deadline", reason="Not reviewed in time.")
        except (RefundNotAllowed, PaymentError) as exc:
            logger.warning("order %s: review deadline refund failed: %s", case.order.number, exc)
            continue
        review_case_expire(case=case, now=now)
        expired += 1
    return expired
