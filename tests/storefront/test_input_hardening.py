"""API input hardening (issue 10).

- A JSON body nested thousands deep is a 400 in the API's error envelope on every API write (it used to blow
  Python's recursion limit: a 500), and so is one nested deeper than any API body needs.
- The reveal endpoint reads JSON only: a cross-site HTML form (urlencoded, multipart or text/plain, the three
  encodings a form can send without a CORS preflight) gets a 415, and no reveal is logged in the shopper's name.
"""

import json

import pytest
from django.apps import apps
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.views import APIView

from catalog.models import FulfilmentKind
from fulfillment.models import DeliveryAccess
from tests.conftest import record_payment
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db

WRITES = ("post", "put", "patch")


def database_state() -> dict[str, list]:
    return {model._meta.label: list(model._base_manager.order_by("pk").values_list()) for model in apps.get_models()}


def error_of(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response.content[:300]
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


@pytest.fixture
def delivered(make_order, django_capture_on_commit_callbacks):
    """A paid, delivered order for one license key: (order, the key)."""
    product = ProductFactory(kind=FulfilmentKind.LICENSE_KEY)
    (key,) = add_keys(product, 1)
    return record_payment(make_order((product, 1)), django_capture_on_commit_callbacks), key


def api_writes(samples: dict[str, str]) -> list[tuple[str, str]]:
    """(method, path) of every write an API view under /api/ answers, its path parameters filled from samples."""
    (api,) = [p for p in get_resolver().url_patterns if isinstance(p, URLResolver) and str(p.pattern) == "api/"]
    found = []
    for pattern in api.url_patterns:
        if not isinstance(pattern, URLPattern):
            continue
        view = getattr(pattern.callback, "cls", None)
        if view is None or not issubclass(view, APIView):
            continue
        path = reverse(pattern.name, kwargs={name: samples[name] for name in pattern.pattern.converters})
        found += [(method, path) for method in WRITES if hasattr(view, method)]
    return found


def nested_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    "body",
    [nested_list(5000), nested_object(5000), nested_list(100_000), nested_object(200)],
    ids=["list 5000 deep", "object 5000 deep", "list 100000 deep", "object 200 deep"],
)
def test_json_nested_too_deep_is_a_400_on_every_api_write(delivered, body):
    # Given every API route that takes a body, with real objects behind its path parameters
    order, _ = delivered
    samples = {"token": order.token, "slug": order.lines.get().product.slug}
    writes = api_writes(samples)
    assert {(m, p.replace(order.token, "{token}")) for m, p in writes} >= {
        ("put", "/api/cart/"),
        ("post", "/api/checkout/"),
        ("post", "/api/orders/{token}/pay/"),
        ("post", "/api/orders/{token}/reveal/"),
    }
    client = Client(raise_request_exception=False)
    before = database_state()

    # When each gets a JSON body nested far deeper than any API body
    answers = {(m, p): getattr(client, m)(p, body, content_type="application/json") for m, p in writes}

    # Then each is a 400 in the error envelope (not a 500), saying the body could not be parsed; nothing changed
    assert {k: r.status_code for k, r in answers.items() if r.status_code != 400} == {}
    for response in answers.values():
        assert error_of(response, 400)["code"] == "parse_error"
    assert database_state() == before


def test_a_body_of_ordinary_depth_still_works():
    # The depth bound leaves the API's own bodies alone: a checkout with lines and an address
    physical = ProductFactory(kind=FulfilmentKind.PHYSICAL)
    body = {
        "email": "deep@example.com",
        "lines": [{"product": physical.slug, "quantity": 1}],
        "shipping_address": {"name": "Ada", "line1": "1 Way", "city": "London", "postal_code": "N1", "country": "GB"},
    }

    response = Client().post("/api/checkout/", json.dumps(body), content_type="application/json")

    assert response.status_code == 201, response.content


# --- reveal: JSON only ------------------------------------------------------------------------------------------

CROSS_SITE = {"HTTP_ORIGIN": "https://attacker.example", "HTTP_REFERER": "https://attacker.example/page"}


@pytest.mark.parametrize(
    "encoding",
    ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"],
)
def test_reveal_refuses_what_a_cross_site_form_can_send_and_logs_no_reveal(delivered, encoding):
    # Given a delivered order whose token another site has learned
    order, key = delivered
    line = order.lines.get().pk
    client = Client(raise_request_exception=False)
    url = f"/api/orders/{order.token}/reveal/"
    before = database_state()

    # When that site's form posts to the reveal endpoint in the shopper's browser
    if encoding == "multipart/form-data":
        response = client.post(url, {"line": line}, **CROSS_SITE)  # the test client's default is multipart
    elif encoding == "text/plain":
        response = client.post(url, f'{{"line": {line}}}', content_type="text/plain", **CROSS_SITE)
    else:
        response = client.post(url, f"line={line}", content_type=encoding, **CROSS_SITE)

    # Then it is refused as an unsupported media type, with no key in the answer and no reveal logged
    assert error_of(response, 415)["code"] == "unsupported_media_type"
    assert key not in response.content.decode()
    assert database_state() == before
    assert not DeliveryAccess.objects.exists()


def test_reveal_by_json_still_shows_the_keys_and_logs_the_reveal(delivered):
    order, key = delivered

    response = Client().post(
        f"/api/orders/{order.token}/reveal/",
        json.dumps({"line": order.lines.get().pk}),
        content_type="application/json",
        HTTP_USER_AGENT="headless/1",
    )

    assert response.status_code == 200, response.content
    assert response.json()["keys"] == [key]
    assert [(a.channel, a.user_agent) for a in DeliveryAccess.objects.all()] == [("api", "headless/1")]


def test_the_schema_says_reveal_takes_json_only(client):
    schema = json.loads(client.get("/api/schema/", {"format": "json"}).content)

    operation = schema["paths"]["/api/orders/{token}/reveal/"]["post"]

    assert list(operation["requestBody"]["content"]) == ["application/json"]
    assert "415" in operation["responses"]


def test_the_shops_own_pages_reveal_through_their_form_view_not_the_json_api(delivered):
    # The order page's reveal button posts its form to /order/<token>/reveal/ (a page with CSRF protection),
    # never to the JSON API, so making the API JSON-only changes nothing for the shop's own pages.
    order, key = delivered
    client = Client()
    page = client.get(f"/order/{order.token}/").content.decode()

    assert f'action="/order/{order.token}/reveal/"' in page
    assert "/api/orders/" not in page
    asked = client.post(f"/order/{order.token}/reveal/", {"line": order.lines.get().pk})
    assert asked.status_code == 303
    revealed = client.get(asked["Location"])
    assert revealed.status_code == 200 and key in revealed.content.decode()
