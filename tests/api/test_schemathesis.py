"""The API against its own OpenAPI document: schemathesis generates requests for every operation from
/api/schema/ and sends them through the project's WSGI application, in process, on the real database.

Every response must not be a server error, must have a status code, content type and body the schema
declares, and every 4xx must be the error envelope {"error": {"code", "message"}} (storefront/api_errors.py).
Generated values are mixed with real ones (slugs of seeded products, tokens of seeded orders, their line ids,
channel codes, a card token made at localstripe) so that checkout, payment and reveal get past "not found".
A second test walks a headless shopper through cart, checkout, payment (a token Stripe never issued, a channel
the order is not offered, a real card) and reveal, every answer checked the same way.
"""

import re

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.test import Client as WsgiClient

from catalog.models import FulfilmentKind
from orders.services import ShippingAddress
from storefront.flow.refunds import refund_issue
from storefront.wsgi import application
from tests.conftest import TEST_CARD, record_payment
from tests.factories import ProductFactory, add_keys

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)

# Filled per test by the `shop` fixture, read by the hooks below while cases are generated.
SEEDED: dict[str, list] = {"slugs": [], "tokens": [], "payable_tokens": [], "lines": [], "card_tokens": []}
CHANNELS = ["stripe", "paypal", "no-such-channel"]
ADDRESS = ShippingAddress(name="Ada Lovelace", line1="1 Analytical Way", city="London", postal_code="N1", country="GB")
SLUG = re.compile(r"[-a-zA-Z0-9_]+")  # Django's slug path converter


def error_envelope(ctx, response, case):
    """A 4xx is {"error": {"code": str, "message": str, "fields"?: ..., "order_url"?: str}} and nothing else."""
    if not 400 <= response.status_code < 500:
        return None
    if case.path.startswith("/api/v1/licenses/"):  # the license API's own shape, fixed by issue 15 (LicenseError)
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"a {response.status_code} that is not JSON: {content_type}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the error envelope: {body!r}"
    error = body["error"]
    assert set(error) <= {"code", "message", "fields", "order_url"}, f"unexpected keys in the error: {sorted(error)}"
    assert isinstance(error.get("code"), str) and error["code"], f"no error code: {error!r}"
    assert isinstance(error.get("message"), str) and error["message"], f"no error message: {error!r}"
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_envelope,
]


def sometimes_real(generated, real: list):
    """Half of the time the generated value, half of the time one of the seeded ones (when there are any)."""
    return st.one_of(st.just(generated), st.sampled_from(real)) if real else st.just(generated)


def with_real(body, **choices):
    """`body` with each named key that it has (or, for optional ones, may have) sometimes given a real value."""
    if not isinstance(body, dict):
        return st.just(body)
    keys = list(choices)
    return st.tuples(*(choices[key] for key in keys)).map(
        lambda values: {**body, **{k: v for k, v in zip(keys, values, strict=True) if v is not None}}
    )


@schema.hook
def filter_case(ctx, case):
    """A token with a "/" in it is another path (/api/orders/<token>/pay/ is an endpoint of its own), so such
    tokens are not sent; anything else that matches no endpoint gets the error envelope (api_not_found)."""
    token = (case.path_parameters or {}).get("token")
    return token is None or (isinstance(token, str) and token != "" and "/" not in token)


@schema.hook
def flatmap_path_parameters(ctx, path_parameters):
    if not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    if "token" in path_parameters:
        seeded = SEEDED["payable_tokens"] if ctx.operation.path.endswith("/pay/") else SEEDED["tokens"]
        return with_real(path_parameters, token=sometimes_real(path_parameters["token"], seeded))
    if "slug" in path_parameters:
        return with_real(path_parameters, slug=sometimes_real(path_parameters["slug"], SEEDED["slugs"]))
    return st.just(path_parameters)


@schema.hook
def flatmap_body(ctx, body):
    """Point generated bodies at real products, lines, channels and card tokens about half of the time."""
    if not isinstance(body, dict):
        return st.just(body)
    label = f"{ctx.operation.method.upper()} {ctx.operation.path}"
    if label == "PUT /api/cart/":
        return with_real(body, product=sometimes_real(body.get("product"), SEEDED["slugs"]))
    if label == "POST /api/checkout/":
        email = sometimes_real(body.get("email"), ["buyer@example.com"])
        if not isinstance(body.get("lines"), list):  # the session cart, or a line of a product in stock
            bought = [[{"product": slug, "quantity": 1}] for slug in SEEDED["slugs"][:1]]
            return with_real(body, email=email, lines=sometimes_real(body.get("lines"), bought))
        lines = [
            with_real(
                line,
                product=sometimes_real(line.get("product"), SEEDED["slugs"]),
                quantity=sometimes_real(line.get("quantity"), [1, 2]),
            )
            if isinstance(line, dict)
            else st.just(line)
            for line in body["lines"]
        ]
        return st.tuples(email, *lines).map(lambda chosen: {**body, "email": chosen[0], "lines": list(chosen[1:])})
    if label == "POST /api/orders/{token}/pay/":
        return with_real(
            body,
            channel=sometimes_real(body.get("channel"), CHANNELS),
            card_token=sometimes_real(body.get("card_token"), SEEDED["card_tokens"]),
        )
    if label == "POST /api/orders/{token}/reveal/":
        return with_real(body, line=sometimes_real(body.get("line"), SEEDED["lines"]))
    return st.just(body)


