import re

from django.db.models import Prefetch, prefetch_related_objects

from orders.models import Order, OrderLine

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


def order_get_by_token(*, token: str) -> Order | None:
    """The order behind a link token, or None. Tokens are opaque; anything else finds nothing."""
    if not _TOKEN.match(token or ""):
        return None
    return Order.objects.prefetch_related("lines__product", "lines__license_keys").filter(token=token).first()


LOOKUP_MAX_ORDERS = 10


def order_list_for_lookup(*, email: str) -> list[Order]:
    """The address's most recent orders, newest first ("find my order" emails their links to it)."""
    return list(Order.objects.filter(email=email.strip().lower()).order_by("-created_at")[:LOOKUP_MAX_ORDERS])


def order_lines(order: Order) -> list[OrderLine]:
    """The order's lines with their products: one query the first time for this Order instance, then its cache
    (an order's lines never change after checkout; delivery and refunds update these same objects)."""
    known = getattr(order, "_prefetched_objects_cache", {}).get("lines")
    if known is None:  # asked once per instance; Django's prefetch machinery costs even when there is nothing to do
        # product__license_policy (fulfillment's, by name): whether a line's keys are generated, in the same query
        lines = OrderLine.objects.select_related("product", "product__license_policy")
        prefetch_related_objects([order], Prefetch("lines", queryset=lines))
        known = order.lines.all()
    return list(known)


def order_lines_remember(order: Order, lines: list[OrderLine]) -> None:
    """Give a new order the lines just created for it, so nothing reads them back."""
    cached = order.lines.all()
    cached._result_cache = lines
    cached._prefetch_done = True
    order._prefetched_objects_cache = {**getattr(order, "_prefetched_objects_cache", {}), "lines": cached}
