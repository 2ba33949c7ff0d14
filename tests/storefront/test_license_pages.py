"""The shopper sees a key's activations on the order page and frees one; the product API says how keys are made;
the demo seeds a product with generated keys and two activations."""

import re

import pytest
from django.core.management import call_command

from fulfillment.licenses import license_activate, license_find, license_validate
from fulfillment.models import KeySource, LicensePolicy
from tests.factories import ProductFactory, add_keys
from tests.licensing import bought_key, generated_product

FREE_BUTTON = re.compile(r'name="instance" value="([0-9a-f-]{36})"')


@pytest.mark.django_db
def test_the_order_page_lists_activations_and_frees_one(client, make_order, django_capture_on_commit_callbacks):
    order, key = bought_key(make_order, django_capture_on_commit_callbacks, generated_product(activation_limit=2))
    license_activate(license_key=key, instance_name="Office PC")
    license_activate(license_key=key, instance_name="Home laptop")

    page = client.get(f"/order/{order.token}/").content.decode()
    assert "Key activated on 2 of 2 computers." in page
    assert "Office PC" in page and "Home laptop" in page
    instances = FREE_BUTTON.findall(page)
    assert len(instances) == 2

    freed = client.post(f"/order/{order.token}/activations/free/", {"instance": instances[0]}, follow=True)

    assert "Key activated on 1 of 2 computers." in freed.content.decode()
    assert "Office PC" not in freed.content.decode()
    assert license_find(license_key=key).activation_usage == 1
    assert license_validate(license_key=key, instance_id=instances[0]).valid is False


@pytest.mark.django_db
def test_an_activation_of_another_order_cannot_be_freed(client, make_order, django_capture_on_commit_callbacks):
    product = generated_product()
    mine, _ = bought_key(make_order, django_capture_on_commit_callbacks, product, email="me@example.com")
    _, theirs = bought_key(make_order, django_capture_on_commit_callbacks, product, email="them@example.com")
    instance = license_activate(license_key=theirs, instance_name="their pc").instance

    response = client.post(f"/order/{mine.token}/activations/free/", {"instance": str(instance.instance_id)})
    assert response.status_code == 404
    assert client.post(f"/order/{mine.token}/activations/free/", {"instance": "nope"}).status_code == 404
    assert license_find(license_key=theirs).activation_usage == 1


@pytest.mark.django_db
def test_the_product_api_says_how_keys_are_made(client):
    pool = ProductFactory(slug="pool-keys")
    add_keys(pool, 2)
    generated = generated_product(slug="made-keys", activation_limit=3)
    tracked = ProductFactory(slug="tracked-pool")
    add_keys(tracked, 1)
    LicensePolicy.objects.create(
        product=tracked, key_source=KeySource.POOL, track_pool_keys=True, activation_limit=None
    )
    ProductFactory(slug="ebook", kind="download")

    by_slug = {p["slug"]: p for p in client.get("/api/products/").json()}

    assert (by_slug["pool-keys"]["key_source"], by_slug["pool-keys"]["activation_limit"]) == ("pool", None)
    assert (by_slug["made-keys"]["key_source"], by_slug["made-keys"]["activation_limit"]) == ("generated", 3)
    assert by_slug["made-keys"]["in_stock"] is True and generated.keys_available == 0
    assert (by_slug["tracked-pool"]["key_source"], by_slug["tracked-pool"]["activation_limit"]) == ("pool", None)
    assert (by_slug["ebook"]["key_source"], by_slug["ebook"]["activation_limit"]) == (None, None)
    detail = client.get("/api/products/made-keys/").json()
    assert (detail["key_source"], detail["activation_limit"]) == ("generated", 3)


@pytest.mark.django_db
def test_a_shared_key_product_says_shared(client):
    from fulfillment.keys import keys_set_shared

    product = ProductFactory(slug="shared-code")
    keys_set_shared(product=product, secret="ONE-CODE-FOR-ALL", actor="test")
    assert client.get("/api/products/shared-code/").json()["key_source"] == "shared"


@pytest.mark.django_db
def test_the_demo_seeds_a_product_with_generated_keys_and_two_activations(client, tmp_path):
    call_command("seed_demo", stdout=tmp_path.joinpath("seed.log").open("w"))
    products = client.get("/api/products/").json()
    generated = [p for p in products if p["key_source"] == "generated"]
    assert [
        (p["slug"], p["activation_limit"], p["in_stock"], p["billing_interval"], p["trial_days"]) for p in generated
    ] == [
        ("code-linter-pro", 2, True, None, 0),
        ("code-linter-pro-yearly", 2, True, "year", 14),  # a key sold by the year, with a free trial
    ]


@pytest.mark.django_db
def test_a_signed_in_shopper_sees_and_frees_activations_in_their_account(
    client, make_order, django_capture_on_commit_callbacks
):
    from django.contrib.auth import get_user_model

    order, key = bought_key(
        make_order, django_capture_on_commit_callbacks, generated_product(name="Linter"), email="me@example.com"
    )
    _, other = bought_key(make_order, django_capture_on_commit_callbacks, generated_product(), email="you@example.com")
    license_activate(license_key=key, instance_name="Work laptop")
    their_instance = license_activate(license_key=other, instance_name="Their PC").instance
    client.force_login(get_user_model().objects.create_user("me@example.com", "me@example.com"))

    assert "/account/licenses/" in client.get("/account/").content.decode()
    page = client.get("/account/licenses/").content.decode()
    assert "Linter" in page and order.number in page and "Work laptop" in page and "Their PC" not in page
    assert key not in page
    mine = FREE_BUTTON.findall(page)
    assert client.post("/account/licenses/free/", {"instance": str(their_instance.instance_id)}).status_code == 404
    freed = client.post("/account/licenses/free/", {"instance": mine[0]}, follow=True).content.decode()
    assert "Work laptop" not in freed and license_find(license_key=key).activation_usage == 0
    assert license_find(license_key=other).activation_usage == 1


@pytest.mark.django_db
def test_the_account_licenses_page_needs_a_signed_in_shopper(client):
    assert client.get("/account/licenses/").url == "/account/sign-in/"