@pytest.fixture
def _requests_keep_the_test_transaction():
    """Requests here go through the WSGI handler, which closes the database connection at the end of every
    request; the test's transaction lives on it. Django's own test client disconnects the same two signals."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def shop(
    db, localstripe, stripe_client, make_order, django_capture_on_commit_callbacks, _requests_keep_the_test_transaction
):
    """Products of every kind (one off sale, one sold out), and orders to look at and pay: pending ones,
    a delivered one and a refunded one."""
    keys = ProductFactory(name="Game key", price_amount=1999)
    add_keys(keys, 40)
    sold_out = ProductFactory(name="Sold out key", price_amount=999)
    service = ProductFactory(name="Setup call", kind=FulfilmentKind.SERVICE, price_amount=900)
    book = ProductFactory(name="Book", kind=FulfilmentKind.PHYSICAL, price_amount=2500)
    download = ProductFactory(name="Manual", kind=FulfilmentKind.DOWNLOAD, price_amount=500)
    retired = ProductFactory(name="Retired", is_active=False)
    pending = [make_order((keys, 1)), make_order((service, 2)), make_order((keys, 2), (download, 1))]
    pending += [make_order((keys, 1), (book, 1), shipping=ADDRESS)]
    delivered = record_payment(make_order((keys, 2), (service, 1)), django_capture_on_commit_callbacks)
    refunded = record_payment(make_order((keys, 1)), django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        refund_issue(order=refunded, actor="test", reason="seed")
    orders = [*pending, delivered, refunded]
    SEEDED["slugs"] = [p.slug for p in (keys, sold_out, service, book, download, retired)]
    SEEDED["tokens"] = [o.token for o in orders]
    SEEDED["payable_tokens"] = [o.token for o in pending]
    SEEDED["lines"] = [line.pk for o in orders for line in o.lines.all()]
    SEEDED["card_tokens"] = [stripe_client.v1.tokens.create(params={"card": TEST_CARD}).id for _ in range(3)]
    yield
    for values in SEEDED.values():
        values.clear()


@pytest.fixture
def wsgi_client():
    """One client per operation: its session (the cart) and device cookie carry from one case to the next."""
    return WsgiClient(application)


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_as_its_schema_says(case, shop, wsgi_client):
    case.call_and_validate(session=wsgi_client, checks=CHECKS)


@pytest.mark.django_db
def test_a_headless_shopper_buys_pays_and_reveals_through_answers_the_schema_allows(
    shop, wsgi_client, stripe_client, django_capture_on_commit_callbacks
):
    def call(method: str, path: str, expected: int, **kwargs):
        response = schema[path][method].Case(**kwargs).call_and_validate(session=wsgi_client, checks=CHECKS)
        assert response.status_code == expected, response.text
        return response.json() if response.content else None

    # Given a shopper who puts two keys in the session cart and checks out with only an email
    keys_slug = SEEDED["slugs"][0]
    assert keys_slug in [p["slug"] for p in call("GET", "/api/products/", 200)]
    call("PUT", "/api/cart/", 200, body={"product": keys_slug, "quantity": 2}, media_type="application/json")
    checkout = call("POST", "/api/checkout/", 201, body={"email": "buyer@example.com"}, media_type="application/json")
    order = {"token": checkout["order_token"]}
    assert checkout["payment"]["provider"] == "stripe"
    assert [m["channel"] for m in call("GET", "/api/orders/{token}/payment-methods/", 200, path_parameters=order)] == [
        "stripe"
    ]
    pay = "/api/orders/{token}/pay/"

    # When they pay with a card token Stripe never issued, or through a channel this order is not offered
    unknown = call(
        "POST", pay, 402, path_parameters=order, body={"card_token": "tok_never_issued"}, media_type="application/json"
    )
    disabled = call("POST", pay, 409, path_parameters=order, body={"channel": "paypal"}, media_type="application/json")

    # Then they are told to enter the card again, or to choose another way to pay: nothing to retry later
    assert (unknown["error"]["code"], disabled["error"]["code"]) == ("payment_declined", "channel_unavailable")

    # When they pay with a real card token
    card = stripe_client.v1.tokens.create(params={"card": TEST_CARD}).id
    with django_capture_on_commit_callbacks(execute=True):  # delivery runs after commit
        paid = call("POST", pay, 200, path_parameters=order, body={"card_token": card}, media_type="application/json")

    # Then the order is delivered, its keys are revealed once asked, and it cannot be paid again
    assert paid["status"] == "succeeded"
    status = call("GET", "/api/orders/{token}/", 200, path_parameters=order)
    assert (status["status"], [line["has_keys"] for line in status["lines"]]) == ("fulfilled", [True])
    line = status["lines"][0]["id"]
    revealed = call(
        "POST",
        "/api/orders/{token}/reveal/",
        200,
        path_parameters=order,
        body={"line": line},
        media_type="application/json",
    )
    assert len(revealed["keys"]) == 2
    again = call("POST", pay, 409, path_parameters=order, body={"card_token": card}, media_type="application/json")
    assert again["error"]["code"] == "order_not_payable"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/nothing-here/", "/api/products/a%0Ab%0Dc/", "/api/products/%E2%80%A8/"])
def test_a_path_no_endpoint_matches_gets_the_json_envelope_even_with_line_breaks(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}
