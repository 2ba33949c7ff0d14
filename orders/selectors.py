import re

from orders.models import Order

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


def order_get_by_token(*, token: str) -> Order | None:
    """The order behind a link token, or None. Tokens are opaque; anything else finds nothing."""
    if not _TOKEN.match(token or ""):
        return None
    return Order.objects.prefetch_related("lines__product", "lines__license_keys").filter(token=token).first()


def order_find_for_lookup(*, email: str, number: str) -> Order | None:
    return Order.objects.filter(email=email.strip().lower(), number=number.strip().upper()).first()
