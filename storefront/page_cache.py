"""The product page's costly part, kept in the cache per product and language for shoppers with nothing of their own.

Kept: what every such shopper sees the same (the main content with its Markdown, pictures and quantity prices,
the title, the share data), rendered by storefront.shop_views. Drawn on every request around it: the header's
cart count, messages, the language switcher, the script nonce and the CSRF tokens (the add-to-cart form's is a
placeholder in the kept content). Only shoppers not logged in and with an empty cart are served a kept copy.

A kept copy is served while its stamp matches what one query on the product row and the cached branding say now:
- the product's version: a random token in the cache, replaced by every save or delete of the product, its price
  breaks or its images (signals connected in StorefrontConfig.ready: catalog knows nothing of pages). Product
  has no `updated_at` to read instead;
- its stock label (in stock / low / sold out, or the exact count), read from the `keys_available` counter, which
  fulfillment moves with UPDATEs that send no signal, and from the merchant's threshold and display choice;
- the row's identity (id, created_at): a slug given to another product never shows the old one's page;
- the branding's version: the shop settings' last save and the categories' names (storefront.branding, whose
  cached copy admin forgets on every save).
A lost version token only makes pages fresh: a new token is random, so no kept copy carries it. With the cache
away (Redis down) every page renders fresh, as before; a change made while it is away shows once its kept copies
expire (PAGE_SECONDS).
"""

import hashlib
import uuid
from dataclasses import dataclass

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from catalog.models import PriceBreak, Product, ProductImage
from catalog.selectors import product_list_for_sale, product_stock_label
from orders.cart import cart_read
from storefront.branding import Branding
from storefront.outages import cache_guarded

PAGE_SECONDS = 600
# Longer than any kept copy lives. Losing the token earlier (eviction) is safe: the next one is new.
VERSION_SECONDS = 24 * 3600
# Raise when what a kept copy holds changes shape (a new part, a part drawn differently).
LAYOUT = 1
# What the kept content holds where the add-to-cart form's CSRF token goes; replaced on every request.
CSRF_SLOT = "csrf-token-slot-0d9f7c1e"
# All the stamp reads of the product, in the one query a kept page costs.
STAMP_FIELDS = (
    "id",
    "created_at",
    "kind",
    "shared_key_ciphertext",  # a reusable key is always in stock
    "keys_available",
    "low_stock_threshold",
    "stock_display",
)


@dataclass(frozen=True)
class PageLookup:
    """Where a product page is kept and under which stamp; `parts` is the kept copy when it is current.

    `stamp` is None when the cache is away: render, and keep nothing."""

    key: str
    stamp: tuple | None
    parts: dict | None


def product_page_keepable(request) -> bool:
    """Whether this visitor sees the product page every shopper sees: not logged in, nothing in the cart."""
    return not request.user.is_authenticated and not cart_read(request.session)


def product_page_lookup(*, slug: str, language: str, branding: Branding) -> PageLookup | None:
    """The kept copy of the product's page if it is current, in one query and one cache round trip.

    None when no product on sale has that slug."""
    product = (  # license_policy: generated keys are always in stock (Product.keys_unlimited)
        product_list_for_sale()
        .select_related("license_policy")
        .filter(slug=slug)
        .only(*STAMP_FIELDS, "license_policy__key_source")
        .first()
    )
    if product is None:
        return None
    key = f"product-page:v{LAYOUT}:{slug}:{language}"
    version_key = _version_key(product.pk)
    kept = cache_guarded(lambda: cache.get_many([key, version_key]), doing="reading a product page")
    if kept is None:
        return PageLookup(key=key, stamp=None, parts=None)
    version = kept.get(version_key) or _version_start(version_key)
    if version is None:
        return PageLookup(key=key, stamp=None, parts=None)
    stock = product_stock_label(product)
    stamp = (
        product.pk,
        product.created_at.isoformat(),
        version,
        stock["state"],
        stock["count"],
        branding_version(branding),
    )
    entry = kept.get(key)
    current = isinstance(entry, tuple) and len(entry) == 2 and entry[0] == stamp
    return PageLookup(key=key, stamp=stamp, parts=entry[1] if current else None)


def product_page_keep(lookup: PageLookup, parts: dict) -> None:
    """Keep a page rendered after its lookup, under the lookup's stamp (read before the rows it shows, so a
    change made while it rendered makes the copy stale, never a stale copy current)."""
    if lookup.stamp is None:
        return
    cache_guarded(lambda: cache.set(lookup.key, (lookup.stamp, parts), PAGE_SECONDS), doing="keeping a product page")


def product_page_forget(*, product_id: int) -> None:
    """Retire every kept copy of the product's page, in every language: a new version none of them carries."""
    cache_guarded(
        lambda: cache.set(_version_key(product_id), uuid.uuid4().hex, VERSION_SECONDS),
        doing="forgetting a product page",
    )


def branding_version(branding: Branding) -> str:
    """Changes when what a kept page shows of the branding changes: the shop's name (every save of its settings
    moves `updated_at`) and the categories (breadcrumb, schema.org data)."""
    shop = branding.settings
    parts = [repr((shop.updated_at, shop.name, shop.name_zh_hans))]
    parts += [repr((c.pk, c.slug, c.name, c.name_zh_hans)) for c in branding.categories]
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=8).hexdigest()


def _version_key(product_id: int) -> str:
    return f"product-page:version:{product_id}"


def _version_start(version_key: str) -> str | None:
    """A first version for a product that has none in the cache (never changed, or evicted)."""

    def start():
        cache.add(version_key, uuid.uuid4().hex, VERSION_SECONDS)
        return cache.get(version_key)  # ours, or another request's that started it first

    return cache_guarded(start, doing="starting a product page version")


# --- what retires kept copies ---------------------------------------------------------------------------------


def _forget_changed_product(sender, instance, using, **kwargs) -> None:
    """Now, so this transaction's own later reads miss the old copy; and again on commit, so a copy kept by a
    shopper who read the old rows between this write and its commit is retired too."""
    product_id = instance.pk if sender is Product else instance.product_id
    if product_id is None:
        return
    product_page_forget(product_id=product_id)
    if transaction.get_connection(using).in_atomic_block:
        transaction.on_commit(lambda: product_page_forget(product_id=product_id), using=using)


def connect_signals() -> None:
    """Called once, from StorefrontConfig.ready()."""
    for model in (Product, PriceBreak, ProductImage):
        for name, signal in (("saved", post_save), ("deleted", post_delete)):
            signal.connect(_forget_changed_product, sender=model, dispatch_uid=f"product-page:{model.__name__}:{name}")
