"""What the shop tells the merchant's systems and the merchants themselves when an order moves: the webhook events
(storefront.flow.outbound) and merchant emails (storefront.flow.notify), called from the flow's stories, plus the
receivers of what the apps below announce (a delivery, a product low on keys, a channel's breaker opening)."""

from django.db.models.signals import post_delete, post_save

from catalog.models import Product
from fulfillment.signals import order_delivered, stock_low
from orders.models import Order
from orders.selectors import order_lines
from payments.signals import breaker_opened
from storefront.flow.notify import notify_breaker_open, notify_order_held
from storefront.flow.outbound import outbound_emit, subscriptions_forget
from storefront.models import WebhookEndpoint


def order_event_data(order: Order, **extra) -> dict:
    """An order as its webhooks show it: number, status, money, the buyer's email and the lines (no key)."""
    return {
        "order": {
            "number": order.number,
            "status": order.status,
            "payment_state": order.payment_state,
            "total_amount": order.total_amount,
            "currency": order.currency,
            "email": order.email,
            "paid_at": order.paid_at.isoformat() if order.paid_at else None,
            "lines": [
                {"product_id": line.product_id, "name": line.product_name, "quantity": line.quantity}
                for line in order_lines(order)
            ],
        },
        **extra,
    }


def order_emit(*, event: str, order: Order, **extra) -> None:
    """Announce an order event to the webhook endpoints after the caller's transaction commits."""
    outbound_emit(event=event, data=order_event_data(order, **extra))


def order_held(*, order: Order, reason: str, for_review: bool) -> None:
    """An order held (for review, or for staff because the amount did not match): announced, merchants emailed."""
    order_emit(event="order.held", order=order, reason=reason)
    if for_review:
        notify_order_held(order=order, reason=reason)


def _delivered(sender, *, order, delivered_at, **kwargs) -> None:
    order_emit(event="order.delivered", order=order, delivered_at=delivered_at.isoformat())


def _stock_low(sender, *, product_id: int, available: int, threshold: int, **kwargs) -> None:
    name = Product.objects.filter(pk=product_id).values_list("name", flat=True).first() or ""
    outbound_emit(
        event="stock.low",
        data={"product": {"id": product_id, "name": name}, "available": available, "threshold": threshold},
    )


def _breaker_opened(sender, *, channel, **kwargs) -> None:
    notify_breaker_open(
        channel_id=channel.pk,
        code=channel.code,
        until=channel.breaker_open_until,
        cooldown_seconds=channel.breaker_cooldown_seconds,
    )


def events_connect_signals() -> None:
    """Called once from StorefrontConfig.ready."""
    order_delivered.connect(_delivered, dispatch_uid="storefront.flow.events.order_delivered")
    stock_low.connect(_stock_low, dispatch_uid="storefront.flow.events.stock_low")
    breaker_opened.connect(_breaker_opened, dispatch_uid="storefront.flow.events.breaker_opened")
    for change in (post_save, post_delete):  # an endpoint added, edited or removed is seen by the next event
        change.connect(subscriptions_forget, sender=WebhookEndpoint, dispatch_uid=f"webhooks.forget.{change}")
