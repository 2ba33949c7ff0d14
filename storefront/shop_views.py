"""The shop's browsing pages: home, categories, search, product pages and the merchant's footer pages.

Thin: they read through catalog.selectors and storefront.branding (cached). A product page costs the same few
queries whatever the catalog holds: the product with its stock count, its images, its price breaks; and one query
when its content is kept in the cache (storefront.page_cache), as it is for shoppers with nothing of their own.
"""

from django.conf import settings
from django.http import Http404, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.utils.translation import get_language
from django.views.decorators.http import require_GET

from catalog.models import Category, FulfilmentKind, Product
from catalog.selectors import (
    category_products,
    product_get_for_page,
    product_in_stock,
    product_list_for_shelf,
    product_search,
    product_stock_label,
)
from storefront.branding import brand_colour, branding_get, link_colour_for, text_colour_on
from storefront.markdown import markdown_to_text
from storefront.models import ShopPage
from storefront.page_cache import CSRF_SLOT, product_page_keep, product_page_keepable, product_page_lookup
from storefront.seo import product_structured_data

HOME_FEATURED = 8


def _cards(products) -> list[dict]:
    """What a product tile shows: the product, its stock label and its first image (prefetched)."""
    cards = []
    for product in products:
        images = list(product.images.all())
        cards.append(
            {"product": product, "stock": product_stock_label(product), "image": images[0] if images else None}
        )
    return cards


@require_GET
def home(request):
    """Announcement, categories, featured products, then everything on sale."""
    cards = _cards(product_list_for_shelf())
    featured = [card for card in cards if card["product"].featured][:HOME_FEATURED]
    return render(request, "storefront/home.html", {"featured": featured, "cards": cards})


@require_GET
def category_view(request, slug: str):
    category = get_object_or_404(Category, slug=slug)
    return render(
        request,
        "storefront/category.html",
        {"category": category, "current_category": category, "cards": _cards(category_products(category=category))},
    )


@require_GET
def search_view(request):
    query = request.GET.get("q", "").strip()
    cards = _cards(product_search(query=query)) if query else []
    return render(request, "storefront/search.html", {"query": query, "cards": cards})


def _product_page_parts(*, product: Product, shop) -> dict:
    """What a product's page shows the same to every shopper in the active language: its title, share data and
    main content, rendered once (storefront/_product_main.html) and kept by storefront.page_cache. Strings and a
    dict only, no model instance: a kept copy never loads a model pickled by another release (page_cache.LAYOUT
    is raised when the shape of this dict changes)."""
    images = list(product.images.all())
    in_stock = product_in_stock(product)
    url = settings.SITE_URL + reverse("product-detail", kwargs={"slug": product.slug})
    image_url = settings.SITE_URL + images[0].large.url if images and images[0].large else ""
    price_breaks = [
        {"min_quantity": pb.min_quantity, "unit_amount": pb.unit_amount}
        for pb in product.price_breaks.all()
        if pb.unit_amount < product.price_amount
    ]
    main = render_to_string(
        "storefront/_product_main.html",
        {
            "product": product,
            "shop": shop,
            "images": images,
            "in_stock": in_stock,
            "stock": product_stock_label(product),
            "quantities": range(1, product.max_per_order + 1),
            "price_breaks": price_breaks,
            "is_key": product.kind == FulfilmentKind.LICENSE_KEY,
            "csrf_token": CSRF_SLOT,
        },
    )
    return {
        "name": product.localized_name,
        "summary": markdown_to_text(product.localized_description, limit=160) or product.localized_name,
        "currency": product.currency,
        "image_url": image_url,
        "structured_data": product_structured_data(product=product, url=url, image_url=image_url, in_stock=in_stock),
        "main": str(main),
    }


@require_GET
def product_detail(request, slug: str):
    """A product's page. For shoppers with nothing of their own (not logged in, empty cart) its costly part comes
    from the cache while current (storefront.page_cache): one query on the product row. Others get it fresh."""
    branding = branding_get()
    lookup = None
    if product_page_keepable(request):
        lookup = product_page_lookup(slug=slug, language=get_language(), branding=branding)
        if lookup is None:
            raise Http404
    parts = lookup.parts if lookup is not None else None
    if parts is None:
        try:
            product = product_get_for_page(slug=slug)
        except Product.DoesNotExist:
            raise Http404 from None
        parts = _product_page_parts(product=product, shop=branding.settings)
        if lookup is not None:
            product_page_keep(lookup, parts)
    # the visitor's own CSRF token (a masked copy of their cookie's) into the add-to-cart form
    main = mark_safe(parts["main"].replace(CSRF_SLOT, get_token(request)))
    return render(request, "storefront/product_detail.html", {"page": parts, "main": main})


@require_GET
def shop_page(request, slug: str):
    page = get_object_or_404(ShopPage, slug=slug)
    return render(request, "storefront/page.html", {"page": page})


@require_GET
def brand_css(request):
    """The merchant's colours as CSS variables: a file of its own (no inline style to carry a nonce), kept by
    browsers for a year since its address changes with every save of the shop settings (?v=<time>)."""
    branding = branding_get()
    primary = brand_colour(branding.settings)
    css = f":root{{--brand:{primary};--brand-text:{text_colour_on(primary)};--link:{link_colour_for(primary)}}}\n"
    response = HttpResponse(css, content_type="text/css; charset=utf-8")
    response["Cache-Control"] = "public, max-age=31536000, immutable" if request.GET.get("v") else "no-cache"
    return response
