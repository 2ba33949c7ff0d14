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


@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1500)
def risk_model_retrain() -> str:
    """Weekly: train a new risk model version in shadow when new labels arrived since the newest one."""
    from riskengine.learning import risk_model_train

    return risk_model_train(actor="celery:risk_model_retrain", only_when_new=True).message
