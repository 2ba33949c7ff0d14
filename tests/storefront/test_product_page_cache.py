"""The product page's kept copy (storefront.page_cache): one query for a shopper with nothing of their own,
retired by every change that shows on it, never holding a visitor's CSRF token, and never needed to answer.

Each test keeps its pages under a key prefix of its own in the shared test Redis (other runs use it at the same
time: nothing here flushes it) and deletes them afterwards.
"""

import re
import uuid

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.models import Category, FulfilmentKind, PriceBreak, Product, StockDisplay
from fulfillment.stock import keys_stock_adjust
from storefront.branding import branding_forget
from storefront.models import ShopSettings
from storefront.outages import cache_breaker
from tests.factories import ProductFactory, add_keys
from tests.harness import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def own_cache_keys(settings):
    """The default cache (the test Redis) under a prefix of this test's own; its keys deleted at the end."""
    prefix = f"test-page-cache:{uuid.uuid4().hex}"
    settings.CACHES = {"default": {**django_settings.CACHES["default"], "KEY_PREFIX": prefix}}
    cache_breaker.reset()
    yield
    cache_breaker.reset()
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


def url(product) -> str:
    return reverse("product-detail", kwargs={"slug": product.slug})


def visit(client: Client, product) -> tuple[str, int]:
    """The page's HTML and the SQL queries it cost."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url(product))
    assert response.status_code == 200
    return response.content.decode(), len(queries.captured_queries)


def without_per_request_tokens(html: str) -> str:
    """The page with its CSRF tokens and script nonce blanked: they are new on every response."""
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', 'name="csrfmiddlewaretoken" value=""', html)
    return re.sub(r'nonce="[^"]*"', 'nonce=""', html)


def key_product(**fields):
    product = ProductFactory(**fields)
    add_keys(product, 8)
    return product


def test_a_second_anonymous_visit_costs_one_query_and_shows_the_same_page():
    # Given a product with a description, a category and a quantity price, seen once
    category = Category.objects.create(name="Games", slug="games")
    product = key_product(name="Star Game", description="**Save** the galaxy.", category=category)
    PriceBreak.objects.create(product=product, min_quantity=3, unit_amount=1500)
    shopper = Client()
    first, first_queries = visit(shopper, product)

    # When the same page is opened again, and by another shopper
    again, queries = visit(shopper, product)
    other, other_queries = visit(Client(), product)

    # Then one query (the product row) serves it, and it is the page the first visit rendered
    assert first_queries > 1
    assert queries <= 1 and other_queries <= 1
    assert without_per_request_tokens(again) == without_per_request_tokens(first)
    assert without_per_request_tokens(other) == without_per_request_tokens(first)
    assert "<strong>Save</strong>" in again and "USD 15.00" in again and 'href="/c/games/"' in again


def test_a_kept_page_carries_each_visitors_own_csrf_token_and_the_form_posts():
    # Given a page kept after a first shopper saw it
    product = key_product()
    first_shopper = Client(enforce_csrf_checks=True)
    first_page, _ = visit(first_shopper, product)

    # When a second shopper opens it from the cache and adds the product to the cart with its form
    second_shopper = Client(enforce_csrf_checks=True)
    second_page, queries = visit(second_shopper, product)
    form = re.search(
        r'<form method="post" action="([^"]+)" class="buy"><input type="hidden" '
        r'name="csrfmiddlewaretoken" value="([^"]+)">',
        second_page,
    )
    added = second_shopper.post(form[1], {"quantity": "1", "csrfmiddlewaretoken": form[2]})

    # Then the form held the second shopper's token, accepted by CSRF protection, and not the first one's
    assert queries <= 1
    first_tokens = set(re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', first_page))
    assert form[2] not in first_tokens
    assert added.status_code == 302


def test_a_new_price_saved_shows_on_the_next_visit():
    product = key_product(price_amount=1999)
    shopper = Client()
    visit(shopper, product)

    product.price_amount = 2499
    product.save()
    html, _ = visit(shopper, product)

    assert "USD 24.99" in html and "USD 19.99" not in html
    assert '"price": "24.99"' in html  # the schema.org offer too


def test_a_new_quantity_price_shows_on_the_next_visit():
    product = key_product(price_amount=1000, max_per_order=10)
    shopper = Client()
    before, _ = visit(shopper, product)

    PriceBreak.objects.create(product=product, min_quantity=5, unit_amount=700)
    after, _ = visit(shopper, product)

    assert "USD 7.00" not in before
    assert "5+" in after and "USD 7.00" in after


def test_stock_moving_across_the_low_threshold_shows_on_the_next_visit(django_capture_on_commit_callbacks):
    # Given 6 keys, one above the low-stock threshold, the page kept as "In stock"
    product = ProductFactory(low_stock_threshold=5)
    add_keys(product, 6)
    shopper = Client()
    in_stock, _ = visit(shopper, product)
    visit(shopper, product)

    # When a key leaves the pool (the counter moves by UPDATE: no signal), then the last five
    with django_capture_on_commit_callbacks(execute=True):
        keys_stock_adjust(product_id=product.pk, delta=-1)
    low, low_queries = visit(shopper, product)
    with django_capture_on_commit_callbacks(execute=True):
        keys_stock_adjust(product_id=product.pk, delta=-5)
    sold_out, _ = visit(shopper, product)

    # Then each visit shows the label of the moment
    assert "In stock" in in_stock and "Add to cart" in in_stock
    assert "Low stock" in low and "In stock" not in low and low_queries > 1  # rendered again
    assert "Sold out" in sold_out and "Add to cart" not in sold_out and "OutOfStock" in sold_out


def test_an_exact_count_shows_every_change():
    product = ProductFactory(stock_display=StockDisplay.COUNT, low_stock_threshold=1)
    add_keys(product, 9)
    shopper = Client()
    nine, _ = visit(shopper, product)

    add_keys(product, 1, prefix="MORE")
    ten, _ = visit(shopper, product)

    assert "9 left" in nine and "10 left" in ten


def test_english_and_chinese_pages_are_kept_apart():
    # Given a product named in both languages
    product = key_product(name="Keyboard", name_zh_hans="机械键盘")
    english, chinese = Client(HTTP_ACCEPT_LANGUAGE="en"), Client(HTTP_ACCEPT_LANGUAGE="zh-hans")

    # When each language is seen twice, alternately
    pages = [visit(english, product), visit(chinese, product), visit(english, product), visit(chinese, product)]

    # Then each shopper reads their own language, the second time from the kept copy
    (en_first, _), (zh_first, _), (en_again, en_queries), (zh_again, zh_queries) = pages
    assert "<h1>Keyboard</h1>" in en_first and "<h1>Keyboard</h1>" in en_again
    assert "<h1>机械键盘</h1>" in zh_first and "<h1>机械键盘</h1>" in zh_again
    assert '<html lang="zh-hans">' in zh_again and "加入购物车" in zh_again
    assert en_queries <= 1 and zh_queries <= 1


def test_staff_and_shoppers_with_a_cart_get_a_fresh_page():
    # Given a page kept for anonymous shoppers
    product = key_product(name="Star Game")
    visit(Client(), product)
    staff = Client()
    staff.force_login(get_user_model().objects.create_user("clerk", "clerk@example.com", "pw-clerk-1", is_staff=True))
    with_cart = Client()
    with_cart.post(reverse("cart-add", args=[product.slug]), {"quantity": "2"})

    # When staff and the shopper with a cart open it
    staff_page, staff_queries = visit(staff, product)
    cart_page, cart_queries = visit(with_cart, product)

    # Then both are rendered from the database, the cart count in the header
    assert staff_queries > 1 and cart_queries > 1
    assert "<h1>Star Game</h1>" in staff_page and "<h1>Star Game</h1>" in cart_page
    assert '<span class="cart-count" aria-label="2 items">2</span>' in cart_page


def test_a_shop_renamed_or_a_category_renamed_shows_on_the_next_visit():
    category = Category.objects.create(name="Games", slug="games")
    product = key_product(category=category)
    shopper = Client()
    visit(shopper, product)

    shop = ShopSettings.objects.get_or_create(pk=1)[0]
    shop.name = "Keystone"
    shop.save()
    branding_forget()  # as admin does on save (storefront.admin.shop)
    renamed_shop, _ = visit(shopper, product)
    Category.objects.filter(pk=category.pk).update(name="Video games")
    branding_forget()
    renamed_category, _ = visit(shopper, product)

    assert '<a href="/">Keystone</a> ›' in renamed_shop
    assert ">Video games</a>" in renamed_category and '"category": "Video games"' in renamed_category


def test_a_product_taken_off_sale_is_gone_on_the_next_visit():
    product = key_product()
    shopper = Client()
    visit(shopper, product)

    Product.objects.filter(pk=product.pk).update(is_active=False)  # not even a save: the one query checks it

    assert shopper.get(url(product)).status_code == 404
    assert shopper.get(reverse("product-detail", kwargs={"slug": "no-such-thing"})).status_code == 404


def test_with_redis_down_the_page_still_renders(settings, monkeypatch):
    # Given a product, and the cache pointed at a port nobody listens on
    product = key_product(name="Star Game", kind=FulfilmentKind.LICENSE_KEY)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    cache_breaker.reset()
    monkeypatch.setattr(cache_breaker, "retry_seconds", 3600.0)

    # When shoppers open its page, and the merchant changes the price meanwhile
    first = Client().get(url(product))
    product.price_amount = 2999
    product.save()
    second = Client().get(url(product))

    # Then the pages render from the database
    assert first.status_code == 200 and "<h1>Star Game</h1>" in first.content.decode()
    assert second.status_code == 200 and "USD 29.99" in second.content.decode()
