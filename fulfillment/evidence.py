"""The evidence that an order's goods were delivered and used, for a dispute (see payments.disputes)."""

from fulfillment.models import DeliveryAccess
from orders.models import Order, OrderEvent, OrderStatus


def delivery_evidence_build(*, order: Order) -> dict:
    """Everything a reviewer at the card network needs to see that the goods were delivered and used."""
    delivered = (
        OrderEvent.objects.filter(order=order, to_status__in=[OrderStatus.FULFILLED, OrderStatus.SHIPPED])
        .order_by("pk")
        .first()
    )
    accesses = list(DeliveryAccess.objects.filter(order=order).select_related("line").order_by("pk"))
    lines = list(order.lines.all())
    log = [
        f"{a.created_at:%Y-%m-%d %H:%M:%S} UTC {a.kind} of {a.line.product_name} from {a.ip or 'unknown IP'}"
        f" ({a.channel}, {a.user_agent[:120] or 'no user agent'})"
        for a in accesses
    ]
    products = "; ".join(f"{line.quantity} x {line.product_name} ({line.get_kind_display()})" for line in lines)
    return {
        "order_number": order.number,
        "customer_email": order.email,
        "customer_name": order.ship_name,
        "purchase_ip": order.purchase_ip or "",
        "purchased_at": order.created_at.isoformat(timespec="seconds"),
        "paid_at": order.paid_at.isoformat(timespec="seconds") if order.paid_at else "",
        "delivered_at": delivered.created_at.isoformat(timespec="seconds") if delivered else "",
        "products": products,
        "access_log": log,
        "reveals": sum(1 for a in accesses if a.kind == "reveal"),
        "downloads": sum(1 for a in accesses if a.kind == "download"),
    }
