"""The shop's own pages and brand: Markdown kept safe, quantity prices, search, SEO data, pictures, admin money."""

import io
import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from catalog.models import Category, FulfilmentKind, PriceBreak, ProductImage
from catalog.services import product_image_prepare
from orders.models import Order
from storefront.branding import branding_forget, contrast_ratio, link_colour_for, text_colour_on
from storefront.models import ShopPage, ShopSettings
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_branding():
    """Pictures go to the test run's public folder (storefront.settings_test); the branding cache starts empty."""
    cache.clear()
    yield
    cache.clear()


def page(path: str, client: Client | None = None) -> str:
    response = (client or Client()).get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.content.decode()


def picture(size=(1600, 1000)) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", size, "#3366aa").save(buffer, format="PNG")
    return SimpleUploadedFile("photo.png", buffer.getvalue(), content_type="image/png")


def test_a_description_is_markdown_without_scripts_or_handlers():
    product = ProductFactory(
        kind=FulfilmentKind.SERVICE,
        description="**Bold** and [a link](https://example.com)\n\n<script>alert(1)</script>"
        '<img src=x onerror="alert(2)"> [bad](javascript:alert(3))',
    )

    html = page(reverse("product-detail", kwargs={"slug": product.slug}))

    assert "<strong>Bold</strong>" in html
    assert 'href="https://example.com"' in html and 'rel="noopener noreferrer nofollow"' in html
    assert "<script>alert" not in html and "onerror" not in html and "javascript:" not in html


def test_quantity_prices_show_on_the_product_and_count_at_checkout(client, make_order):
    product = ProductFactory(price_amount=1000, max_per_order=10)
    add_keys(product, 10)
    PriceBreak.objects.create(product=product, min_quantity=3, unit_amount=800)

    html = page(reverse("product-detail", kwargs={"slug": product.slug}))
    order = make_order((product, 3))
    single = make_order((product, 2))

    assert "3+" in html and "USD 8.00" in html
    assert (order.subtotal_amount, order.lines.get().unit_price) == (2400, 800)
    assert single.subtotal_amount == 2000


def test_search_finds_by_name_and_description_and_not_others():
    ProductFactory(name="Photo Editor", kind=FulfilmentKind.SERVICE, description="Edit pictures")
    ProductFactory(name="Keyboard", kind=FulfilmentKind.SERVICE, name_zh_hans="机械键盘")
    ProductFactory(name="Hidden Photo", kind=FulfilmentKind.SERVICE, is_active=False)

    by_word = page(reverse("search") + "?q=pictures")
    by_chinese = page(reverse("search") + "?q=键盘")

    assert "Photo Editor" in by_word and "Keyboard" not in by_word and "Hidden Photo" not in by_word
    assert "Keyboard" in by_chinese and "Photo Editor" not in by_chinese


def test_a_category_page_lists_its_products_and_the_menu_follows_the_merchants_order():
    later = Category.objects.create(name="Zeta first", slug="zeta", position=1)
    Category.objects.create(name="Alpha second", slug="alpha", position=2)
    ProductFactory(name="In zeta", kind=FulfilmentKind.SERVICE, category=later)
    ProductFactory(name="Elsewhere", kind=FulfilmentKind.SERVICE)

    html = page(reverse("category", kwargs={"slug": "zeta"}))

    assert "In zeta" in html and "Elsewhere" not in html
    assert html.index("Zeta first") < html.index("Alpha second")


def test_a_product_page_carries_its_canonical_url_opengraph_and_schema_org_offer(settings):
    settings.SITE_URL = "https://shop.example.com"
    product = ProductFactory(name="Photo Editor", price_amount=2900)
    add_keys(product, 3)

    html = page(reverse("product-detail", kwargs={"slug": product.slug}))
    data = json.loads(re.search(r'<script type="application/ld\+json" nonce="[^"]+">(.*?)</script>', html, re.S)[1])

    assert f'<link rel="canonical" href="https://shop.example.com/p/{product.slug}/">' in html
    assert '<meta property="og:type" content="product">' in html
    assert data["@type"] == "Product" and data["name"] == "Photo Editor"
    assert data["offers"] == {
        "@type": "Offer",
        "url": f"https://shop.example.com/p/{product.slug}/",
        "price": "29.00",
        "priceCurrency": "USD",
        "availability": "https://schema.org/InStock",
    }


