"""Reads for the risk engine and the review queue."""

from dataclasses import dataclass

from django.db.models import Q

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
