import re

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from catalog.models import FulfilmentKind
from fulfillment.keys import keys_set_state
from fulfillment.models import DeliveryAccess, LicenseKey
from fulfillment.services import download_token_for_line
from orders.models import Order, OrderStatus
from payments.models import Payment
from storefront.flow.payment import order_mark_paid
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db

ADDRESS_FORM = {
    "ship_name": "Ada Lovelace",
    "ship_line1": "1 Analytical Way",
    "ship_city": "London",
    "ship_postal_code": "N1 1AA",
    "ship_country": "gb",
}


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()


@pytest.fixture
def paid_order(make_order, django_capture_on_commit_callbacks):
    """Check out the given lines and record their payment; delivery runs as it would after commit."""

    def make(*lines: tuple) -> Order:
        order = make_order(*lines)
        with django_capture_on_commit_callbacks(execute=True):
            order_mark_paid(
                order_id=order.pk,
                amount=order.total_amount,
                currency=order.currency,
                payment_ref="pi_test",
                actor="test",
            )
        mail.outbox.clear()
        order.refresh_from_db()
        return order

    return make


def html(response) -> str:
    return response.content.decode()


def cart_of(client) -> dict[str, int]:
    return client.session.get("cart", {})


def test_product_list_shows_products_on_sale_only(client):
    ProductFactory(name="Star Game", price_amount=1999)
    ProductFactory(name="Retired Game", is_active=False)

    response = client.get(reverse("product-list"))

    assert response.status_code == 200
    assert "Star Game" in html(response)
    assert "Retired Game" not in html(response)


def test_product_detail_renders_and_unknown_or_inactive_is_404(client):
    product = ProductFactory(name="Star Game", description="Save the galaxy.")
    add_keys(product, 1)
    retired = ProductFactory(is_active=False)

    response = client.get(reverse("product-detail", kwargs={"slug": product.slug}))

    assert response.status_code == 200
    assert "Star Game" in html(response)
    assert "Save the galaxy." in html(response)
    assert reverse("cart-add", kwargs={"slug": product.slug}) in html(response)
    assert client.get(reverse("product-detail", kwargs={"slug": retired.slug})).status_code == 404
    assert client.get(reverse("product-detail", kwargs={"slug": "no-such-thing"})).status_code == 404


def test_add_update_and_remove_cart_line(client):
    # Given a product on its page
    product = ProductFactory(name="Star Game", max_per_order=5)

    # When two are added, the shopper lands on the cart showing them
    response = client.post(reverse("cart-add", kwargs={"slug": product.slug}), {"quantity": "2"})
    assert response.status_code == 302
    assert response["Location"] == reverse("cart")
    assert cart_of(client) == {str(product.pk): 2}
    page = client.get(reverse("cart"))
    assert "Star Game" in html(page)
    assert 'value="2"' in html(page)

    # When the quantity is updated
    client.post(reverse("cart"), {"product": product.pk, "quantity": "4", "update": ""})
    assert cart_of(client) == {str(product.pk): 4}

    # When the line is removed
    client.post(reverse("cart"), {"product": product.pk, "remove": ""})
    assert cart_of(client) == {}
    assert "Your cart is empty." in html(client.get(reverse("cart")))


def test_cart_update_over_maximum_is_refused_with_a_message(client):
    product = ProductFactory(max_per_order=3)
    client.post(reverse("cart-add", kwargs={"slug": product.slug}), {"quantity": "1"})

    response = client.post(reverse("cart"), {"product": product.pk, "quantity": "9"}, follow=True)

    assert cart_of(client) == {str(product.pk): 1}
    assert "at most 3" in html(response)


def test_cart_post_with_garbled_product_id_is_404():
    response = Client(raise_request_exception=False).post(reverse("cart"), {"product": "abc", "quantity": "1"})

    assert response.status_code == 404


@pytest.mark.parametrize("quantity", ["-1", "0", "abc"])
def test_add_to_cart_with_a_bad_quantity_changes_nothing(client, quantity):
    product = ProductFactory(max_per_order=5)
    client.post(reverse("cart-add", kwargs={"slug": product.slug}), {"quantity": "3"}, follow=True)

    response = client.post(reverse("cart-add", kwargs={"slug": product.slug}), {"quantity": quantity}, follow=True)

    assert cart_of(client) == {str(product.pk): 3}
    assert "Added to your cart." not in html(response)