def test_sitemap_lists_products_on_sale_and_robots_points_to_it(settings):
    settings.SITE_URL = "https://shop.example.com"
    on_sale = ProductFactory(kind=FulfilmentKind.SERVICE)
    off_sale = ProductFactory(kind=FulfilmentKind.SERVICE, is_active=False)
    ShopPage.objects.create(slug="terms", title="Terms", body="Be nice.")

    sitemap = page(reverse("sitemap"))
    robots = page(reverse("robots"))

    assert f"<loc>https://shop.example.com/p/{on_sale.slug}/</loc>" in sitemap
    assert off_sale.slug not in sitemap and "/pages/terms/" in sitemap
    assert "Sitemap: https://shop.example.com/sitemap.xml" in robots and "Disallow: /order/" in robots


def test_the_brand_set_in_admin_shows_on_the_next_page():
    boss = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-boss-1")
    merchant = Client()
    merchant.force_login(boss)
    page("/")  # cached with the defaults

    response = merchant.post(
        reverse("admin:storefront_shopsettings_change", args=[ShopSettings.objects.get_or_create(pk=1)[0].pk]),
        {
            "name": "Keystone",
            "name_zh_hans": "",
            "tagline": "",
            "tagline_zh_hans": "",
            "primary_colour": "#aa2200",
            "announcement": "Sale today",
            "announcement_zh_hans": "",
        },
    )

    assert response.status_code == 302
    html = page("/")
    assert "Keystone" in html and '<div class="announcement" role="note">Sale today</div>' in html
    assert "--brand:#aa2200" in page(reverse("brand-css"))


def test_an_uploaded_image_is_served_as_webp_with_its_size():
    product = ProductFactory(kind=FulfilmentKind.SERVICE)
    image = ProductImage.objects.create(product=product, original=picture())

    product_image_prepare(image=image)
    branding_forget()
    html = page(reverse("product-detail", kwargs={"slug": product.slug}))
    served = Client().get(image.large.url)

    assert (image.large_width, image.large_height) == (1200, 750)
    assert (image.thumb_width, image.thumb_height) == (480, 300)
    assert f'src="{image.large.url}" width="1200" height="750"' in html
    assert served.status_code == 200 and served["Content-Type"] == "image/webp"
    assert "immutable" in served["Cache-Control"]
    assert Client().get("/media/../secrets.txt").status_code == 404


def test_brand_colours_stay_readable():
    assert text_colour_on("#ffee00") == "#111111" and text_colour_on("#0b5cad") == "#ffffff"
    assert link_colour_for("#ffee00") != "#ffee00"
    assert contrast_ratio(link_colour_for("#0b5cad"), "#ffffff") >= 4.5


def test_admin_takes_prices_in_major_units_and_keeps_paid_evidence_read_only(make_order):
    boss = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-boss-1")
    merchant = Client()
    merchant.force_login(boss)
    product = ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=1999)
    form = merchant.get(reverse("admin:catalog_product_change", args=[product.pk])).content.decode()
    order = make_order((product, 1))
    Order.objects.filter(pk=order.pk).update(card_country="GB", device_id="dev-1")

    order_page = merchant.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()

    assert 'name="price" value="19.99"' in form and 'name="price_amount"' not in form
    assert "United Kingdom (GB)" in order_page and "dev-1" in order_page
    assert 'name="device_id"' not in order_page and 'name="card_country"' not in order_page
    assert 'id="lines-empty"' not in order_page  # no row to add a line
