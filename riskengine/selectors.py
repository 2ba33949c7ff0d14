"""Reads for the risk engine and the review queue."""

from dataclasses import dataclass

from django.db import connection
from django.db.models import Q

from orders.models import Order, OrderLine
from riskengine.config import LINK_FIELDS
from riskengine.models import FraudLabel


@dataclass(frozen=True)
class Link:
    order_id: int
    number: str
    path: str  # e.g. "device" or "card -> email"
    hops: int
    fraud: bool


def linked_orders(*, order_id: int, hops: int = 2, limit: int = 200) -> list[Link]:
    """Orders sharing an email, IP, device or card fingerprint with this one, walked `hops` deep."""
    values = list(LINK_FIELDS.values())
    frontier = {row["pk"]: ("", row) for row in Order.objects.filter(pk=order_id).values("pk", *values)}
    seen = set(frontier)
    found: list[tuple[int, str, str, int]] = []
    for depth in range(1, hops + 1):
        query = Q()
        for _, row in frontier.values():
            for field in values:
                if row[field]:
                    query |= Q(**{field: row[field]})
        if not query:
            break
        matches = list(Order.objects.filter(query).exclude(pk__in=seen).values("pk", "number", *values)[:limit])
        next_frontier = {}
        for match in matches:
            for path, row in frontier.values():
                shared = next((label for label, f in LINK_FIELDS.items() if row[f] and row[f] == match[f]), None)
                if shared:
                    full = f"{path} -> {shared}" if path else shared
                    next_frontier[match["pk"]] = (full, match)
                    found.append((match["pk"], match["number"], full, depth))
                    break
        seen |= set(next_frontier)
        frontier = next_frontier
        if not frontier:
            break
    fraud = set(
        FraudLabel.objects.filter(order_id__in=[f[0] for f in found], is_fraud=True).values_list("order_id", flat=True)
    )
    return [Link(order_id=o, number=n, path=p, hops=h, fraud=o in fraud) for o, n, p, h in found]


def fraud_links(
    *, order_id: int, ids: dict[str, str], fraud: dict[tuple[str, str], str], hops: int = 2, limit: int = 500
) -> list[Link]:
    """Fraud-labelled orders reachable from this one through shared identifiers.

    `ids` are the order's own identifiers (kind -> value) and `fraud` maps the identifiers of fraud orders
    to their numbers (riskengine.config). Hop 1: the order shares an identifier with a fraud order; only
    when there is none, hop 2: it shares one with another order that shares one with a fraud order. One
    query for the neighbours, the rest in memory; deeper walks (tuning) take the general graph walk.
    """
    if not fraud:
        return []
    if hops > 2:
        return [link for link in linked_orders(order_id=order_id, hops=hops) if link.fraud]
    mine = {(label, str(value)) for label, value in ids.items() if label in LINK_FIELDS and value}
    links = [
        Link(order_id=0, number=fraud[key], path=key[0], hops=1, fraud=True) for key in sorted(mine) if key in fraud
    ]
    if hops < 2 or links or not mine:
        return links
    for row in _orders_sharing(mine, order_id=order_id, limit=limit):
        via = next(label for label, f in LINK_FIELDS.items() if row[f] and (label, str(row[f])) in mine)
        for label, f in LINK_FIELDS.items():
            key = (label, str(row[f]))
            if row[f] and key in fraud:
                links.append(Link(order_id=0, number=fraud[key], path=f"{via} -> {label}", hops=2, fraud=True))
                break
    return links


# The reads below run for every paid order, so they are plain SQL: the ORM's query building costs more
# than the queries themselves here (about 0.5 ms each; see tests/bench_risk.py). Standard SQL, so the
# demo's SQLite runs them too.


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _orders_sharing(identifiers: set[tuple[str, str]], *, order_id: int, limit: int) -> list[dict]:
    """Other orders sharing any of these (kind, value) identifiers, as dicts of number and LINK_FIELDS."""
    columns = list(LINK_FIELDS.values())
    where = " OR ".join(f"{LINK_FIELDS[label]} = %s" for label, _ in sorted(identifiers))
    sql = f"SELECT number, {', '.join(columns)} FROM {_table(Order)} WHERE ({where}) AND id <> %s LIMIT %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for _, value in sorted(identifiers)] + [order_id, limit])
        return [dict(zip(["number", *columns], row, strict=True)) for row in cursor.fetchall()]


def risk_order_lines(*, order_id: int) -> list[tuple[int, str, bool]]:
    """(product id, product name, product is high risk) for each line of the order."""
    from catalog.models import Product

    sql = (
        f"SELECT l.product_id, p.name, p.high_risk FROM {_table(OrderLine)} l"
        f" JOIN {_table(Product)} p ON p.id = l.product_id WHERE l.order_id = %s ORDER BY l.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [order_id])
        return [(product_id, name, bool(high_risk)) for product_id, name, high_risk in cursor.fetchall()]


def customer_average_paid(*, email: str, currency: str, excluding_order_id: int) -> float | None:
    """The average total of this email's other paid orders in this currency, or None when it has none."""
    sql = (
        f"SELECT AVG(total_amount) FROM {_table(Order)}"
        " WHERE email = %s AND currency = %s AND paid_at IS NOT NULL AND id <> %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [email, currency, excluding_order_id])
        average = cursor.fetchone()[0]
    return None if average is None else float(average)