def test_digital_checkout_asks_only_for_email_and_redirects_to_payment(client):
    # Given a cart with only digital goods
    product = ProductFactory(price_amount=1999)
    add_keys(product, 2)
    client.post(reverse("cart-add", kwargs={"slug": product.slug}), {"quantity": "2"})

    # When the checkout page is shown, it has no address fields
    page = client.get(reverse("checkout"))
    assert page.status_code == 200
    assert 'name="email"' in html(page)
    assert 'name="ship_' not in html(page)
    assert "shipping-address" not in html(page)

    # When only an email is posted
    response = client.post(reverse("checkout"), {"email": "buyer@example.com"})

    # Then the order exists without shipping and the shopper goes to its payment page
    order = Order.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/pay/{order.token}/"
    assert (order.email, order.subtotal_amount, order.shipping_amount, order.total_amount) == (
        "buyer@example.com",
        3998,
        0,
        3998,
    )
    assert cart_of(client) == {}


def test_physical_checkout_requires_an_address(client, settings):
    # Given a cart with a physical item
    settings.SHIPPING_FLAT_FEE = 650
    book = ProductFactory(kind=FulfilmentKind.PHYSICAL, price_amount=2500)
    client.post(reverse("cart-add", kwargs={"slug": book.slug}), {"quantity": "1"})

    # When the checkout page is shown, it asks for the address
    page = client.get(reverse("checkout"))
    assert 'id="shipping-address"' in html(page)
    for field in ADDRESS_FORM:
        assert f'name="{field}"' in html(page)

    # When only an email is posted
    response = client.post(reverse("checkout"), {"email": "buyer@example.com"})

    # Then the form comes back with errors and no order is created
    assert response.status_code == 200
    assert "errorlist" in html(response)
    assert not Order.objects.exists()
    assert cart_of(client) == {str(book.pk): 1}


def test_physical_checkout_with_address_charges_shipping(client, settings):
    settings.SHIPPING_FLAT_FEE = 650
    book = ProductFactory(kind=FulfilmentKind.PHYSICAL, price_amount=2500)
    client.post(reverse("cart-add", kwargs={"slug": book.slug}), {"quantity": "1"})

    response = client.post(reverse("checkout"), {"email": "buyer@example.com", **ADDRESS_FORM})

    order = Order.objects.get()
    assert response["Location"] == f"/pay/{order.token}/"
    assert (order.subtotal_amount, order.shipping_amount, order.total_amount) == (2500, 650, 3150)
    assert (order.ship_line1, order.ship_country) == ("1 Analytical Way", "GB")


def test_checkout_refused_by_the_shop_re_renders_with_the_reason(client, django_capture_on_commit_callbacks):
    # Given a cart whose keys sold out after it was filled (the merchant retired them)
    product = ProductFactory(name="Star Game")
    add_keys(product, 1)
    client.post(reverse("cart-add", kwargs={"slug": product.slug}), {"quantity": "1"})
    with django_capture_on_commit_callbacks(execute=True):
        keys = list(product.license_keys.values_list("pk", flat=True))
        assert keys_set_state(key_ids=keys, action="retire", actor="merchant") == 1

    # When the shopper checks out
    response = client.post(reverse("checkout"), {"email": "buyer@example.com"})

    # Then the page says why and no order exists
    assert response.status_code == 200
    assert "Only 0 left of" in html(response)
    assert not Order.objects.exists()


def test_order_page_by_token_shows_only_that_orders_keys(client, paid_order):
    # Given two delivered orders
    product = ProductFactory()
    add_keys(product, 2)
    mine, theirs = paid_order((product, 1)), paid_order((product, 1))
    my_key = LicenseKey.objects.get(order_line__order=mine).reveal()
    their_key = LicenseKey.objects.get(order_line__order=theirs).reveal()

    # When my order's page is opened by its token, the key stays hidden until revealed
    response = client.get(f"/order/{mine.token}/")
    assert response.status_code == 200
    assert my_key not in html(response) and "Reveal key" in html(response)
    assert response["Cache-Control"] == "no-store"

    # Then revealing shows my key only, and is logged with IP and user agent
    revealed = client.post(
        f"/order/{mine.token}/reveal/", {"line": mine.lines.get().pk}, HTTP_USER_AGENT="UA/1", follow=True
    )
    assert revealed.redirect_chain == [(f"/order/{mine.token}/", 303)]
    assert my_key in html(revealed)
    assert their_key not in html(revealed)
    assert revealed["Cache-Control"] == "no-store"
    access = DeliveryAccess.objects.get(order=mine)
    assert (access.kind, access.ip, access.user_agent) == ("reveal", "127.0.0.1", "UA/1")


def test_a_line_of_another_order_cannot_be_revealed_through_my_token(client, paid_order):
    product = ProductFactory()
    add_keys(product, 2)
    mine, theirs = paid_order((product, 1)), paid_order((product, 1))

    response = client.post(f"/order/{mine.token}/reveal/", {"line": theirs.lines.get().pk})

    assert response.status_code == 404
    assert not DeliveryAccess.objects.exists()


