"""What search engines and share previews read: sitemap.xml, robots.txt, the favicon, schema.org data."""

from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
from django.http import HttpResponse, HttpResponsePermanentRedirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.cache import cache_page
from django.views.decorators.http import require_GET

from catalog.models import Category, Product
from payments.money import to_decimal_string
from storefront.markdown import markdown_to_text
from storefront.models import ShopPage

SITEMAP_SECONDS = 600


@require_GET
@cache_page(SITEMAP_SECONDS)
def sitemap(request):
    """Every page a stranger may land on: home, categories, products on sale, footer pages (English URLs)."""
    paths = [reverse("product-list")]
    paths += [reverse("category", kwargs={"slug": slug}) for slug in Category.objects.values_list("slug", flat=True)]
    products = Product.objects.filter(is_active=True).values_list("slug", flat=True).order_by("slug")
    paths += [reverse("product-detail", kwargs={"slug": slug}) for slug in products]
    paths += [reverse("shop-page", kwargs={"slug": slug}) for slug in ShopPage.objects.values_list("slug", flat=True)]
    xml = render_to_string("storefront/sitemap.xml", {"urls": [settings.SITE_URL + path for path in paths]})
    return HttpResponse(xml, content_type="application/xml; charset=utf-8")


@require_GET
def robots_txt(request):
    """Shop pages are open to crawlers; carts, checkout, orders, downloads, staff pages and the API are not."""
    private = ["/cart/", "/checkout/", "/pay/", "/order/", "/download/", "/admin/", "/review/", "/api/"]
    lines = ["User-agent: *", *[f"Disallow: {path}" for path in private], "Allow: /"]
    lines.append(f"Sitemap: {settings.SITE_URL}{reverse('sitemap')}")
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8")


@require_GET
def favicon(request):
    """Browsers ask for /favicon.ico whatever the page says: send them to the shop's icon."""
    return HttpResponsePermanentRedirect(staticfiles_storage.url("storefront/favicon.svg"))


def product_structured_data(*, product: Product, url: str, image_url: str, in_stock: bool) -> dict:
    """schema.org Product with its Offer, for search results that show price and availability."""
    data = {
        "@context": "https://schema.org",
        "@type": "Product",
        "name": product.localized_name,
        "sku": product.slug,
        "url": url,
        "offers": {
            "@type": "Offer",
            "url": url,
            "price": to_decimal_string(product.price_amount, product.currency),
            "priceCurrency": product.currency,
            "availability": "https://schema.org/InStock" if in_stock else "https://schema.org/OutOfStock",
        },
    }
    description = markdown_to_text(product.localized_description, limit=300)
    if description:
        data["description"] = description
    if image_url:
        data["image"] = [image_url]
    if product.category_id and product.category:
        data["category"] = product.category.localized_name
    return data
