"""A subscription ending now: the one place for it, whoever ends it (the last failed retry, a cancellation at period
end, staff, a refund of its current period). Apart from storefront.flow.renewals so the refund flow can use it
without importing the payment flow it is itself imported by."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from fulfillment.services import subscription_access_end
from orders.models import Order, OrderStatus, Subscription, SubscriptionStatus
from orders.status import order_lock, order_transition
from orders.subscriptions import subscription_cancel
from orders.tasks import send_subscription_email


def subscription_end(subscription: Subscription, *, note: str, actor: str, now: datetime | None = None) -> bool:
    """Cancel now: access ends, an unpaid renewal order is cancelled (so a link already emailed cannot pay a
    period of a cancelled subscription), the shopper is told after commit. Call with the subscription locked.
    One already cancelled is left as it is (False)."""
    if subscription.status == SubscriptionStatus.CANCELLED:
        return False
    now = now or timezone.now()
    subscription_cancel(subscription=subscription, actor=actor, note=note, now=now)
    subscription_access_end(subscription_id=subscription.pk, now=now)
    for order in Order.objects.filter(subscription=subscription, status=OrderStatus.PENDING_PAYMENT):
        order_transition(order=order_lock(order_id=order.pk), to_status=OrderStatus.CANCELLED, actor=actor, note=note)
    subscription_email_on_commit(subscription, "subscription_cancelled")
    return True


def subscription_email_on_commit(subscription: Subscription, template: str, order: Order | None = None) -> None:
    args = (subscription.pk, template, order.pk if order else None)
    transaction.on_commit(lambda: send_subscription_email.delay(*args), robust=True)
