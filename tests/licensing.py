"""Helpers for the license tests: a product with generated keys, a paid order's keys in clear."""

from catalog.models import Product
from fulfillment.models import KeySource, LicenseKey, LicensePolicy
from tests.conftest import record_payment
from tests.factories import ProductFactory


def generated_product(*, activation_limit: int | None = 2, expires_after_days: int | None = None, **fields) -> Product:
    product = ProductFactory(**fields)
    LicensePolicy.objects.create(
        product=product,
        key_source=KeySource.GENERATED,
        activation_limit=activation_limit,
        expires_after_days=expires_after_days,
    )
    return Product.objects.get(pk=product.pk)


def order_keys(order) -> list[str]:
    """The order's sold keys in clear (tests only: the shop decrypts only to show a key to its buyer)."""
    keys = LicenseKey.objects.filter(order_line__order=order).order_by("order_line_id", "unit_index")
    return [key.reveal() for key in keys]


def bought_key(make_order, capture, product: Product, *, quantity: int = 1, email: str = "dev@example.com"):
    """A paid, delivered order of `product` and its first key."""
    order = make_order((product, quantity), email=email)
    order = record_payment(order, capture)
    return order, order_keys(order)[0]
