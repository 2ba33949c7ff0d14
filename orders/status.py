"""The one place where an order's status changes.

The pipeline is declared as data; `order_transition` validates a move against it,
saves the order under a row lock and appends an OrderEvent in the same transaction.
"""

from django.db import transaction
from django.utils import timezone

from orders.models import Order, OrderEvent, OrderLine, OrderStatus

S = OrderStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING_PAYMENT: frozenset({S.PAID, S.ON_HOLD, S.CANCELLED}),
    S.PAID: frozenset({S.FULFILLED, S.AWAITING_STOCK, S.AWAITING_SHIPMENT, S.ON_HOLD, S.REFUNDED, S.CANCELLED}),
    S.ON_HOLD: frozenset({S.PAID, S.REFUNDED, S.CANCELLED}),
    S.AWAITING_STOCK: frozenset({S.FULFILLED, S.AWAITING_SHIPMENT, S.REFUNDED}),
    # FULFILLED: what was to ship was refunded, and everything digital is delivered
    S.AWAITING_SHIPMENT: frozenset({S.SHIPPED, S.FULFILLED, S.AWAITING_STOCK, S.REFUNDED}),
    S.FULFILLED: frozenset({S.REFUNDED}),
    S.SHIPPED: frozenset({S.REFUNDED}),
    S.CANCELLED: frozenset(),
    S.REFUNDED: frozenset(),
}

COMPLETE_STATUSES = frozenset({S.FULFILLED, S.SHIPPED})


class IllegalTransition(Exception):
    def __init__(self, order: Order, to_status: str):
        super().__init__(f"order {order.number}: {order.status} -> {to_status} is not allowed")
        self.from_status = order.status
        self.to_status = to_status


def can_transition(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, frozenset())


def determine_fulfilment_status(lines: list[OrderLine]) -> str:
    """Where a paid order stands once delivery has run over its lines.

    Digital lines that are not delivered mean awaiting stock; then physical lines that are
    not shipped mean awaiting shipment; otherwise the order is complete: 'shipped' when it
    had physical lines, 'fulfilled' when it was all digital. Refunded lines do not count.
    """
    lines = [line for line in lines if not line.refunded_at]  # refunded lines are owed nothing
    if any(not line.requires_shipping and not line.delivered_at for line in lines):
        return S.AWAITING_STOCK
    if any(line.requires_shipping and not line.shipped_at for line in lines):
        return S.AWAITING_SHIPMENT
    if any(line.requires_shipping for line in lines):
        return S.SHIPPED
    return S.FULFILLED


def order_lock(*, order_id: int) -> Order:
    """Load an order under a row lock; call inside a transaction."""
    return Order.objects.select_for_update().get(pk=order_id)


@transaction.atomic
def order_transition(*, order: Order, to_status: str, actor: str, note: str = "", data: dict | None = None) -> Order:
    """Move `order` to `to_status`, or raise IllegalTransition. Returns the locked, saved order."""
    locked = order_lock(order_id=order.pk)
    if not can_transition(locked.status, to_status):
        raise IllegalTransition(locked, to_status)
    from_status = locked.status
    locked.status = to_status
    fields = ["status", "updated_at"]
    if to_status in COMPLETE_STATUSES and not locked.completed_at:
        locked.completed_at = timezone.now()
        fields.append("completed_at")
    locked.save(update_fields=fields)
    OrderEvent.objects.create(
        order=locked,
        type="status_changed",
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        note=note[:300],
        data=data or {},
    )
    order.status = locked.status
    order.completed_at = locked.completed_at
    return locked


def order_event_record(*, order: Order, type: str, actor: str, note: str = "", data: dict | None = None) -> OrderEvent:
    """Append a non-status event (payment failed, email sent, amount mismatch...)."""
    return OrderEvent.objects.create(order=order, type=type, actor=actor, note=note[:300], data=data or {})
