from smtplib import SMTPException

from celery import shared_task

from orders.emails import order_email_send, order_links_send, subscription_email_send
from orders.models import Order, Subscription

# Every email task: retried with backoff while the mail server is away, acknowledged once sent.
EMAIL_TASK = {
    "autoretry_for": (SMTPException, OSError),
    "retry_backoff": True,
    "retry_backoff_max": 600,
    "max_retries": 8,
    "acks_late": True,
}


@shared_task(**EMAIL_TASK)
def send_order_email(order_id: int, template: str) -> None:
    order_email_send(order=Order.objects.get(pk=order_id), template=template)


@shared_task(**EMAIL_TASK)
def send_order_links(email: str) -> None:
    """ "Find my order": the address's recent order links, to that address alone (nothing if it has none)."""
    order_links_send(email=email)


@shared_task(**EMAIL_TASK)
def send_subscription_email(subscription_id: int, template: str, order_id: int | None = None) -> None:
    order = Order.objects.get(pk=order_id) if order_id else None
    subscription = Subscription.objects.select_related("product").get(pk=subscription_id)
    subscription_email_send(subscription=subscription, template=template, order=order)
