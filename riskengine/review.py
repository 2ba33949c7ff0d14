"""The ops review queue: open, claim, approve, reject, expire. Every action is audited on the order."""

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from orders.models import Order, OrderStatus
from orders.status import order_event_record, order_lock, order_transition
from riskengine.models import FraudLabel, ListEntry, ListKind, ReviewCase, ReviewStatus, RiskAssessment, RiskSettings

logger = logging.getLogger(__name__)

CLAIM_TIMEOUT = timedelta(minutes=30)
BLOCKABLE = {
    ListKind.EMAIL: "email",
    ListKind.DEVICE: "device_id",
    ListKind.CARD: "card_fingerprint",
    ListKind.IP: "purchase_ip",
}


class ReviewError(Exception):
    """A review action that cannot be done now (claimed by someone else, already decided, no note)."""


def review_case_open(*, order: Order, assessment: RiskAssessment) -> ReviewCase:
    case, _ = ReviewCase.objects.get_or_create(order=order, defaults={"assessment": assessment})
    return case


def review_claim(*, case_id: int, user) -> ReviewCase:
    """Claim a case so two reviewers never work the same one. A stale claim (30 min) can be taken over."""
    now = timezone.now()
    with transaction.atomic():
        # One UPDATE whose WHERE PostgreSQL re-checks after a concurrent claim commits: one winner.
        updated = ReviewCase.objects.filter(
            Q(pk=case_id, status=ReviewStatus.OPEN)
            & (Q(claimed_by__isnull=True) | Q(claimed_at__lt=now - CLAIM_TIMEOUT))
        ).update(claimed_by=user, claimed_at=now)
        case = ReviewCase.objects.select_related("order").get(pk=case_id)
        if not updated and case.status != ReviewStatus.OPEN:
            raise ReviewError("This order was already decided.")
        if not updated and case.claimed_by_id != user.pk:
            raise ReviewError("This order is already being reviewed by someone else.")
        if updated:
            order_event_record(order=case.order, type="review_claimed", actor=f"reviewer:{user.get_username()}")
    return case


def _decide(case_id: int, user, note: str) -> ReviewCase:
    if not note.strip():
        raise ReviewError("A note is required.")
    case = ReviewCase.objects.select_for_update().select_related("order").get(pk=case_id)
    if case.status != ReviewStatus.OPEN:
        raise ReviewError("This order was already decided.")
    if case.claimed_by_id != user.pk:
        raise ReviewError("Claim the order before deciding it.")
    return case


def review_approve(*, case_id: int, user, note: str) -> Order:
    """Release the held order: delivery runs inside this transaction, so the key is out at commit."""
    from fulfillment.services import order_deliver

    actor = f"reviewer:{user.get_username()}"
    with transaction.atomic():
        case = _decide(case_id, user, note)
        order = order_lock(order_id=case.order_id)
        order_transition(order=order, to_status=OrderStatus.PAID, actor=actor, note=f"Approved: {note}"[:300])
        ReviewCase.objects.filter(pk=case.pk).update(
            status=ReviewStatus.APPROVED, decided_by=user, decided_at=timezone.now(), note=note
        )
        FraudLabel.objects.create(order=order, source="review", is_fraud=False)
        return order_deliver(order_id=order.pk, actor=actor)


def review_reject(*, case_id: int, user, note: str, blocklist: list[str] | None = None) -> Order:
    """Refund and close the held order, labelling it fraud and blocklisting the chosen identifiers."""
    from payments.refunds import refund_issue

    actor = f"reviewer:{user.get_username()}"
    with transaction.atomic():
        case = _decide(case_id, user, note)
        order = case.order
    order = refund_issue(order=order, actor=actor, reason=f"Rejected in review: {note}")
    with transaction.atomic():
        # the refund just closed the case (see payments.refunds): the reviewer's decision is the record
        ReviewCase.objects.filter(pk=case.pk, status__in=[ReviewStatus.OPEN, ReviewStatus.CLOSED]).update(
            status=ReviewStatus.REJECTED, decided_by=user, decided_at=timezone.now(), note=note
        )
        FraudLabel.objects.create(order=order, source="review", is_fraud=True)
        blocked = risk_blocklist_order_identifiers(order=order, kinds=blocklist or [], actor=actor, reason=note)
        order_event_record(order=order, type="review_rejected", actor=actor, note=note, data={"blocked": blocked})
    return order


def risk_blocklist_order_identifiers(*, order: Order, kinds: list[str], actor: str, reason: str) -> list[str]:
    """Put the order's chosen identifiers on the blocklist (also used for disputes and fraud warnings)."""
    added = []
    for kind in kinds:
        field = BLOCKABLE.get(kind)
        value = getattr(order, field, "") if field else ""
        if value:
            ListEntry.objects.get_or_create(
                allow=False, kind=kind, value=str(value).lower(), defaults={"created_by": actor, "reason": reason[:300]}
            )
            added.append(f"{kind} {value}")
    return added


def review_cases_close_for_refund(*, order: Order, actor: str) -> int:
    """A held order refunded by any other way (staff, the shopper, the provider) leaves the queue."""
    return ReviewCase.objects.filter(order=order, status=ReviewStatus.OPEN).update(
        status=ReviewStatus.CLOSED, decided_at=timezone.now(), note=f"Refunded by {actor}."[:300]
    )


def review_expire_overdue(*, now=None) -> int:
    """Refund held orders nobody reviewed before the deadline, and tell the shopper (refund email)."""
    from payments.providers.base import PaymentError
    from payments.refunds import RefundNotAllowed, refund_issue

    now = now or timezone.now()
    deadline = now - timedelta(hours=RiskSettings.current().review_deadline_hours)
    expired = 0
    for case in ReviewCase.objects.filter(status=ReviewStatus.OPEN, created_at__lt=deadline).select_related("order"):
        if case.order.status != OrderStatus.ON_HOLD:
            continue
        try:
            refund_issue(order=case.order, actor="review-deadline", reason="Not reviewed in time.")
        except (RefundNotAllowed, PaymentError) as exc:
            logger.warning("order %s: review deadline refund failed: %s", case.order.number, exc)
            continue
        ReviewCase.objects.filter(pk=case.pk, status__in=[ReviewStatus.OPEN, ReviewStatus.CLOSED]).update(
            status=ReviewStatus.EXPIRED, decided_at=now
        )
        expired += 1
    return expired
