"""Error reports (storefront.sentry): sent only with a DSN, and scrubbed of keys, cards, emails and tokens."""

import json
import subprocess
import sys

import sentry_sdk
from django.conf import settings
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration

from storefront.scrub import FILTERED, scrub_text
from storefront.sentry import scrub_breadcrumb, scrub_event, sentry_init, sentry_options
from tests.storefront.test_settings import production_env

CARD = "4242 4242 4242 4242"
ORDER_TOKEN = "q8Xr2L0vJk3nT9sBzW4yH7cE1fP6aU5mDgK0iOlRtYw"  # 43 characters, as the order pages' tokens
LICENSE_KEY = "ABCDE-12345-FGHIJ-67890"


def an_event() -> dict:
    """An event as the Django integration builds it for a failed checkout, with everything that must not leave."""
    return {
        "event_id": "0123456789abcdef0123456789abcdef",
        "level": "error",
        "message": f"checkout failed for buyer@example.com with card {CARD}",
        "exception": {
            "values": [
                {
                    "type": "PaymentError",
                    "value": f"key {LICENSE_KEY} for shopper@example.org; sk_live_51Habc123secret",
                    "stacktrace": {
                        "frames": [
                            {
                                "filename": "storefront/flow/checkout.py",
                                "function": "_database_connections_as_a_request_has_them",
                                "module": "storefront.flow.checkout",
                                "lineno": 42,
                                "vars": {"email": "buyer@example.com", "card_token": "tok_visa", "order_id": 7},
                            }
                        ]
                    },
                }
            ]
        },
        "request": {
            "url": f"https://shop.example.com/order/{ORDER_TOKEN}/",
            "method": "POST",
            "query_string": "email=buyer%40example.com",
            "cookies": {"sessionid": "abc123session"},
            "data": {"email": "buyer@example.com", "number": CARD},
            "headers": {
                "Authorization": "Bearer metrics-token-0123456789",
                "Cookie": "sessionid=abc123session; csrftoken=xyz",
                "Stripe-Signature": "t=1,v1=deadbeef",
                "User-Agent": "Mozilla/5.0",
            },
        },
        "user": {"id": "12", "email": "staff@example.com", "ip_address": "203.0.113.7"},
        "extra": {"license_key": LICENSE_KEY, "note": f"revealed {LICENSE_KEY}", "attempts": 3},
        "contexts": {"trace": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}},
        "breadcrumbs": {"values": [{"category": "query", "message": "SELECT ... WHERE email = 'a@b.example'"}]},
    }


def test_the_scrubber_leaves_no_key_card_email_token_or_credential_in_an_event():
    scrubbed = scrub_event(an_event(), {})
    text = json.dumps(scrubbed)

    for secret in (
        "buyer",
        "shopper@",
        "staff@",
        "a@b.example",
        "4242",
        LICENSE_KEY,
        ORDER_TOKEN,
        "sk_live_",
        "metrics-token",
        "abc123session",
        "deadbeef",
        "tok_visa",
        "203.0.113.7",
    ):
        assert secret not in text, secret


def test_the_scrubber_keeps_what_an_operator_needs_to_find_the_fault():
    scrubbed = scrub_event(an_event(), {})

    frame = scrubbed["exception"]["values"][0]["stacktrace"]["frames"][0]
    assert frame["function"] == "_database_connections_as_a_request_has_them"  # code, not a token
    assert frame["filename"] == "storefront/flow/checkout.py" and frame["lineno"] == 42
    assert frame["vars"]["order_id"] == 7
    assert scrubbed["exception"]["values"][0]["type"] == "PaymentError"
    assert scrubbed["request"]["method"] == "POST"
    assert scrubbed["request"]["url"] == f"https://shop.example.com/order/{FILTERED}/"
    assert scrubbed["request"]["headers"]["User-Agent"] == "Mozilla/5.0"
    assert scrubbed["user"] == {"id": "12"}
    assert scrubbed["extra"]["attempts"] == 3
    assert scrubbed["contexts"]["trace"]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert "cookies" not in scrubbed["request"] and "data" not in scrubbed["request"]


def test_only_luhn_valid_card_numbers_are_blanked_in_text():
    assert scrub_text("card 4000 0025 0000 3155 declined") == f"card {FILTERED} declined"
    assert scrub_text("order 1234567890123 at 1764770000000 ms") == "order 1234567890123 at 1764770000000 ms"


def test_breadcrumbs_are_scrubbed_too():
    crumb = scrub_breadcrumb({"category": "django.request", "message": "lookup for buyer@example.com"}, {})
    assert crumb == {"category": "django.request", "message": f"lookup for {FILTERED}"}


def test_sentry_is_configured_with_django_and_celery_and_no_personal_data():
    options = sentry_options(dsn="https://key@sentry.example/1", environment="prod", release="", traces_sample_rate=0)

    assert {type(i) for i in options["integrations"]} == {DjangoIntegration, CeleryIntegration}
    assert options["send_default_pii"] is False
    assert options["include_local_variables"] is False
    assert options["max_request_body_size"] == "never"
    assert options["before_send"] is scrub_event and options["before_breadcrumb"] is scrub_breadcrumb


def test_without_a_dsn_nothing_is_started():
    assert sentry_init(dsn="") is False
    assert not sentry_sdk.get_client().is_active()


SHOW_SENTRY = (
    "import django; django.setup(); import sentry_sdk; c = sentry_sdk.get_client();"
    "print(c.is_active(), c.options.get('send_default_pii'),"
    " c.options['before_send'].__name__ if c.is_active() else '-')"
)


def test_the_production_settings_start_sentry_only_when_sentry_dsn_is_set():
    def started(env):
        result = subprocess.run(
            [sys.executable, "-c", SHOW_SENTRY], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert started(production_env())[0] == "False"
    assert started(production_env(SENTRY_DSN="https://public@127.0.0.1:9/1")) == ["True", "False", "scrub_event"]
