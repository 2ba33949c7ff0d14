"""Admin for selling software: the license policy inline on a product (generated keys, a pattern that cannot be
guessed), the license list and its actions, without ever showing a key."""

from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model

from fulfillment.licenses import license_activate, license_find, license_validate
from fulfillment.models import KeySource, LicensePolicy
from tests.factories import ProductFactory
from tests.licensing import bought_key, generated_product


class FormFields(HTMLParser):
    """The fields of the admin change form as a browser would submit them (checkboxes only when checked)."""

    def __init__(self):
        super().__init__()
        self.data: dict[str, str] = {}
        self._select = self._textarea = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "file", "button"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.data[name] = a.get("value") or ("on" if a.get("type") == "checkbox" else "")
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in a:
            self.data[self._select] = a.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        if tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea] += data


def form_of(page: str) -> dict[str, str]:
    parser = FormFields()
    parser.feed(page)
    return parser.data


@pytest.fixture
def merchant(db, client):
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def test_a_merchant_switches_a_product_to_generated_keys_in_admin(merchant):
    product = ProductFactory(name="Linter")
    url = f"/admin/catalog/product/{product.pk}/change/"
    data = form_of(merchant.get(url).content.decode())
    assert data["license_policy-TOTAL_FORMS"] == "0"
    data |= {
        "license_policy-TOTAL_FORMS": "1",
        "license_policy-0-key_source": "generated",
        "license_policy-0-pattern": "LIN-XXXX-XXXX-XXXX",
        "license_policy-0-activation_limit": "3",
        "license_policy-0-expires_after_days": "",
        "license_policy-0-product": str(product.pk),
    }

    weak = merchant.post(url, {**data, "license_policy-0-pattern": "XXXX-XXXX"})
    assert weak.status_code == 200 and "at least 12" in weak.content.decode()
    assert not LicensePolicy.objects.exists()
    saved = merchant.post(url, data)

    assert saved.status_code == 302, form_of(saved.content.decode())
    policy = LicensePolicy.objects.get(product=product)
    assert (policy.key_source, policy.pattern, policy.activation_limit, policy.expires_after_days) == (
        KeySource.GENERATED,
        "LIN-XXXX-XXXX-XXXX",
        3,
        None,
    )
    listing = merchant.get("/admin/catalog/product/").content.decode()
    assert "generated" in listing


def test_the_license_list_never_shows_a_key_and_its_actions_act(
    merchant, make_order, django_capture_on_commit_callbacks
):
    _, key = bought_key(make_order, django_capture_on_commit_callbacks, generated_product(name="Linter"))
    license_activate(license_key=key, instance_name="laptop")
    license_id = license_find(license_key=key).pk

    listing = merchant.get("/admin/fulfillment/license/").content.decode()
    detail = merchant.get(f"/admin/fulfillment/license/{license_id}/change/").content.decode()
    assert "active" in listing and "laptop" in detail
    assert key not in listing and key not in detail

    merchant.post("/admin/fulfillment/license/", {"action": "disable", "_selected_action": [license_id]})
    assert license_validate(license_key=key).status == "disabled"
    merchant.post("/admin/fulfillment/license/", {"action": "enable", "_selected_action": [license_id]})
    merchant.post("/admin/fulfillment/license/", {"action": "reset_activations", "_selected_action": [license_id]})
    assert license_validate(license_key=key).status == "inactive"


def test_a_product_with_unsold_pool_keys_cannot_switch_to_generated_keys(merchant):
    from tests.factories import add_keys

    product = ProductFactory(name="Pool")
    add_keys(product, 2)
    url = f"/admin/catalog/product/{product.pk}/change/"
    data = form_of(merchant.get(url).content.decode()) | {
        "license_policy-TOTAL_FORMS": "1",
        "license_policy-0-key_source": "generated",
        "license_policy-0-pattern": "XXXX-XXXX-XXXX-XXXX",
        "license_policy-0-product": str(product.pk),
    }
    refused = merchant.post(url, data)
    assert refused.status_code == 200 and "2 unsold key(s)" in refused.content.decode()
    assert not LicensePolicy.objects.exists()
