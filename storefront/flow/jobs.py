"""Beat jobs of the flow: reconciliation, review and backorder deadlines. Each is safe to run at any time."""

import logging

from celery import shared_task
from django.db import OperationalError

from fulfillment.services import backorders_overdue
from payments.health import provider_calls_prune
from payments.providers.base import PaymentError
from payments.refunds import RefundNotAllowed
from storefront.flow.reconcile import reconcile_all
from storefront.flow.refunds import refund_issue
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
