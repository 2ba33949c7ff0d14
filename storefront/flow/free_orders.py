"""Free orders: a product priced at zero (a lead magnet), or a coupon that takes everything off.

Checked out with the email alone: no payment step. It is still rate-limited per mailbox, device and address,
screened by the risk engine before (blocklist, velocity) and after (every rule, as a paid order), and released,
held or declined by the same path as a payment (flow.payment.order_mark_paid): delivered exactly once by
fulfillment.services.order_deliver_locked, and counted in the figures as an order paid with nothing.
"""

from django.conf import settings

from orders.errors import CheckoutError
from orders.mailbox import email_key
from orders.models import Order
from riskengine.models import RiskDecision
from riskengine.services import risk_check_before_payment
from storefront.flow.payment import order_mark_paid
from storefront.ratelimit import rate_limit_hit

DAY = 24 * 3600
FREE_ACTOR = "checkout:free"


def free_order_rate_limited(*, order: Order) -> bool:
    """Count one free order for its mailbox, device and IP address; True when any is over its daily limit."""
    limit = settings.FREE_ORDERS_PER_DAY
    keys = {"mailbox": email_key(order.email), "device": order.device_id, "ip": order.purchase_ip or ""}
    over = [
        rate_limit_hit(scope=f"free-{kind}", key=key, limit=limit, window_seconds=DAY)
        for kind, key in keys.items()
        if key
    ]
    return any(over)


def free_order_complete(*, order: Order) -> Order:
    """Release an order that costs nothing, inside checkout's transaction (see the module's docstring).

    CheckoutError "free_order_limit" or "payment_blocked" rolls the whole checkout back: nothing is created."""
    if free_order_rate_limited(order=order):
        raise CheckoutError("free_order_limit")
    if risk_check_before_payment(order=order).decision == RiskDecision.DECLINE:
        raise CheckoutError("payment_blocked")
    return order_mark_paid(order_id=order.pk, amount=0, currency=order.currency, payment_ref="", actor=FREE_ACTOR)