@pytest.mark.parametrize(
    "make_token",
    [
        lambda token: "x" * 43,
        lambda token: token[:-1],
        lambda token: token.swapcase(),
        lambda token: token + "A",
        lambda token: token + "A" * 100,
        lambda token: "' OR 1=1 --",
        lambda token: "%E2%98%83",
    ],
    ids=["wrong", "truncated", "case-changed", "one-char-more", "overlong", "sql-ish", "unicode"],
)
def test_order_page_with_a_bad_token_is_404_and_shows_no_keys(client, paid_order, make_token):
    product = ProductFactory()
    add_keys(product, 1)
    order = paid_order((product, 1))
    key = LicenseKey.objects.get(order_line__order=order).reveal()

    response = client.get(f"/order/{make_token(order.token)}/")

    assert response.status_code == 404
    assert key not in html(response)


def test_order_page_with_a_nul_byte_in_the_token_is_404():
    response = Client(raise_request_exception=False).get("/order/%00/")

    assert response.status_code == 404


def without_csrf(response) -> str:
    """The page without what differs on every request: the CSRF token and the CSP nonce."""
    return re.sub(r'(name="csrfmiddlewaretoken" value|nonce)="[^"]+"', "", html(response))


def test_order_lookup_answers_the_same_whether_or_not_the_address_has_orders(client, make_order):
    # Given two orders of one address, and an address with none
    first = make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1), email="buyer@example.com")
    second = make_order((ProductFactory(kind=FulfilmentKind.DOWNLOAD), 1), email="buyer@example.com")

    # When a shopper asks with the address that has none, and then with the buyer's (any case)
    miss = client.post(reverse("order-lookup"), {"email": "nobody@example.com"})
    assert mail.outbox == []
    hit = client.post(reverse("order-lookup"), {"email": "BUYER@example.com"})

    # Then both answers are identical and carry no link; one email to the buyer holds both links
    assert miss.status_code == hit.status_code == 200
    assert without_csrf(miss) == without_csrf(hit)
    assert first.token not in html(hit) and second.token not in html(hit)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["buyer@example.com"]
    assert f"/order/{first.token}/" in mail.outbox[0].body
    assert f"/order/{second.token}/" in mail.outbox[0].body


def test_order_lookup_asks_for_the_email_only(client):
    page = html(client.get(reverse("order-lookup")))

    assert 'name="email"' in page
    assert 'name="number"' not in page


def test_order_lookup_sends_nothing_for_an_address_without_orders(client, make_order):
    order = make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1), email="buyer@example.com")

    response = client.post(reverse("order-lookup"), {"email": "attacker@example.com"})

    assert response.status_code == 200
    assert mail.outbox == []
    assert order.token not in html(response)


def test_order_lookup_is_rate_limited_per_ip(settings, make_order, time_machine):
    # Given one IP that has used up its lookups for the hour (a clock that stands still: the limit counts per
    # clock hour, and a count started before the turn of the hour would start again from zero after it)
    time_machine.move_to(timezone.now(), tick=False)
    make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1), email="buyer@example.com")
    guesser = Client(REMOTE_ADDR="198.51.100.9")
    for i in range(settings.ORDER_LOOKUP_RATE):
        response = guesser.post(reverse("order-lookup"), {"email": f"guess{i}@example.com"})
        assert response.status_code == 200

    # When it tries once more, even with an address that has orders
    response = guesser.post(reverse("order-lookup"), {"email": "buyer@example.com"})

    # Then it is refused and nothing is sent; another IP is not affected
    assert response.status_code == 429
    assert mail.outbox == []
    other = Client(REMOTE_ADDR="198.51.100.10")
    assert other.post(reverse("order-lookup"), {"email": "buyer@example.com"}).status_code == 200
    assert len(mail.outbox) == 1


def test_language_switcher_changes_the_page_language(client):
    ProductFactory(name="Star Game", name_zh_hans="星际游戏")
    assert '<html lang="en">' in html(client.get(reverse("product-list")))

    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    assert response.status_code == 302

    page = client.get(reverse("product-list"))
    assert '<html lang="zh-hans">' in html(page)
    assert "星际游戏" in html(page)


