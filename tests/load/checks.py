"""Exactly once, nothing lost: the check every load and fault run ends with. It fails loudly."""

import time
from collections import Counter

from django.db import connection


class ExactlyOnceViolated(SystemExit):
    pass


def settle(order_ids: list[int], *, timeout: float, sweep=None) -> dict[str, int]:
    """Wait until no order is still paid-and-undelivered (running `sweep` now and then, as beat would)."""
    from orders.models import Order, OrderStatus

    deadline = time.monotonic() + timeout
    next_sweep = time.monotonic() + 2.0
    while True:
        connection.close()  # a fresh connection: the last one may have been dropped, and see new commits
        counts = Counter(Order.objects.filter(pk__in=order_ids).values_list("status", flat=True))
        if not counts.get(OrderStatus.PAID) and not counts.get(OrderStatus.PENDING_PAYMENT):
            return dict(counts)
        if time.monotonic() > deadline:
            return dict(counts)
        if sweep is not None and time.monotonic() > next_sweep:
            sweep()
            next_sweep = time.monotonic() + 2.0
        time.sleep(0.1)


def check_exactly_once(order_ids: list[int], *, label: str) -> dict:
    """Every paid order delivered exactly once, or honestly waiting for stock; no key sold twice.

    Raises ExactlyOnceViolated (the bench stops with the reason) if any of these fails:
    - no order is left paid and undelivered, or stuck before payment though it was paid;
    - a delivered order holds exactly as many keys as it bought, each in its own unit, all sold;
    - an order awaiting stock does so because its product ran out, not because a delivery was lost;
    - no key belongs to two order lines, and every key was sold once (one 'sold' audit event).
    """
    from fulfillment.models import KeyEvent, KeyStatus, LicenseKey
    from orders.models import Order, OrderLine, OrderStatus
    from payments.models import Payment, PaymentStatus

    problems: list[str] = []
    statuses = Counter()
    orders = Order.objects.filter(pk__in=order_ids).prefetch_related("lines")
    for order in orders:
        statuses[order.status] += 1
        succeeded = Payment.objects.filter(order=order, status=PaymentStatus.SUCCEEDED, duplicate=False).count()
        if succeeded != 1:
            problems.append(f"{order.number}: {succeeded} successful payments")
        if order.status in (OrderStatus.PAID, OrderStatus.PENDING_PAYMENT):
            problems.append(f"{order.number}: paid but left {order.status}")
        for line in order.lines.all():
            keys = list(LicenseKey.objects.filter(order_line=line).values_list("status", "unit_index"))
            units = sorted(unit for _, unit in keys)
            if order.status == OrderStatus.FULFILLED and units != list(range(line.quantity)):
                problems.append(f"{order.number}: delivered with units {units} for quantity {line.quantity}")
            if any(status != KeyStatus.SOLD for status, _ in keys):
                problems.append(f"{order.number}: a key of its line is not 'sold'")
            if len(keys) > line.quantity:
                problems.append(f"{order.number}: {len(keys)} keys for quantity {line.quantity}")
    waiting_products = set(
        OrderLine.objects.filter(order_id__in=order_ids, order__status=OrderStatus.AWAITING_STOCK).values_list(
            "product_id", flat=True
        )
    )
    for product_id in waiting_products:
        if LicenseKey.objects.filter(product_id=product_id, status=KeyStatus.AVAILABLE).exists():
            problems.append(f"product {product_id}: orders wait for stock while keys are available")
    lines = OrderLine.objects.filter(order_id__in=order_ids)
    sold = list(LicenseKey.objects.filter(order_line__in=lines).values_list("pk", flat=True))
    if len(sold) != len(set(sold)):
        problems.append("a key appears in two order lines")
    sold_events = Counter(KeyEvent.objects.filter(key_id__in=sold, type="sold").values_list("key_id", flat=True))
    twice = [key for key, n in sold_events.items() if n != 1]
    if twice:
        problems.append(f"{len(twice)} keys were sold more than once (audit)")
    if problems:
        raise ExactlyOnceViolated(f"exactly-once violated in '{label}': " + "; ".join(problems[:10]))
    return {"orders": len(order_ids), "statuses": dict(statuses), "keys_sold": len(sold)}
