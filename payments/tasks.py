import logging

from celery import shared_task
from django.db import OperationalError

logger = logging.getLogger(__name__)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def reconcile_payments() -> dict:
    """Beat job: apply payments whose notification never arrived, retry stuck refunds (payments.reconcile)."""
    from payments.health import provider_calls_prune
    from payments.reconcile import reconcile_all

    runs = reconcile_all()
    provider_calls_prune()
    return {run.channel.code: {"checked": run.checked, "applied": run.applied, "errors": run.errors} for run in runs}


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def reconcile_recent_payments() -> dict:
    """Beat job, every minute: payments opened lately that succeeded without their webhook reaching us (the
    database was away, the webhook answered 503) are applied now, not at the provider's next retry."""
    from payments.reconcile import reconcile_all

    runs = reconcile_all(recent_only=True)
    return {run.channel.code: {"checked": run.checked, "applied": run.applied, "errors": run.errors} for run in runs}


@shared_task(bind=True, max_retries=12, acks_late=True)
def refund_duplicate_payment(self, payment_id: int) -> str:
    """Give back a second payment for an order that was already paid (or cancelled). Idempotent."""
    from payments.models import Payment
    from payments.providers.base import PaymentError
    from payments.refunds import refund_duplicate

    payment = Payment.objects.select_related("order").get(pk=payment_id)
    try:
        return refund_duplicate(payment=payment)
    except PaymentError as exc:
        raise self.retry(exc=exc, countdown=min(900, 30 * 2**self.request.retries)) from exc
