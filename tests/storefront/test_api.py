import json
from urllib.parse import urlencode

import pytest
from django.test import Client
from drf_spectacular.validation import validate_schema

from catalog.models import FulfilmentKind
from orders.models import Order
from payments.models import Payment
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db

ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Analytical Way",
    "city": "London",
    "postal_code": "N1 1AA",
    "country": "gb",
}


def put_json(client, path: str, body):
    return client.put(path, body, content_type="application/json")


def post_json(client, path: str, body):
    return client.post(path, body, content_type="application/json")


def error_of(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def test_schema_is_a_valid_openapi_document_listing_the_endpoints(client):
    response = client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert "openapi" in schema
    validate_schema(schema)
    for path in ("/api/products/", "/api/products/{slug}/", "/api/cart/", "/api/checkout/", "/api/orders/{token}/"):
        assert path in schema["paths"]


def test_schema_default_format_is_served(client):
    response = client.get("/api/schema/")

    assert response.status_code == 200
    assert b"openapi:" in response.content
    assert b"/api/checkout/" in response.content


def test_docs_page_renders(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_product_list_lists_products_on_sale_with_stock(client):
    # Given a key product with stock, one without, a physical one and one off sale
    stocked = ProductFactory(name="Stocked", price_amount=1999)
    add_keys(stocked, 1)
    ProductFactory(name="Sold Out")
    ProductFactory(name="Book", kind=FulfilmentKind.PHYSICAL)
    ProductFactory(name="Retired", is_active=False)

    response = client.get("/api/products/")

    assert response.status_code == 200
    by_name = {p["name"]: p for p in response.json()}
    assert set(by_name) == {"Stocked", "Sold Out", "Book"}
    assert by_name["Stocked"] == {
        "slug": stocked.slug,
        "name": "Stocked",
        "description": "",
        "kind": "license_key",
        "price_amount": 1999,
        "currency": "USD",
        "max_per_order": 5,
        "requires_shipping": False,
        "in_stock": True,
        "stock": {"state": "low", "count": None},  # 1 key, threshold 5
        "price_breaks": [],
        "billing_interval": None,
        "trial_days": 0,
        "key_source": "pool",  # issue 15: how its keys are made
        "activation_limit": None,
    }
    assert by_name["Sold Out"]["in_stock"] is False
    assert by_name["Sold Out"]["stock"] == {"state": "sold_out", "count": None}
    assert by_name["Book"]["requires_shipping"] is True


def test_product_detail_by_slug(client):
    product = ProductFactory(name="Star Game", price_amount=2500)

    response = client.get(f"/api/products/{product.slug}/")

    assert response.status_code == 200
    assert (response.json()["slug"], response.json()["price_amount"]) == (product.slug, 2500)


@pytest.mark.parametrize("slug", ["no-such-product", "retired"])
def test_unknown_or_retired_product_is_404_json(client, slug):
    ProductFactory(slug="retired", is_active=False)

    response = client.get(f"/api/products/{slug}/")

    assert response.status_code == 404
    error_of(response)


def test_unknown_product_404_has_a_not_found_code(client):
    response = client.get("/api/products/no-such-product/")

    assert error_of(response)["code"] in {"not_found", "product_not_found"}


def test_cart_put_get_delete_round_trip(client):
    # Given two products
    game = ProductFactory(price_amount=1000)
    manual = ProductFactory(price_amount=250, kind=FulfilmentKind.DOWNLOAD)

    # When lines are put into the cart
    assert put_json(client, "/api/cart/", {"product": game.slug, "quantity": 2}).status_code == 200
    response = put_json(client, "/api/cart/", {"product": manual.slug, "quantity": 1})

    # Then the cart reads back with totals in minor units
    assert response.status_code == 200
    cart = client.get("/api/cart/").json()
    assert cart == response.json()
    assert [(line["product"], line["quantity"], line["line_total"]) for line in cart["lines"]] == [
        (game.slug, 2, 2000),
        (manual.slug, 1, 250),
    ]
    assert (cart["subtotal_amount"], cart["currency"]) == (2250, "USD")

    # When a line is set to 0 it goes; when the cart is deleted it is empty
    assert [
        line["product"]
        for line in put_json(client, "/api/cart/", {"product": game.slug, "quantity": 0}).json()["lines"]
    ] == [manual.slug]
    assert client.delete("/api/cart/").status_code == 204
    assert client.get("/api/cart/").json() == {
        "lines": [],
        "subtotal_amount": 0,
        "coupon": None,
        "discount_amount": 0,
        "total_amount": 0,
        "currency": "",
    }


def test_cart_put_over_the_maximum_is_400(client):
    product = ProductFactory(max_per_order=3)

    response = put_json(client, "/api/cart/", {"product": product.slug, "quantity": 4})

    assert response.status_code == 400
    assert error_of(response)["code"] == "quantity_over_maximum"
    assert client.get("/api/cart/").json()["lines"] == []


def test_cart_put_unknown_product_is_404(client):
    response = put_json(client, "/api/cart/", {"product": "no-such-product", "quantity": 1})

    assert response.status_code == 404
    assert error_of(response)["code"] == "product_not_found"


def test_checkout_with_lines_creates_order_and_payment_intent(client, localstripe):
    # Given a product with keys
    product = ProductFactory(price_amount=1999)
    add_keys(product, 3)

    # When a headless client checks out two of it
    response = post_json(
        client, "/api/checkout/", {"email": "buyer@example.com", "lines": [{"product": product.slug, "quantity": 2}]}
    )

    # Then the order and its PaymentIntent exist, and the client gets what it needs to pay
    assert response.status_code == 201, response.content
    body = response.json()
    order = Order.objects.get(token=body["order_token"])
    assert (order.total_amount, order.shipping_amount, order.email) == (3998, 0, "buyer@example.com")
    assert body["order"]["number"] == order.number
    assert body["order"]["status"] == "pending_payment"
    assert body["order"]["total_amount"] == 3998
    payment = Payment.objects.get(order=order)
    assert payment.provider_ref.startswith("pi_")
    assert body["payment"]["provider"] == "stripe"
    assert body["payment"]["client_secret"] == payment.client_secret
    assert body["payment"]["client_secret"].startswith(payment.provider_ref)


def test_checkout_without_lines_buys_the_session_cart_and_empties_it(client, localstripe):
    # Given a cart filled through the API
    service = ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=1200)
    put_json(client, "/api/cart/", {"product": service.slug, "quantity": 2})

    # When the client checks out without naming lines
    response = post_json(client, "/api/checkout/", {"email": "buyer@example.com"})

    # Then the order is for the cart's contents and the cart is empty
    assert response.status_code == 201, response.content
    order = Order.objects.get(token=response.json()["order_token"])
    assert [(line.product_id, line.quantity) for line in order.lines.all()] == [(service.pk, 2)]
    assert order.total_amount == 2400
    assert client.get("/api/cart/").json()["lines"] == []


def test_checkout_with_an_empty_cart_is_400(client):
    response = post_json(client, "/api/checkout/", {"email": "buyer@example.com"})

    assert response.status_code == 400
    assert error_of(response)["code"] == "empty_cart"


def test_checkout_validation_error_names_the_fields(client):
    response = post_json(client, "/api/checkout/", {"email": "not-an-email", "lines": [{"quantity": 1}]})

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert "email" in error["fields"]
    assert "lines" in error["fields"]
    assert not Order.objects.exists()


def test_checkout_of_physical_product_without_address_is_400(client):
    book = ProductFactory(kind=FulfilmentKind.PHYSICAL)

    response = post_json(
        client, "/api/checkout/", {"email": "buyer@example.com", "lines": [{"product": book.slug, "quantity": 1}]}
    )

    assert response.status_code == 400
    assert error_of(response)["code"] == "shipping_required"
    assert not Order.objects.exists()


def test_checkout_of_physical_product_with_address_charges_shipping(client, localstripe, settings):
    settings.SHIPPING_FLAT_FEE = 650
    book = ProductFactory(kind=FulfilmentKind.PHYSICAL, price_amount=2500)

    response = post_json(
        client,
        "/api/checkout/",
        {"email": "buyer@example.com", "lines": [{"product": book.slug, "quantity": 1}], "shipping_address": ADDRESS},
    )

    assert response.status_code == 201, response.content
    order = Order.objects.get(token=response.json()["order_token"])
    assert (order.total_amount, order.shipping_amount, order.ship_country) == (3150, 650, "GB")
    assert Payment.objects.get(order=order).amount == 3150


def test_checkout_stands_when_the_payment_provider_is_down(client, settings):
    # Given a payment provider nobody answers for
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    service = ProductFactory(kind=FulfilmentKind.SERVICE)

    # When a client checks out
    response = post_json(
        client, "/api/checkout/", {"email": "buyer@example.com", "lines": [{"product": service.slug, "quantity": 1}]}
    )

    # Then the order exists without a payment, to be paid later from its page
    assert response.status_code == 201, response.content
    assert response.json()["payment"] is None
    assert Order.objects.filter(token=response.json()["order_token"]).exists()
    assert not Payment.objects.exists()


def test_order_status_by_token(client, make_order):
    order = make_order((ProductFactory(kind=FulfilmentKind.SERVICE, name="Setup call", price_amount=900), 1))

    response = client.get(f"/api/orders/{order.token}/")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert (body["number"], body["status"], body["total_amount"], body["currency"]) == (
        order.number,
        "pending_payment",
        900,
        "USD",
    )
    assert [(line["product_name"], line["delivered"], line["has_keys"]) for line in body["lines"]] == [
        ("Setup call", False, False)
    ]
    assert "keys" not in body["lines"][0]


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "A" * 200,
        pytest.param("%00"),
    ],
)
def test_order_status_with_a_bad_token_is_404_json(make_order, token):
    make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1))

    response = Client(raise_request_exception=False).get(f"/api/orders/{token}/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "order_not_found"


@pytest.mark.parametrize(
    "method, path",
    [("post", "/api/checkout/"), ("put", "/api/cart/")],
)
@pytest.mark.parametrize("body", ['{"email": "buyer@example.com",', "not json", "\x00\x01", "[1, 2"])
def test_malformed_json_is_a_400_json_error(client, method, path, body):
    response = getattr(client, method)(path, body, content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


@pytest.mark.parametrize("body", ["[]", "null", '"text"', '{"email": "buyer@example.com", "lines": "all of them"}'])
def test_wrongly_shaped_json_is_a_400_json_error(client, body):
    response = client.post("/api/checkout/", body, content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid"
    assert not Order.objects.exists()


# --- found by tests/api/test_schemathesis.py ----------------------------------------------------------------------


def test_schema_documents_every_error_status_as_the_error_envelope(client):
    schema = json.loads(client.get("/api/schema/", {"format": "json"}).content)
    error = {"$ref": "#/components/schemas/ApiError"}
    declared = {
        (method.upper(), path): {
            int(code): answer["content"]["application/json"]["schema"]
            for code, answer in operation["responses"].items()
            if int(code) >= 400
        }
        for path, operations in schema["paths"].items()
        if path.startswith("/api/") and path not in ("/api/schema/", "/api/docs/")
        for method, operation in operations.items()
    }

    assert {op: sorted(codes) for op, codes in declared.items()} == {
        ("GET", "/api/products/"): [],
        ("GET", "/api/products/{slug}/"): [404],
        ("GET", "/api/cart/"): [400, 429],
        ("PUT", "/api/cart/"): [400, 404, 415, 429],
        ("DELETE", "/api/cart/"): [],
        ("POST", "/api/checkout/"): [400, 403, 404, 409, 415, 429],
        ("GET", "/api/orders/{token}/"): [404],
        ("POST", "/api/orders/{token}/pay/"): [400, 402, 403, 404, 409, 415, 503],
        ("GET", "/api/orders/{token}/payment-methods/"): [404],
        ("POST", "/api/orders/{token}/reveal/"): [400, 404, 415],
        # issue 15: the license API (its own error shape, LicenseError) and the merchant API
        ("POST", "/api/v1/licenses/activate"): [400, 404, 415, 422, 429],
        ("POST", "/api/v1/licenses/validate"): [400, 404, 415, 422, 429],
        ("POST", "/api/v1/licenses/deactivate"): [400, 404, 415, 422, 429],
        ("GET", "/api/v1/merchant/orders"): [401, 403, 429],
        ("GET", "/api/v1/merchant/orders/{number}"): [401, 403, 404, 429],
        ("GET", "/api/v1/merchant/licenses"): [401, 403, 429],
        ("GET", "/api/v1/merchant/licenses/{license_id}"): [401, 403, 404, 429],
        ("GET", "/api/v1/merchant/licenses/{license_id}/activations"): [401, 403, 404, 429],
        ("POST", "/api/v1/merchant/licenses/{license_id}/disable"): [401, 403, 404, 429],
        ("POST", "/api/v1/merchant/licenses/{license_id}/enable"): [401, 403, 404, 429],
        ("POST", "/api/v1/merchant/licenses/{license_id}/reset-activations"): [401, 403, 404, 429],
    }
    licenses = {"$ref": "#/components/schemas/LicenseError"}
    assert all(
        answer == (licenses if path.startswith("/api/v1/licenses/") else error)
        for (_, path), codes in declared.items()
        for answer in codes.values()
    )
    body = schema["components"]["schemas"]["ApiErrorBody"]
    assert (body["required"], sorted(body["properties"])) == (
        ["code", "message"],
        ["code", "fields", "message", "order_url"],
    )


def test_schema_says_which_slugs_and_tokens_the_urls_accept(client):
    schema = json.loads(client.get("/api/schema/", {"format": "json"}).content)

    def path_parameter(path, method="get"):
        (parameter,) = [p for p in schema["paths"][path][method]["parameters"] if p["in"] == "path"]
        return parameter["name"], parameter["schema"]["pattern"]

    assert path_parameter("/api/products/{slug}/") == ("slug", "^[-a-zA-Z0-9_]+$")
    assert path_parameter("/api/orders/{token}/") == ("token", "^[A-Za-z0-9_-]+$")
    assert path_parameter("/api/orders/{token}/pay/", "post") == ("token", "^[A-Za-z0-9_-]+$")


def test_paying_with_a_card_token_the_provider_never_issued_is_declined_not_a_server_error(
    client, localstripe, make_order
):
    # Given an order with stock, paid by card
    product = ProductFactory(price_amount=1500)
    add_keys(product, 1)
    order = make_order((product, 1))

    # When the client sends a card token Stripe does not know (a typo, an expired or foreign token)
    response = post_json(client, f"/api/orders/{order.token}/pay/", {"card_token": "tok_never_issued"})

    # Then it is told to enter the card again (402), not that payment is down (503); the order is still payable
    assert response.status_code == 402
    assert error_of(response)["code"] == "payment_declined"
    order.refresh_from_db()
    assert order.status == "pending_payment"


def test_paying_through_a_channel_the_order_is_not_offered_is_409_not_503(client, make_order):
    # Given an order, and the PayPal channel that exists but is switched off
    order = make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1))

    # When the client asks to pay through it
    response = post_json(client, f"/api/orders/{order.token}/pay/", {"channel": "paypal"})

    # Then it is told to choose another way to pay, and no payment was opened anywhere
    assert response.status_code == 409
    assert error_of(response)["code"] == "channel_unavailable"
    assert not Payment.objects.exists()


@pytest.mark.parametrize("encoded", ["urlencoded", "multipart"])
def test_checkout_takes_json_only_and_never_buys_the_session_cart_for_a_form_body(client, encoded):
    # Given a session cart with one product, and a form body whose lines name another (forms have no nesting)
    in_cart = ProductFactory(kind=FulfilmentKind.SERVICE)
    wanted = ProductFactory(kind=FulfilmentKind.SERVICE)
    put_json(client, "/api/cart/", {"product": in_cart.slug, "quantity": 1})
    form = {"email": "buyer@example.com", "lines": json.dumps([{"product": wanted.slug, "quantity": 1}])}

    # When it is posted as a form
    if encoded == "urlencoded":
        response = client.post("/api/checkout/", urlencode(form), content_type="application/x-www-form-urlencoded")
    else:
        response = client.post("/api/checkout/", form)  # the test client's default: multipart/form-data

    # Then it is refused as a media type the endpoint does not take, and nothing is ordered
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"
    assert not Order.objects.exists()


@pytest.mark.parametrize("path", ["/api/products/not%20a%20slug/", "/api/orders/a%2Fb/"])
def test_an_unroutable_api_path_answers_the_error_envelope(path):
    response = Client(raise_request_exception=False).get(path)

    assert response.status_code == 404
    error_of(response)
