import re

from orders.models import Order

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
