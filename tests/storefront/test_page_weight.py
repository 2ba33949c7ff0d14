"""No shopper page ships more than 100 KB of HTML, CSS and JavaScript before images.

Each page of the demo shop is fetched with the test client and weighed with every stylesheet and script it
references: the shop's static files as they are on disk, its brand stylesheet as the view answers it.
Scripts from another origin (the payment provider's Stripe.js on the pay page) are the provider's, not the shop's.
"""

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from catalog.models import Product
from orders.models import Order
from tests.conftest import record_payment

pytestmark = pytest.mark.django_db

BUDGET_BYTES = 100 * 1024


class _Assets(HTMLParser):
    """The stylesheets and scripts a page asks for."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "link" and "stylesheet" in (attributes.get("rel") or "").split() and attributes.get("href"):
            self.urls.append(attributes["href"])
        elif tag == "script" and attributes.get("src"):
            self.urls.append(attributes["src"])


def asset_bytes(client: Client, url: str) -> int:
    path = urlsplit(url).path
    if path.startswith(settings.STATIC_URL):
        found = finders.find(path.removeprefix(settings.STATIC_URL))
        assert found, f"{url} is not one of the shop's static files"
        return Path(found).stat().st_size
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(b"".join(response.streaming_content) if response.streaming else response.content)


def page_weight(client: Client, path: str, *, status: int = 200) -> dict[str, int]:
    """Bytes of the page's HTML and of each same-origin stylesheet and script it references."""
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    html = response.content.decode()
    parser = _Assets()
    parser.feed(html)
    assert parser.urls, f"{path} references no stylesheet at all: the weighing found nothing to weigh"
    weights = {path: len(response.content)}
    for url in parser.urls:
        if not urlsplit(url).netloc:
            weights[url] = asset_bytes(client, url)
    return weights


def test_no_shopper_page_ships_more_than_100_kb_before_images(
    client, localstripe, django_capture_on_commit_callbacks, tmp_path
):
    # Given the demo shop (seeded as it commits: its keys are counted in stock) and a shopper with a key in their cart
    cache.clear()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", stdout=tmp_path.joinpath("seed.log").open("w"))
    client.post("/p/photo-editor-pro/add/", {"quantity": "1"})
    weights = {}

    # When every shopper page is weighed, buying the key on the way
    for name, path, status in (
        ("home", "/", 200),
        ("category", "/c/software/", 200),
        ("search", "/search/?q=photo", 200),
        ("product", "/p/photo-editor-pro/", 200),
        ("footer page", "/pages/terms/", 200),
        ("find my order", "/order/lookup/", 200),
        ("not found", "/no-such-page/", 404),
        ("cart", "/cart/", 200),
        ("checkout", "/checkout/", 200),
    ):
        weights[name] = page_weight(client, path, status=status)
    assert client.post("/checkout/", {"email": "light@example.com"}).status_code == 302
    order = Order.objects.get(email="light@example.com")
    weights["pay"] = page_weight(client, f"/pay/{order.token}/")
    record_payment(order, django_capture_on_commit_callbacks)
    weights["order"] = page_weight(client, f"/order/{order.token}/")

    # Then each is under the budget: its HTML plus its own stylesheets and scripts
    assert order.lines.get().product == Product.objects.get(slug="photo-editor-pro")
    heavy = {name: parts for name, parts in weights.items() if sum(parts.values()) > BUDGET_BYTES}
    assert not heavy, f"over {BUDGET_BYTES} bytes: {heavy}"
    assert all(len(parts) >= 3 for parts in weights.values()), weights  # the HTML, shop.css, shop.js at least


def test_the_weighing_counts_the_pages_stylesheets_and_scripts(client):
    # Given a page whose HTML is small
    weights = page_weight(client, "/order/lookup/")

    # Then the shop's stylesheet and script are counted at their size on disk
    css = Path(finders.find("storefront/shop.css")).stat().st_size
    js = Path(finders.find("storefront/shop.js")).stat().st_size
    assert css in weights.values() and js in weights.values(), weights