@pytest.fixture
def download_product(settings, tmp_path):
    """A download product whose file lives in a throwaway private storage."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(tmp_path)}},
    }
    product = ProductFactory(kind=FulfilmentKind.DOWNLOAD, name="Manual")
    product.download_file.save("manual.pdf", ContentFile(b"%PDF-1.4 the manual"), save=True)
    return product


def download_link(client, order: Order) -> str:
    page = html(client.get(f"/order/{order.token}/"))
    links = re.findall(r'href="(/download/[^"]+/)"', page)
    assert len(links) == 1, page
    return links[0]


def test_download_link_streams_the_file_until_the_order_is_refunded(client, paid_order, download_product):
    # Given a delivered download and the link on its order page
    order = paid_order((download_product, 1))
    assert order.status == OrderStatus.FULFILLED
    link = download_link(client, order)

    # When the link is followed, the file streams as an attachment
    response = client.get(link)
    assert response.status_code == 200
    assert response.streaming
    assert b"".join(response.streaming_content) == b"%PDF-1.4 the manual"
    assert response["Content-Disposition"].startswith("attachment")
    assert "manual" in response["Content-Disposition"]

    # When the order is refunded, the same link is gone for good
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.REFUNDED)
    refused = client.get(link)
    assert refused.status_code == 410
    assert b"%PDF" not in refused.content
    assert "/download/" not in html(client.get(f"/order/{order.token}/"))


def test_tampered_download_token_is_404(client, paid_order, download_product):
    order = paid_order((download_product, 1))
    link = download_link(client, order)
    token = link.removeprefix("/download/").removesuffix("/")
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")

    response = client.get(f"/download/{tampered}/")

    assert response.status_code == 404
    assert b"%PDF" not in response.content


def test_signed_link_for_a_line_that_is_not_a_download_is_404(client, paid_order):
    product = ProductFactory()
    add_keys(product, 1)
    order = paid_order((product, 1))

    response = client.get(f"/download/{download_token_for_line(order.lines.get())}/")

    assert response.status_code == 404


def test_pay_page_opens_a_payment_and_renders_the_card_form(client, localstripe, make_order, settings):
    # Given a pending order
    product = ProductFactory(price_amount=2500)
    add_keys(product, 1)
    order = make_order((product, 1))

    # When its payment page is opened
    response = client.get(f"/pay/{order.token}/")

    # Then a PaymentIntent for the total exists at Stripe and the page loads Stripe.js with a card element
    assert response.status_code == 200
    payment = Payment.objects.get(order=order)
    assert payment.provider_ref.startswith("pi_")
    assert payment.amount == 2500
    stripe_js = f"{settings.STRIPE_API_BASE}/js.stripe.com/v3/"  # the suite's own localstripe
    assert f'<script src="{stripe_js}"' in html(response)
    assert 'id="card-element"' in html(response)
    assert settings.STRIPE_PUBLISHABLE_KEY in html(response)
    assert reverse("api-order-pay", kwargs={"token": order.token}) in html(response)


def test_pay_page_of_a_paid_order_redirects_to_the_order(client, paid_order):
    product = ProductFactory()
    add_keys(product, 1)
    order = paid_order((product, 1))

    response = client.get(f"/pay/{order.token}/")

    assert response.status_code == 302
    assert response["Location"] == f"/order/{order.token}/"
    assert not Payment.objects.exists()


def test_pay_page_with_a_bad_token_is_404(client):
    assert client.get("/pay/not-a-real-token/").status_code == 404


def test_reveal_form_passes_csrf_as_a_browser_sends_it(paid_order):
    # Browsers send the page's Origin on the form POST unless the page's referrer policy hides it
    product = ProductFactory()
    add_keys(product, 1)
    order = paid_order((product, 1))
    browser = Client(enforce_csrf_checks=True)

    page = browser.get(f"/order/{order.token}/")
    assert page["Referrer-Policy"] == "same-origin"
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html(page)).group(1)
    revealed = browser.post(
        f"/order/{order.token}/reveal/",
        {"line": order.lines.get().pk, "csrfmiddlewaretoken": token},
        HTTP_ORIGIN="http://testserver",
        follow=True,
    )

    assert revealed.status_code == 200
    assert LicenseKey.objects.get(order_line__order=order).reveal() in html(revealed)


def test_checkout_records_the_device_cookie_and_fingerprint(client):
    # Given a shopper's browser with the shop's device cookie and a light fingerprint
    product = ProductFactory(kind=FulfilmentKind.SERVICE)
    client.get("/")
    device = client.cookies["sf_device"].value
    client.post(reverse("cart-add", kwargs={"slug": product.slug}), {"quantity": "1"})

    # When they check out
    client.post(reverse("checkout"), {"email": "dev@example.com", "device_fp": "ab" * 32})

    # Then the order carries the device id and the fingerprint is kept with its creation event
    order = Order.objects.get(email="dev@example.com")
    assert order.device_id == device and len(device) >= 16
    assert order.events.get(type="order_created").data["device_fingerprint"] == "ab" * 32
    assert client.cookies["sf_device"]["httponly"]


def test_a_held_order_tells_the_shopper_honestly_how_long_the_check_takes(client, make_order):
    from riskengine.models import RiskSettings

    RiskSettings.objects.update_or_create(pk=1, defaults={"review_deadline_hours": 6})
    order = make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1))
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.ON_HOLD)

    page = html(client.get(f"/order/{order.token}/"))

    assert "at most 6 hours" in page
    assert "refunded, by then" in page
