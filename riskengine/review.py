"""The ops review queue: open, claim, decide, expire. Every action is audited on the order; what a decision
does to the order (deliver, refund) is storefront.flow.review."""

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from orders.models import Order, OrderEventType, OrderStatus
from orders.status import order_event_record
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
            order_event_record(
                order=case.order, type=OrderEventType.REVIEW_CLAIMED, actor=f"reviewer:{user.get_username()}"
            )
    return case


def review_case_for_decision(*, case_id: int, user, note: str) -> ReviewCase:
    """The case, locked, if `user` may decide it now (claimed by them, still open, with a note); else ReviewError."""
    if not note.strip():
        raise ReviewError("A note is required.")
    case = ReviewCase.objects.select_for_update().select_related("order").get(pk=case_id)
    if case.status != ReviewStatus.OPEN:
        raise ReviewError("This order was already decided.")
    if case.claimed_by_id != user.pk:
        raise ReviewError("Claim the order before deciding it.")
    return case


def review_case_decide(*, case: ReviewCase, status: str, user, note: str, is_fraud: bool) -> None:
    """Record the reviewer's decision and the label it gives the order (a case the refund closed meanwhile
    still takes the reviewer's decision: it is the record)."""
    ReviewCase.objects.filter(pk=case.pk, status__in=[ReviewStatus.OPEN, ReviewStatus.CLOSED]).update(
        status=status, decided_by=user, decided_at=timezone.now(), note=note
    )
    FraudLabel.objects.create(order_id=case.order_id, source="review", is_fraud=is_fraud)


def review_case_expire(*, case: ReviewCase, now) -> None:
    ReviewCase.objects.filter(pk=case.pk, status__in=[ReviewStatus.OPEN, ReviewStatus.CLOSED]).update(
        status=ReviewStatus.EXPIRED, decided_at=now
    )


def review_cases_overdue(*, now) -> list[ReviewCase]:
    """Open cases past the review deadline whose order is still held."""
    deadline = now - timedelta(hours=RiskSettings.current().review_deadline_hours)
    cases = ReviewCase.objects.filter(status=ReviewStatus.OPEN, created_at__lt=deadline).select_related("order")
    return [case for case in cases if case.order.status == OrderStatus.ON_HOLD]


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
