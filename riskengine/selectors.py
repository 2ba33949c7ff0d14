"""Reads for the risk engine and the review queue.

Inside riskengine.asof.as_of(moment) the engine's reads answer as they would have then: linked orders are
those placed by that moment (their card only once paid by then), fraud labels those written before it, and
the customer's history the orders paid before it.
"""

from dataclasses import dataclass

from django.db import connection
from django.db.models import Q

from orders.models import Order
from riskengine.asof import as_of_cached, as_of_now
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
    moment = as_of_now()
    orders, labels, paid = Order.objects.all(), FraudLabel.objects.all(), ()
    if moment is not None:
        orders, labels = orders.filter(created_at__lte=moment), labels.filter(created_at__lt=moment)
        paid = ("paid_at",)
    frontier = {
        row["pk"]: ("", _known_then(row, moment))
        for row in Order.objects.filter(pk=order_id).values("pk", *paid, *values)
    }
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
        matches = orders.filter(query).exclude(pk__in=seen).values("pk", "number", *paid, *values)[:limit]
        next_frontier = {}
        for match in (_known_then(row, moment) for row in matches):
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
    fraud = set(labels.filter(order_id__in=[f[0] for f in found], is_fraud=True).values_list("order_id", flat=True))
    return [Link(order_id=o, number=n, path=p, hops=h, fraud=o in fraud) for o, n, p, h in found]


def _known_then(row: dict, moment) -> dict:
    """The order's identifiers as known at `moment`: its card only once it had paid (None: now, all of them)."""
    card = LINK_FIELDS["card"]
    if moment is not None and row[card] and (row["paid_at"] is None or row["paid_at"] > moment):
        return {**row, card: ""}
    return row


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
    if as_of_now() is not None:  # two configurations replayed at one moment ask the same
        key = ("fraud_links", order_id, tuple(sorted(ids.items())), hops, limit, id(fraud))
        return as_of_cached(key, lambda: _fraud_links(order_id=order_id, ids=ids, fraud=fraud, hops=hops, limit=limit))
    return _fraud_links(order_id=order_id, ids=ids, fraud=fraud, hops=hops, limit=limit)


def _fraud_links(
    *, order_id: int, ids: dict[str, str], fraud: dict[tuple[str, str], str], hops: int, limit: int
) -> list[Link]:
    if hops > 2:
        return [link for link in linked_orders(order_id=order_id, hops=hops) if link.fraud]
    nodes = {*LINK_FIELDS, "mailbox"}
    mine = {(label, str(value)) for label, value in ids.items() if label in nodes and value}
    links = [
        Link(order_id=0, number=fraud[key], path=key[0], hops=1, fraud=True) for key in sorted(mine) if key in fraud
    ]
    if hops < 2 or links or not mine:
        return links
    columns = {key for key in mine if key[0] in LINK_FIELDS}  # a mailbox is no column: it links at hop 1 only
    for row in _orders_sharing(columns, order_id=order_id, limit=limit) if columns else []:
        via = next((label for label, f in LINK_FIELDS.items() if row[f] and (label, str(row[f])) in mine), None)
        if via is None:  # shares only a card it paid with after the moment read as of
            continue
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
    """Other orders sharing any of these (kind, value) identifiers, as dicts of number and LINK_FIELDS.

    As of a moment: the orders placed by then, with their card only if they had paid by then."""
    columns = list(LINK_FIELDS.values())
    where = " OR ".join(f"{LINK_FIELDS[label]} = %s" for label, _ in sorted(identifiers))
    params: list = [value for _, value in sorted(identifiers)] + [order_id]
    moment = as_of_now()
    if moment is None:
        sql = f"SELECT number, {', '.join(columns)} FROM {_table(Order)} WHERE ({where}) AND id <> %s LIMIT %s"
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, limit])
            return [dict(zip(["number", *columns], row, strict=True)) for row in cursor.fetchall()]
    sql = (
        f"SELECT number, paid_at, {', '.join(columns)} FROM {_table(Order)}"
        f" WHERE ({where}) AND id <> %s AND created_at <= %s LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, moment, limit])
        rows = [dict(zip(["number", "paid_at", *columns], row, strict=True)) for row in cursor.fetchall()]
    return [_known_then(row, moment) for row in rows]


def customer_average_paid(*, email: str, currency: str, excluding_order_id: int) -> float | None:
    """The average total of this email's other paid orders in this currency, or None when it has none.

    As of a moment: the orders paid before it. Whatever became of them later (refunded, disputed) is not
    looked at, then or now: an order's status at a past moment is not stored, and its payment is what the
    customer's history is."""
    sql = (
        f"SELECT AVG(total_amount) FROM {_table(Order)}"
        " WHERE email = %s AND currency = %s AND paid_at IS NOT NULL AND id <> %s"
    )
    params: list = [email, currency, excluding_order_id]
    moment = as_of_now()
    if moment is not None:
        sql += " AND paid_at < %s"
        params.append(moment)

    def average() -> float | None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            found = cursor.fetchone()[0]
        return None if found is None else float(found)

    return average() if moment is None else as_of_cached(("customer_average_paid", *params), average)
