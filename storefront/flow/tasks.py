"""Tasks the flow enqueues after commit: thin, idempotent, retried while a provider is unreachable."""

import logging

from celery import shared_task

from orders.models import Order, OrderStatus
from payments.models import Payment
from payments.providers.base import PaymentError
from storefront.flow.notify import send_merchant_email  # noqa: F401  (registers the task)
from storefront.flow.outbound import deliver_webhook, webhooks_send_due  # noqa: F401  (registers the tasks)
from storefront.flow.privacy_jobs import purge_personal_data  # noqa: F401  (registers the beat job)
from storefront.flow.refunds import refund_duplicate, refund_issue
from storefront.flow.staff_jobs import resume_stalled_staff_jobs, run_staff_job  # noqa: F401  (registers the tasks)

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=10, acks_late=True)
def refund_declined_order(self, order_id: int) -> str:
    """Refund an order the risk engine declined. Retries while the provider is unreachable."""
    order = Order.objects.get(pk=order_id)
    if order.status != OrderStatus.ON_HOLD:
        return order.status
    try:
        return refund_issue(order=order, actor="riskengine", reason="Declined by the risk engine.").status
    except PaymentError as exc:
        raise self.retry(exc=exc, countdown=min(600, 30 * 2**self.request.retries)) from exc


@shared_task(bind=True, max_retries=12, acks_late=True)
def refund_duplicate_payment(self, payment_id: int) -> str:
    """Give back a second payment for an order that was already paid (or cancelled). Idempotent."""
    payment = Payment.objects.select_related("order").get(pk=payment_id)
    try:
        return refund_duplicate(payment=payment)
    except PaymentError as exc:
        raise self.retry(exc=exc, countdown=min(900, 30 * 2**self.request.retries)) from exc
