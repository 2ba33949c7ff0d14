"""What the shop's own past says about an order's customer, its products and its IP address.

Each read takes the moment it is asked at (riskengine.asof: the order's own moment in a backtest, now
otherwise) and sees only what had happened by then. Plain SQL on indexed columns, one query per read, and
only the rules that need one ask for it.
"""

from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from orders.models import Order, OrderLine, OrderStatus
from riskengine.asof import as_of_cached, as_of_now
from riskengine.models import FraudLabel

# An order counts as a good customer's once it was delivered and nothing marks it as fraud. (Its status is
# read as it is now: an order refunded since then no longer counts, which only ever makes a read stricter.)
USUAL_UNITS_KEPT = timedelta(minutes=10)
_usual_units: dict[tuple, tuple[datetime, int]] = {}  # per process: (read again from, units)
DELIVERED = f"('{OrderStatus.FULFILLED.value}', '{OrderStatus.SHIPPED.value}')"


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def moment() -> datetime:
    return as_of_now() or timezone.now()


def product_usual_units(*, product_id: int, excluding_order_id: int, days: int = 60, share: float = 0.2) -> int:
    """How many units of this product one order usually takes: the most that at least `share` of its other
    paid orders of the last `days` days reached (1 for a product bought one at a time, or never sold yet).
    Kept per process for ten minutes."""
    now = moment()

    def compute() -> int:
        sql = (
            f"SELECT l.quantity, COUNT(*) FROM {_table(OrderLine)} l JOIN {_table(Order)} o ON o.id = l.order_id"
            " WHERE l.product_id = %s AND o.id <> %s AND o.paid_at IS NOT NULL AND o.paid_at > %s AND o.paid_at <= %s"
            " GROUP BY l.quantity"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [product_id, excluding_order_id, now - timedelta(days=days), now])
            counts = dict(cursor.fetchall())
        total = sum(counts.values())
        usual, at_least = 1, total
        for units in sorted(counts):
            if total and at_least / total >= share:
                usual = units
            at_least -= counts[units]
        return max(1, int(usual))

    key = ("product_usual_units", product_id, days, share)
    if as_of_now() is not None:
        return as_of_cached(key, compute)
    kept = _usual_units.get(key)
    if kept is None or not kept[0] - USUAL_UNITS_KEPT <= now < kept[0]:  # a product's habits move slowly
        kept = _usual_units[key] = (now + USUAL_UNITS_KEPT, compute())
    return kept[1]


def customer_trusted_since(*, email: str, card_fingerprint: str, excluding_order_id: int, min_days: int) -> bool:
    """Whether this email paid with this same card at least `min_days` ago, that order was delivered, and no
    order of this email or card is marked as fraud: a returning customer with a clean history."""
    if not email or not card_fingerprint:
        return False
    now = moment()
    orders, labels = _table(Order), _table(FraudLabel)
    sql = (
        f"SELECT EXISTS (SELECT 1 FROM {orders} WHERE email = %s AND card_fingerprint = %s AND id <> %s"
        f" AND paid_at IS NOT NULL AND paid_at <= %s AND status IN {DELIVERED})"
        f" AND NOT EXISTS (SELECT 1 FROM {labels} f JOIN {orders} o ON o.id = f.order_id"
        " WHERE f.is_fraud AND f.created_at < %s AND (o.email = %s OR o.card_fingerprint = %s))"
    )
    params = [email, card_fingerprint, excluding_order_id, now - timedelta(days=min_days)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, now, email, card_fingerprint])
        return bool(cursor.fetchone()[0])


def ip_good_customers(*, ip: str, days: int = 56, settled_days: int = 1) -> int:
    """Distinct emails that bought from this IP address and got their goods (delivered at least a day
    before, never marked as fraud) over the last `days` days: many of them make an office or a carrier."""
    if not ip:
        return 0
    now = moment()

    def compute() -> int:
        orders, labels = _table(Order), _table(FraudLabel)
        sql = (
            f"SELECT COUNT(DISTINCT o.email) FROM {orders} o WHERE o.purchase_ip = %s AND o.status IN {DELIVERED}"
            " AND o.paid_at > %s AND o.paid_at <= %s"
            f" AND NOT EXISTS (SELECT 1 FROM {labels} f WHERE f.order_id = o.id AND f.is_fraud AND f.created_at < %s)"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [ip, now - timedelta(days=days), now - timedelta(days=settled_days), now])
            return int(cursor.fetchone()[0])

    return as_of_cached(("ip_good_customers", ip, days, settled_days), compute)
