import logging
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test import Client

from fulfillment.crypto import decrypt_secret
from fulfillment.models import LicenseKey
from orders.models import OrderStatus
from payments.models import Payment
from tests.conftest import payment_intent_event, signed_stripe_event
from tests.factories import ProductFactory

PLAINTEXT = "SECRET-PLAINTEXT-7Q9Z-ABCD-0001"


def dump_every_table() -> str:
    """Every row of every table of ours, as text, the way a database leak would see it."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                chunks.append(
                    " ".join(bytes(v).decode("latin-1") if isinstance(v, memoryview | bytes) else str(v) for v in row)
                )
    return "\n".join(chunks)


@pytest.mark.django_db(transaction=True)
def test_key_plaintext_never_reaches_the_database_or_logs_or_email(make_order, caplog):
    caplog.set_level(logging.DEBUG)
    from fulfillment.keys import keys_add_to_pool

    product = ProductFactory(slug="secret-product")
    keys_add_to_pool(product=product, secrets_=[PLAINTEXT], actor="test")
    order = make_order((product, 1))
    Payment.objects.create(
        order=order, provider="stripe", provider_ref="pi_secret", amount=order.total_amount, currency="USD"
    )
    payload, header = signed_stripe_event(
        payment_intent_event(event_id="evt_secret", intent_id="pi_secret", amount=order.total_amount)
    )
    Client().post(
        "/payments/stripe/webhook/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    line_id = order.lines.get().pk
    page = Client().post(f"/order/{order.token}/reveal/", {"line": line_id}, follow=True).content.decode()
    api = Client().post(f"/api/orders/{order.token}/reveal/", {"line": line_id}, content_type="application/json")
    api = api.content.decode()
    assert PLAINTEXT in page and PLAINTEXT in api  # the owner sees it...

    assert PLAINTEXT not in dump_every_table()  # ...nobody reading the database does
    assert PLAINTEXT not in caplog.text
    assert all(PLAINTEXT not in m.body and PLAINTEXT not in m.subject for m in mail.outbox)
    assert len(mail.outbox) == 1 and order.token in mail.outbox[0].body


def test_stored_key_is_fernet_ciphertext_and_fingerprint_is_keyed(db, settings):
    from fulfillment.keys import keys_add_to_pool

    product = ProductFactory()
    keys_add_to_pool(product=product, secrets_=[PLAINTEXT], actor="test")
    key = LicenseKey.objects.get()
    assert bytes(key.ciphertext).startswith(b"gAAAA")
    assert decrypt_secret(key.ciphertext) == PLAINTEXT
    assert PLAINTEXT not in key.fingerprint

    settings.KEY_FINGERPRINT_SECRET = "another-secret"
    from fulfillment.crypto import fingerprint_secret

    assert fingerprint_secret(PLAINTEXT) != key.fingerprint


def test_key_encryption_can_be_rotated(db, settings):
    from fulfillment.keys import keys_add_to_pool

    product = ProductFactory()
    keys_add_to_pool(product=product, secrets_=[PLAINTEXT, "SECOND-KEY"], actor="test")
    old_key = settings.KEY_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()

    settings.KEY_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_key_encryption", stdout=open("/dev/null", "w"))  # noqa: SIM115

    settings.KEY_ENCRYPTION_KEYS = [new_key]
    assert sorted(k.reveal() for k in LicenseKey.objects.all()) == sorted([PLAINTEXT, "SECOND-KEY"])
    settings.KEY_ENCRYPTION_KEYS = [old_key]
    with pytest.raises(InvalidToken):
        LicenseKey.objects.first().reveal()


@pytest.mark.parametrize("missing", ["SECRET_KEY", "KEY_ENCRYPTION_KEYS", "KEY_FINGERPRINT_SECRET"])
def test_production_start_up_fails_clearly_without_secrets(missing):
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "0",
        "SECRET_KEY": "x" * 50,
        "KEY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "KEY_FINGERPRINT_SECRET": "fp",
        "STRIPE_WEBHOOK_SECRET": "whsec_x",
        "DJANGO_SETTINGS_MODULE": "storefront.settings",
    }
    del env[missing]
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert f"{missing} must be set when DEBUG is off" in result.stderr


def test_malformed_encryption_key_fails_start_up_clearly():
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "0",
        "SECRET_KEY": "x" * 50,
        "KEY_ENCRYPTION_KEYS": "not-a-fernet-key",
        "KEY_FINGERPRINT_SECRET": "fp",
        "STRIPE_WEBHOOK_SECRET": "whsec_x",
    }
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "KEY_ENCRYPTION_KEYS must be comma-separated Fernet keys" in result.stderr
