"""The shopper's cart, kept in the session as {product_id: quantity}."""

from dataclasses import dataclass

from catalog.models import Product
from orders.errors import CheckoutError

SESSION_KEY = "cart"
COUPON_SESSION_KEY = "cart_coupon"


@dataclass(frozen=True)
class CartLine:
    product: Product
    quantity: int

    @property
    def unit_price(self) -> int:
        """The product's price at this quantity (its price breaks counted)."""
        return self.product.unit_price_for(self.quantity)

    @property
    def line_total(self) -> int:
        return self.unit_price * self.quantity


def cart_read(session) -> dict[int, int]:
    raw = session.get(SESSION_KEY) or {}
    cart: dict[int, int] = {}
    for key, qty in raw.items():
        try:
            pid, q = int(key), int(qty)
        except (TypeError, ValueError):
            continue
        if q > 0:
            cart[pid] = q
    return cart


def _write(session, cart: dict[int, int]) -> None:
    session[SESSION_KEY] = {str(pid): qty for pid, qty in cart.items() if qty > 0}
    session.modified = True


def cart_set_quantity(session, *, product: Product, quantity: int) -> None:
    """Set a product's quantity (0 removes it). Enforces the per-product maximum and one currency."""
    cart = cart_read(session)
    if quantity < 0:
        raise CheckoutError("invalid_quantity")
    if quantity > product.max_per_order:
        raise CheckoutError("quantity_over_maximum", maximum=product.max_per_order)
    if quantity and not product.is_active:
        raise CheckoutError("product_unavailable", product=product.localized_name)
    if quantity:
        others = Product.objects.filter(pk__in=[p for p in cart if p != product.pk]).exclude(currency=product.currency)
        if others.exists():
            raise CheckoutError("mixed_currency")
    cart[product.pk] = quantity
    _write(session, cart)


def cart_add(session, *, product: Product, quantity: int = 1) -> None:
    if quantity < 1:
        raise CheckoutError("invalid_quantity")
    current = cart_read(session).get(product.pk, 0)
    cart_set_quantity(session, product=product, quantity=current + quantity)


def cart_clear(session) -> None:
    _write(session, {})
    session.pop(COUPON_SESSION_KEY, None)


def cart_coupon_read(session) -> str:
    """The coupon code the shopper entered in the cart ("" when none); checked again at checkout."""
    code = session.get(COUPON_SESSION_KEY)
    return code if isinstance(code, str) else ""


def cart_coupon_set(session, *, code: str) -> None:
    """Keep a coupon code with the cart ("" removes it)."""
    if code:
        session[COUPON_SESSION_KEY] = code[:40]
    else:
        session.pop(COUPON_SESSION_KEY, None)
    session.modified = True


def cart_lines(session) -> list[CartLine]:
    cart = cart_read(session)
    products = Product.objects.prefetch_related("price_breaks").in_bulk(list(cart))
    return [CartLine(product=products[pid], quantity=qty) for pid, qty in cart.items() if pid in products]
