"""Emails to the merchants (staff who may change products): an order held for review, a dispute opened, a payment
channel's breaker open, a webhook endpoint disabled. Low stock is emailed by fulfillment.stock.stock_alert_send.

Every email is sent by a task queued when the caller's transaction commits; nothing is sent for a rollback.
"""

import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction

from catalog.selectors import merchant_emails
from orders.models import Order

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def send_merchant_email(subject: str, body: str) -> int:
    recipients = merchant_emails()
    if not recipients:
        logger.warning("no merchant has an email address; not sent: %s", subject)
        return 0
    return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)


def merchant_notify(*, subject: str, body: str) -> None:
    """Email the merchants once the caller's transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send_merchant_email.delay(subject, body), robust=True)


def _admin(path: str) -> str:
    return f"{settings.SITE_URL}/admin/{path}"


def notify_order_held(*, order: Order, reason: str) -> None:
    merchant_notify(
        subject=f"Order {order.number} is held for review",
        body=f"Order {order.number} ({order.total_amount / 100:.2f} {order.currency}) is held: {reason}\n"
        f"Decide it in the review queue: {settings.SITE_URL}/review/\n"
        f"Order: {_admin(f'orders/order/{order.pk}/change/')}\n",
    )


def notify_dispute_opened(*, order: Order, reason: str, amount: int, currency: str) -> None:
    merchant_notify(
        subject=f"Dispute opened on order {order.number}",
        body=f"The payment of order {order.number} is disputed ({reason or 'no reason given'}), "
        f"{amount / 100:.2f} {currency.upper()}.\nThe delivery evidence is attached to the dispute: "
        f"{_admin('payments/dispute/')}\n",
    )


def notify_breaker_open(*, channel_id: int, code: str, until, cooldown_seconds: int) -> None:
    """Once per cool-down per channel, whichever process saw it open (a cache flag; sent anyway without one)."""
    try:
        first = cache.add(f"notify:breaker:{channel_id}", 1, timeout=max(60, cooldown_seconds))
    except Exception:  # the cache away: better twice than never
        first = True
    if not first:
        return
    merchant_notify(
        subject=f"Payment channel {code} is failing: skipped until {until:%H:%M} UTC",
        body=f"Payment channel {code} failed several times in a row; checkouts use the other channels until "
        f"{until.isoformat(timespec='seconds')}.\nChannels: {_admin('payments/paymentchannel/')}\n",
    )


def notify_endpoint_disabled(*, endpoint_id: int, url: str, reason: str) -> None:
    merchant_notify(
        subject="A webhook endpoint was disabled",
        body=f"The webhook endpoint {url} was disabled: {reason}\nFix it, enable it again and resend its failed "
        f"deliveries in admin: {_admin(f'storefront/webhookendpoint/{endpoint_id}/change/')}\n",
    )
