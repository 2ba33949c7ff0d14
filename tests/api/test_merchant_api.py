"""The merchant API (/api/v1/merchant/): keys made in admin and shown once, kept hashed, scoped, revocable, and
every call audited; orders listed and read, licenses listed with their activations, disabled, enabled, reset."""

import hashlib
import re
import uuid

import pytest
from django.contrib.auth import get_user_model

from fulfillment.licenses import license_activate, license_find, license_validate
from storefront.merchant_keys import api_key_create, api_key_revoke
from storefront.models import MerchantApiCall, MerchantApiKey
from tests.licensing import bought_key, generated_product

BASE = "/api/v1/merchant"


@pytest.fixture(autouse=True)
def _counters_of_this_test(settings):
    settings.RATE_LIMIT_PREFIX = f"rl:merchant-test:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sold(db, make_order, django_capture_on_commit_callbacks):
    order, key = bought_key(
        make_order, django_capture_on_commit_callbacks, generated_product(name="Linter"), email="b@example.com"
    )
    license_activate(license_key=key, instance_name="build-server")
    return order, key


def call(client, method, path, token=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return getattr(client, method)(BASE + path, **headers)


def test_a_key_is_kept_only_as_its_hash(db):
    key, token = api_key_create(name="ERP", scopes=["orders:read"], actor="test")
    assert token.startswith("mk_") and len(token) > 40
    stored = MerchantApiKey.objects.filter(pk=key.pk).values().get()
    assert token not in str(stored)
    assert stored["key_hash"] == hashlib.sha256(token.encode()).hexdigest()
    with pytest.raises(ValueError):
        api_key_create(name="bad", scopes=["everything"], actor="test")


def test_without_a_valid_key_every_call_is_401_and_audited(client, sold):
    _, token = api_key_create(name="ERP", scopes=["orders:read"], actor="test")
    missing = call(client, "get", "/orders")
    wrong = call(client, "get", "/orders", token="mk_not-a-key")
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.json()["error"]["code"] == "not_authenticated"
    assert call(client, "get", "/orders", token=token).status_code == 200
    assert list(MerchantApiCall.objects.order_by("id").values_list("status", "path")) == [
        (401, f"{BASE}/orders"),
        (401, f"{BASE}/orders"),
        (200, f"{BASE}/orders"),
    ]
    assert MerchantApiCall.objects.order_by("id").last().key.name == "ERP"


def test_orders_are_listed_and_read_with_the_orders_scope(client, sold):
    order, key = sold
    _, token = api_key_create(name="ERP", scopes=["orders:read"], actor="test")

    listed = call(client, "get", "/orders?limit=10", token=token).json()
    one = call(client, "get", f"/orders/{order.number}", token=token)

    assert listed["count"] == 1 and listed["results"][0]["number"] == order.number
    assert one.status_code == 200
    body = one.json()
    assert (body["status"], body["email"], body["total_amount"]) == ("fulfilled", "b@example.com", order.total_amount)
    assert body["lines"][0]["product_name"] == "Linter"
    assert key not in one.content.decode()
    assert call(client, "get", "/orders/NOPE-0000", token=token).status_code == 404
    assert call(client, "get", "/licenses", token=token).status_code == 403  # not its scope


def test_licenses_are_listed_disabled_enabled_and_reset_with_the_licenses_scope(client, sold):
    order, key = sold
    _, token = api_key_create(name="License server", scopes=["licenses:manage"], actor="test")
    license_id = license_find(license_key=key).pk

    listed = call(client, "get", f"/licenses?order={order.number}", token=token).json()
    assert listed["count"] == 1
    found = listed["results"][0]
    assert (found["id"], found["order_number"], found["status"], found["activation_usage"]) == (
        license_id,
        order.number,
        "active",
        1,
    )
    assert [a["name"] for a in found["activations"]] == ["build-server"]
    activations = call(client, "get", f"/licenses/{license_id}/activations", token=token).json()
    assert activations[0]["name"] == "build-server" and activations[0]["deactivated_at"] is None

    disabled = call(client, "post", f"/licenses/{license_id}/disable", token=token)
    assert disabled.json()["status"] == "disabled" and license_validate(license_key=key).valid is False
    enabled = call(client, "post", f"/licenses/{license_id}/enable", token=token)
    assert enabled.json()["status"] == "active" and license_validate(license_key=key).valid is True
    reset = call(client, "post", f"/licenses/{license_id}/reset-activations", token=token).json()
    assert (reset["activation_usage"], reset["status"]) == (0, "inactive")
    assert call(client, "get", f"/licenses/{license_id}", token=token).json()["activations"][0]["deactivated_at"]
    assert call(client, "post", "/licenses/999999/disable", token=token).status_code == 404
    assert call(client, "get", "/orders", token=token).status_code == 403


def test_a_revoked_key_is_refused(client, db):
    key, token = api_key_create(name="ERP", scopes=["orders:read"], actor="test")
    assert call(client, "get", "/orders", token=token).status_code == 200
    assert api_key_revoke(key_id=key.pk, actor="test") is True
    assert call(client, "get", "/orders", token=token).status_code == 401


def test_admin_creates_a_key_shows_it_once_and_revokes_it(client, db):
    merchant = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(merchant)
    response = client.post(
        "/admin/storefront/merchantapikey/add/",
        {"name": "Warehouse", "scopes": ["orders:read", "licenses:manage"]},
        follow=True,
    )
    assert response.status_code == 200
    token = re.search(r"(mk_[\w-]+)", response.content.decode()).group(1)  # shown on the page after saving
    key = MerchantApiKey.objects.get(name="Warehouse")
    assert key.scopes == ["licenses:manage", "orders:read"] and key.created_by == "staff:boss"
    assert call(client, "get", "/orders", token=token).status_code == 200
    assert token not in client.get(f"/admin/storefront/merchantapikey/{key.pk}/change/").content.decode()

    client.post("/admin/storefront/merchantapikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True)
    assert call(client, "get", "/orders", token=token).status_code == 401
