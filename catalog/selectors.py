from django.db.models import Count, Q, QuerySet

from catalog.models import FulfilmentKind, Product
from fulfillment.models import KeyStatus


def product_list_for_sale() -> QuerySet[Product]:
    """Products on sale, with `keys_available` annotated for license-key products."""
    return Product.objects.filter(is_active=True).annotate(
        keys_available=Count("license_keys", filter=Q(license_keys__status=KeyStatus.AVAILABLE))
    )


def product_get_for_sale(*, slug: str) -> Product:
    return product_list_for_sale().get(slug=slug)


def product_in_stock(product: Product) -> bool:
    """Whether a shopper can buy at least one unit now."""
    if product.kind != FulfilmentKind.LICENSE_KEY:
        return True
    available = getattr(product, "keys_available", None)
    if available is None:
        available = product.license_keys.filter(status=KeyStatus.AVAILABLE).count()
    return available > 0
