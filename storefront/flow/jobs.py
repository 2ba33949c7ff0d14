"""Beat jobs of the flow: reconciliation, review and backorder deadlines. Each is safe to run at any time."""

import logging
from datetime import datetime

from celery import shared_task
from django.db import OperationalError

from fulfillment.services import backorders_overdue
from payments.health import provider_calls_prune
from payments.providers.base import PaymentError
from payments.refunds import RefundNotAllowed
from storefront.flow.reconcile import reconcile_all
from storefront.flow.refunds import refund_issue
from storefront.flow.renewals import (
    renewals_claim_due,
    subscription_renew,
    subscriptions_end_cancelled,
    subscriptions_remind,
)
from storefront.flow.review import review_expire_overdue

logger = logging.getLogger(__name__)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def reconcile_payments() -> dict:
    """Every 5 minutes: apply payments whose notification never arrived, retry stuck refunds (flow.reconcile)."""
    runs = reconcile_all()
    provider_calls_prune()
    return {run.channel.code: {"checked": run.checked, "applied": run.applied, "errors": run.errors} for run in runs}


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def reconcile_recent_payments() -> dict:
    """Every minute: payments opened lately that succeeded without their webhook reaching us (the database was
    away, the webhook answered 503) are applied now, not at the provider's next retry."""
    runs = reconcile_all(recent_only=True)
    return {run.channel.code: {"checked": run.checked, "applied": run.applied, "errors": run.errors} for run in runs}


@shared_task
def expire_overdue_reviews() -> int:
    return review_expire_overdue()


@shared_task
def refund_overdue_backorders() -> int:
    """Refund orders that waited for stock past their products' deadline, and tell the shopper."""
    refunded = 0
    for order in backorders_overdue():
        try:
            refund_issue(order=order, actor="backorder-deadline", reason="Stock did not arrive in time.")
            refunded += 1
        except (RefundNotAllowed, PaymentError) as exc:
            logger.warning("order %s: automatic backorder refund failed: %s", order.number, exc)
    return refunded


RENEWAL_FAN_OUT = 1000  # subscriptions claimed per sweep round; the sweep goes round until none is due


@shared_task(bind=True, max_retries=5, acks_late=True)
def renew_subscription(self, subscription_id: int, claim: str) -> str:
    """One subscription's renewal for its next period (flow.renewals.subscription_renew). Idempotent: the claim
    it carries is checked under lock, the period's order is unique and its payment is recorded before it is
    confirmed."""
    return subscription_renew(subscription_id=subscription_id, claim=datetime.fromisoformat(claim))


@shared_task
def renew_due_subscriptions() -> int:
    """Every minute: claim the subscriptions due and hand each to its own task (a fan-out: ten thousand due at
    the same minute are renewed by every worker at once)."""
    handed = 0
    while claimed := renewals_claim_due(limit=RENEWAL_FAN_OUT):
        for subscription_id, claim in claimed:
            renew_subscription.delay(subscription_id, claim.isoformat())
        handed += len(claimed)
    return handed


@shared_task
def subscriptions_housekeeping() -> dict:
    """Every 10 minutes: reminders before renewals, and the end of subscriptions cancelled at period end."""
    return {"reminded": subscriptions_remind(), "ended": subscriptions_end_cancelled()}
