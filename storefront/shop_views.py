"""The shop's browsing pages: home, categories, search, product pages and the merchant's footer pages.

Thin: they read through catalog.selectors and storefront.branding (cached). A product page costs the same few
queries whatever the catalog holds: the product with its stock count, its images, its price breaks.
"""

from django.conf import settings
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
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
from storefront.models import ShopPage
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


@require_GET
def product_detail(request, slug: str):
    try:
        product = product_get_for_page(slug=slug)
    except Product.DoesNotExist:
        raise Http404 from None
    images = list(product.images.all())
    in_stock = product_in_stock(product)
    url = settings.SITE_URL + reverse("product-detail", kwargs={"slug": slug})
    image_url = settings.SITE_URL + images[0].large.url if images and images[0].large else ""
    price_breaks = [
        {"min_quantity": pb.min_quantity, "unit_amount": pb.unit_amount}
        for pb in product.price_breaks.all()
        if pb.unit_amount < product.price_amount
    ]
    context = {
        "product": product,
        "images": images,
        "image_url": image_url,
        "in_stock": in_stock,
        "stock": product_stock_label(product),
        "quantities": range(1, product.max_per_order + 1),
        "price_breaks": price_breaks,
        "structured_data": product_structured_data(product=product, url=url, image_url=image_url, in_stock=in_stock),
        "is_key": product.kind == FulfilmentKind.LICENSE_KEY,
    }
    return render(request, "storefront/product_detail.html", context)


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
