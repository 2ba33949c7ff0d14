"""Reads for the risk engine and the review queue."""

import time
from dataclasses import dataclass

from django.db.models import Count, Max, Q

from orders.models import Order
from riskengine.models import FraudLabel

LINK_FIELDS = {"email": "email", "ip": "purchase_ip", "device": "device_id", "card": "card_fingerprint"}


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


_FRAUD_CACHE_SECONDS = 60.0
_fraud_cache: tuple[tuple, float, dict] | None = None


def fraud_identifiers() -> dict[tuple[str, str], str]:
    """(kind, value) -> order number for every identifier of an order labelled fraud.

    Fraud is rare, so this map is small; it is rebuilt when labels change (count and max id) or
    after a minute, and lets the linked-fraud rule answer with one query instead of a graph walk.
    """
    global _fraud_cache
    labels = FraudLabel.objects.filter(is_fraud=True)
    version = tuple(labels.aggregate(n=Count("pk"), last=Max("pk")).values())
    now = time.monotonic()
    if _fraud_cache and _fraud_cache[0] == version and _fraud_cache[1] > now:
        return _fraud_cache[2]
    found: dict[tuple[str, str], str] = {}
    rows = Order.objects.filter(pk__in=labels.values("order_id")).values("number", *LINK_FIELDS.values())
    for row in rows:
        for label, field in LINK_FIELDS.items():
            if row[field]:
                found.setdefault((label, str(row[field])), row["number"])
    _fraud_cache = (version, now + _FRAUD_CACHE_SECONDS, found)
    return found


def fraud_links(*, order_id: int, hops: int = 2, limit: int = 500) -> list[Link]:
    """Fraud-labelled orders reachable from this one through shared identifiers.

    Hop 1: the order shares an identifier with a fraud order. Hop 2: it shares an identifier with
    another order that shares one with a fraud order. One query for the neighbours, the rest in memory.
    """
    fraud = fraud_identifiers()
    if not fraud:
        return []
    if hops > 2:  # deeper walks are rare (backtests, tuning): the general graph walk
        return [link for link in linked_orders(order_id=order_id, hops=hops) if link.fraud]
    values = list(LINK_FIELDS.values())
    me = Order.objects.filter(pk=order_id).values(*values).first()
    if me is None:
        return []
    mine = {(label, str(me[f])) for label, f in LINK_FIELDS.items() if me[f]}
    links = [
        Link(order_id=0, number=fraud[key], path=key[0], hops=1, fraud=True) for key in sorted(mine) if key in fraud
    ]
    if hops < 2 or links:
        return links
    query = Q()
    for label, value in mine:
        query |= Q(**{LINK_FIELDS[label]: value})
    if not query:
        return []
    neighbours = Order.objects.filter(query).exclude(pk=order_id).values("number", *values)[:limit]
    for row in neighbours:
        via = next(label for label, f in LINK_FIELDS.items() if row[f] and (label, str(row[f])) in mine)
        for label, f in LINK_FIELDS.items():
            key = (label, str(row[f]))
            if row[f] and key in fraud:
                links.append(Link(order_id=0, number=fraud[key], path=f"{via} -> {label}", hops=2, fraud=True))
                break
    return links
