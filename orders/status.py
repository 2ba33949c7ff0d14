"""The one place where an order's status and its payment state change.

The pipeline is declared as data; `order_transition` validates a move against it,
saves the order under a row lock and appends an OrderEvent in the same transaction.
`order_payment_state_set` is the only other writer of `payment_state`, with its own event.
"""

from django.db import transaction
from django.utils import timezone

from orders.models import Order, OrderEvent, OrderEventType, OrderLine, OrderStatus, PaymentState

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


def order_transition(
    *,
    order: Order,
    to_status: str,
    actor: str,
    note: str = "",
    data: dict | None = None,
    payment_state: PaymentState | None = None,
    locked: bool = False,
    also: dict | None = None,
    events: list[OrderEvent] | None = None,
) -> Order:
    """Move `order` to `to_status` (and its payment to `payment_state`, in the same event), or raise
    IllegalTransition. Returns the locked, saved order.

    `locked`: the caller holds the order's row lock in its own transaction (order_lock) and passes that very
    instance, so it is neither read again nor wrapped in a savepoint. `also`: other fields of the order to
    save in the same UPDATE (what the payment told about the card, say). `events`: a list the caller writes in
    bulk before its transaction ends (order_events_write); the status event is added to it, not inserted now.
    """
    if locked:
        return _transition(order, to_status, actor, note, data, payment_state, also, events)
    with transaction.atomic():
        fresh = _transition(order_lock(order_id=order.pk), to_status, actor, note, data, payment_state, also, events)
    order.status, order.payment_state = fresh.status, fresh.payment_state
    order.completed_at, order.paid_at = fresh.completed_at, fresh.paid_at
    return fresh


def _transition(
    order: Order,
    to_status: str,
    actor: str,
    note: str,
    data: dict | None,
    payment_state: PaymentState | None,
    also: dict | None,
    events: list[OrderEvent] | None,
) -> Order:
    if not can_transition(order.status, to_status):
        raise IllegalTransition(order, to_status)
    from_status = order.status
    order.status = to_status
    fields = ["status", "updated_at"]
    for name, value in (also or {}).items():
        setattr(order, name, value)
        fields.append(name)
    data = dict(data or {})
    if payment_state is not None and payment_state != order.payment_state:
        data["payment_state"] = {"from": order.payment_state, "to": payment_state}
        order.payment_state = payment_state
        fields.append("payment_state")
        if payment_state in (PaymentState.PAID, PaymentState.MISMATCH) and not order.paid_at:
            order.paid_at = timezone.now()
            fields.append("paid_at")
    if to_status in COMPLETE_STATUSES and not order.completed_at:
        order.completed_at = timezone.now()
        fields.append("completed_at")
    order.save(update_fields=fields)
    event = OrderEvent(
        order=order,
        type=OrderEventType.STATUS_CHANGED,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        note=note[:300],
        data=data,
    )
    if events is None:
        event.save()
    else:
        events.append(event)
    return order


def order_events_write(events: list[OrderEvent]) -> None:
    """Insert the events collected during a transaction (order_transition(events=...)) in one statement."""
    if events:
        OrderEvent.objects.bulk_create(events)


def order_payment_state_set(
    *, order: Order, state: PaymentState, actor: str, note: str = "", data: dict | None = None
) -> None:
    """Record what happened to the order's money without moving its status (a mismatch held as it stands, a
    part refunded). Call with the order locked. Writes the `payment_state_changed` event."""
    if state == order.payment_state:
        return
    data = {"from": order.payment_state, "to": state, **(data or {})}
    order.payment_state = state
    fields = ["payment_state", "updated_at"]
    if state in (PaymentState.PAID, PaymentState.MISMATCH) and not order.paid_at:
        order.paid_at = timezone.now()
        fields.append("paid_at")
    order.save(update_fields=fields)
    order_event_record(order=order, type=OrderEventType.PAYMENT_STATE_CHANGED, actor=actor, note=note, data=data)


def order_event_record(
    *, order: Order, type: OrderEventType, actor: str, note: str = "", data: dict | None = None
) -> OrderEvent:
    """Append a non-status event (payment failed, email sent, amount mismatch...). Unknown types raise ValueError."""
    return OrderEvent.objects.create(
        order=order, type=OrderEventType(type), actor=actor, note=note[:300], data=data or {}
    )
