from django.db.models import Count, Q, QuerySet

from catalog.models import FulfilmentKind, Product, StockDisplay
from fulfillment.models import KeyStatus


def product_list_for_sale() -> QuerySet[Product]:
    """Products on sale, with `keys_available` annotated for license-key products."""
    return Product.objects.filter(is_active=True).annotate(
        keys_available=Count("license_keys", filter=Q(license_keys__status=KeyStatus.AVAILABLE))
    )


def product_get_for_sale(*, slug: str) -> Product:
    return product_list_for_sale().get(slug=slug)


def product_stock_label(product: Product) -> dict:
    """What the storefront says about stock: {"state": in_stock|low|sold_out, "count": int|None}.

    The count is shown only when the merchant chose exact counts for the product.
    """
    if product.kind != FulfilmentKind.LICENSE_KEY or product.is_reusable_key:
        return {"state": "in_stock", "count": None}
    available = getattr(product, "keys_available", None)
    if available is None:
        available = product.license_keys.filter(status=KeyStatus.AVAILABLE).count()
    if available <= 0:
        state = "sold_out"
    elif available <= product.low_stock_threshold:
        state = "low"
    else:
        state = "in_stock"
    return {"state": state, "count": available if product.stock_display == StockDisplay.COUNT else None}


def product_in_stock(product: Product) -> bool:
    """Whether a shopper can buy at least one unit now."""
    if product.kind != FulfilmentKind.LICENSE_KEY or product.is_reusable_key:
        return True
    available = getattr(product, "keys_available", None)
    if available is None:
        available = product.license_keys.filter(status=KeyStatus.AVAILABLE).count()
    return available > 0
