from django.contrib.auth import get_user_model
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Q, QuerySet

from catalog.models import Category, FulfilmentKind, Product, StockDisplay


def product_list_for_sale() -> QuerySet[Product]:
    """Products on sale; the stock of a license-key product is its `keys_available` counter, nothing is counted."""
    return Product.objects.filter(is_active=True)


def product_get_for_sale(*, slug: str) -> Product:
    return product_list_for_sale().get(slug=slug)


def product_list_for_shelf() -> QuerySet[Product]:
    """Products on sale as the shop's pages show them, with their category, images and price breaks fetched along."""
    # license_policy: whether its keys are generated (Product.keys_unlimited), read in the same query
    return (
        product_list_for_sale().select_related("category", "license_policy").prefetch_related("images", "price_breaks")
    )


def product_get_for_page(*, slug: str) -> Product:
    """One product on sale with everything its page shows, in a fixed number of queries."""
    return product_list_for_shelf().get(slug=slug)


def category_products(*, category: Category) -> QuerySet[Product]:
    return product_list_for_shelf().filter(category=category)


SEARCH_FIELDS = ("name", "name_zh_hans", "description", "description_zh_hans")
MAX_QUERY_LENGTH = 100


def product_search(*, query: str) -> QuerySet[Product]:
    """Products on sale matching the shopper's words.

    PostgreSQL: full-text search over names and descriptions (the "simple" dictionary: the shop speaks two
    languages); names also match as substrings, since Chinese puts no spaces between words. Elsewhere (the
    demo's SQLite): every word must appear in a name or a description.
    """
    query = " ".join(query.split())[:MAX_QUERY_LENGTH]
    if not query:
        return product_list_for_shelf().none()
    if connection.vendor == "postgresql":
        words = SearchQuery(query, search_type="websearch", config="simple")
        matching = (
            Product.objects.annotate(document=SearchVector(*SEARCH_FIELDS, config="simple"))
            .filter(Q(document=words) | Q(name__icontains=query) | Q(name_zh_hans__icontains=query))
            .values("pk")
        )
        return product_list_for_shelf().filter(pk__in=matching)
    found = Q()
    for word in query.split():
        found &= Q(*[Q(**{f"{field}__icontains": word}) for field in SEARCH_FIELDS], _connector=Q.OR)
    return product_list_for_shelf().filter(found)


def product_stock_label(product: Product) -> dict:
    """What the storefront says about stock: {"state": in_stock|low|sold_out, "count": int|None}.

    The count is shown only when the merchant chose exact counts for the product. It is the product's
    `keys_available` counter, kept by the writes that move keys (fulfillment.stock).
    """
    if product.kind != FulfilmentKind.LICENSE_KEY or product.keys_unlimited:
        return {"state": "in_stock", "count": None}
    available = max(product.keys_available, 0)
    if available <= 0:
        state = "sold_out"
    elif available <= product.low_stock_threshold:
        state = "low"
    else:
        state = "in_stock"
    return {"state": state, "count": available if product.stock_display == StockDisplay.COUNT else None}


def product_in_stock(product: Product) -> bool:
    """Whether a shopper can buy at least one unit now."""
    if product.kind != FulfilmentKind.LICENSE_KEY or product.keys_unlimited:
        return True
    return product.keys_available > 0


def merchant_emails() -> list[str]:
    """Active staff with an email address who may change products (the merchants), superusers included: who is
    told about low stock, held orders, disputes and failing channels."""
    return list(
        get_user_model()
        .objects.filter(is_active=True, is_staff=True)
        .exclude(email="")
        .filter(
            Q(is_superuser=True)
            | Q(user_permissions__codename="change_product", user_permissions__content_type__app_label="catalog")
            | Q(groups__permissions__codename="change_product", groups__permissions__content_type__app_label="catalog")
        )
        .values_list("email", flat=True)
        .distinct()
    )
