import logging

from celery import shared_task

from orders.models import Order, OrderStatus

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=10, acks_late=True)
def refund_declined_order(self, order_id: int) -> str:
    """Refund an order the risk engine declined. Retries while the provider is unreachable."""
    from payments.providers.base import PaymentError
    from payments.refunds import refund_issue

    order = Order.objects.get(pk=order_id)
    if order.status != OrderStatus.ON_HOLD:
        return order.status
    try:
        return refund_issue(order=order, actor="riskengine", reason="Declined by the risk engine.").status
    except PaymentError as exc:
        raise self.retry(exc=exc, countdown=min(600, 30 * 2**self.request.retries)) from exc


@shared_task
def expire_overdue_reviews() -> int:
    from riskengine.review import review_expire_overdue

    return review_expire_overdue()
