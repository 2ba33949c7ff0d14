from orders.models import Order


def order_get_by_token(*, token: str) -> Order | None:
    """The order behind a link token, or None. Tokens are opaque; anything else finds nothing."""
    if not token or len(token) > 64:
        return None
    return Order.objects.prefetch_related("lines__product", "lines__license_keys").filter(token=token).first()


def order_find_for_lookup(*, email: str, number: str) -> Order | None:
    return Order.objects.filter(email=email.strip().lower(), number=number.strip().upper()).first()
