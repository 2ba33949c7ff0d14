"""The public license API: exactly the paths and fields of issue 15, every status and error, rate limits per key
and per IP, in the OpenAPI schema, and a refunded or disputed order's key answering revoked at once."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from fulfillment.licenses import license_find, license_set_disabled
from tests.licensing import bought_key, generated_product

ACTIVATE, VALIDATE, DEACTIVATE = "/api/v1/licenses/activate", "/api/v1/licenses/validate", "/api/v1/licenses/deactivate"
NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _counters_of_this_test(settings):
    settings.RATE_LIMIT_PREFIX = f"rl:license-test:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def key(db, make_order, django_capture_on_commit_callbacks):
    product = generated_product(name="Code Linter Pro", activation_limit=2)
    _, key = bought_key(make_order, django_capture_on_commit_callbacks, product, email="private.buyer@example.com")
    return key


def post(client, path, **data):
    return client.post(path, data, content_type="application/json")


def test_activate_answers_201_with_the_instance_and_the_license_and_nothing_personal(client, key):
    response = post(client, ACTIVATE, license_key=key, instance_name="Ann's laptop")

    assert response.status_code == 201
    body = response.json()
    assert body["activated"] is True
    assert set(body["instance"]) == {"id", "name", "created_at"} and body["instance"]["name"] == "Ann's laptop"
    uuid.UUID(body["instance"]["id"])
    license = body["license"]
    assert set(license) == {"status", "activation_limit", "activation_usage", "expires_at", "product"}
    assert (license["status"], license["activation_limit"], license["activation_usage"], license["expires_at"]) == (
        "active",
        2,
        1,
        None,
    )
    assert license["product"]["name"] == "Code Linter Pro" and isinstance(license["product"]["id"], int)
    assert "private.buyer" not in response.content.decode() and key not in response.content.decode()
    assert response["Cache-Control"] == "no-store"


def test_the_same_instance_name_returns_the_existing_instance(client, key):
    first = post(client, ACTIVATE, license_key=key, instance_name="desk").json()
    again = post(client, ACTIVATE, license_key=key, instance_name="desk")
    assert again.status_code == 200
    assert again.json()["instance"]["id"] == first["instance"]["id"]
    assert again.json()["license"]["activation_usage"] == 1


def test_activating_past_the_limit_answers_422_activation_limit_reached(client, key):
    post(client, ACTIVATE, license_key=key, instance_name="one")
    post(client, ACTIVATE, license_key=key, instance_name="two")
    response = post(client, ACTIVATE, license_key=key, instance_name="three")
    assert response.status_code == 422
    body = response.json()
    assert (body["activated"], body["error"]) == (False, "activation_limit_reached")
    assert body["license"]["activation_usage"] == 2


def test_validate_with_and_without_an_instance(client, key):
    assert post(client, VALIDATE, license_key=key).json()["license"]["status"] == "inactive"
    instance = post(client, ACTIVATE, license_key=key, instance_name="desk").json()["instance"]

    plain = post(client, VALIDATE, license_key=key)
    with_instance = post(client, VALIDATE, license_key=key, instance_id=instance["id"])
    other_instance = post(client, VALIDATE, license_key=key, instance_id=str(uuid.uuid4()))

    assert plain.status_code == 200 and plain.json()["valid"] is True and plain.json()["instance"] is None
    assert (with_instance.json()["valid"], with_instance.json()["instance"]) == (True, instance)
    assert other_instance.status_code == 200 and other_instance.json()["valid"] is False


def test_deactivate_frees_the_slot_and_unknown_instances_are_404(client, key):
    instance = post(client, ACTIVATE, license_key=key, instance_name="desk").json()["instance"]

    response = post(client, DEACTIVATE, license_key=key, instance_id=instance["id"])
    unknown = post(client, DEACTIVATE, license_key=key, instance_id=str(uuid.uuid4()))

    assert response.status_code == 200
    assert response.json()["deactivated"] is True and response.json()["license"]["activation_usage"] == 0
    assert response.json()["license"]["status"] == "inactive"
    assert unknown.status_code == 404 and unknown.json()["error"] == "instance_not_found"
    assert post(client, VALIDATE, license_key=key, instance_id=instance["id"]).json()["valid"] is False


@pytest.mark.parametrize("path", [ACTIVATE, VALIDATE, DEACTIVATE])
def test_an_unknown_key_is_404_with_valid_false(client, db, path):
    response = post(client, path, license_key="ABCD-EFGH-JKLM-NPQR", instance_name="x", instance_id=str(uuid.uuid4()))
    assert response.status_code == 404
    assert (response.json()["valid"], response.json()["error"]) == (False, "license_not_found")


@pytest.mark.parametrize(
    ("path", "data"),
    [(ACTIVATE, {"license_key": "K"}), (VALIDATE, {}), (DEACTIVATE, {"license_key": "K"}), (ACTIVATE, {"x": 1})],
)
def test_missing_fields_are_400_invalid_request(client, db, path, data):
    response = client.post(path, data, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_a_disabled_license_validates_false_and_cannot_be_activated(client, key):
    license_set_disabled(license_id=license_find(license_key=key).pk, disabled=True, actor="test")
    validation = post(client, VALIDATE, license_key=key).json()
    activation = post(client, ACTIVATE, license_key=key, instance_name="desk")
    assert (validation["valid"], validation["license"]["status"]) == (False, "disabled")
    assert activation.status_code == 422 and activation.json()["error"] == "license_disabled"


def test_an_expired_license_validates_false_and_cannot_be_activated(
    client, db, make_order, django_capture_on_commit_callbacks, time_machine
):
    time_machine.move_to(NOON, tick=False)
    _, key = bought_key(make_order, django_capture_on_commit_callbacks, generated_product(expires_after_days=10))
    assert post(client, VALIDATE, license_key=key).json()["license"]["expires_at"].startswith("2026-06-11T12:00:00")

    time_machine.move_to(NOON + timedelta(days=10), tick=False)
    validation = post(client, VALIDATE, license_key=key).json()
    activation = post(client, ACTIVATE, license_key=key, instance_name="desk")
    assert (validation["valid"], validation["license"]["status"]) == (False, "expired")
    assert activation.status_code == 422 and activation.json()["error"] == "license_expired"


def test_calls_are_limited_per_key_and_per_ip(client, key, settings):
    settings.LICENSE_API_RATE_PER_KEY, settings.LICENSE_API_RATE_PER_IP = 3, 6
    answers = [post(client, VALIDATE, license_key=key).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    limited = post(client, VALIDATE, license_key=key)
    assert limited.json()["error"] == "rate_limited" and int(limited["Retry-After"]) > 0
    # another key from the same address is still answered, until the address's own limit
    assert post(client, VALIDATE, license_key="OTHER-KEY-0000").status_code == 404
    assert post(client, VALIDATE, license_key="OTHER-KEY-0001").status_code == 429  # the 7th call of this IP
    other_ip = client.post(
        VALIDATE, {"license_key": "OTHER-KEY-0002"}, content_type="application/json", REMOTE_ADDR="198.51.100.9"
    )
    assert other_ip.status_code == 404


def test_the_license_calls_are_in_the_openapi_schema(client, db):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in (ACTIVATE, VALIDATE, DEACTIVATE):
        assert "post" in schema["paths"][path]
    activate = schema["paths"][ACTIVATE]["post"]
    assert {"201", "422", "404", "429"} <= set(activate["responses"])
    license_fields = schema["components"]["schemas"]["License"]["properties"]
    assert set(license_fields) == {"status", "activation_limit", "activation_usage", "expires_at", "product"}
