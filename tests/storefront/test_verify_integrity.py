"""`manage.py verify_integrity` after a restore: silent and 0 on a whole database, loud and 1 on each kind of damage.

Each test restores a good shop (keys in two products, a shared key, a download file), damages one thing the way a
bad restore would, and reads the report the operator gets.
"""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from catalog.models import FulfilmentKind, Product
from fulfillment.crypto import encrypt_secret, fingerprint_secret
from fulfillment.keys import keys_set_shared
from fulfillment.models import LicenseKey
from tests.factories import ProductFactory, add_keys

OTHER_FERNET_KEY = Fernet.generate_key().decode()


@pytest.fixture
def private_media(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    return tmp_path


@pytest.fixture
def shop(private_media):
    """A restored shop as it should be: 3 + 2 keys in stock, one shared key, one download with its file."""
    games = ProductFactory()
    tools = ProductFactory()
    add_keys(games, 3, prefix="GAME")
    add_keys(tools, 2, prefix="TOOL")
    shared = ProductFactory()
    keys_set_shared(product=shared, secret="SHARED-CODE-0001", actor="test")
    download = ProductFactory(kind=FulfilmentKind.DOWNLOAD)
    download.download_file.save("manual.pdf", ContentFile(b"%PDF-1.4 manual"))
    return {"games": games, "tools": tools, "shared": shared, "download": download}


def verify(**options) -> tuple[int, str]:
    """Run the command as an operator would; its exit code and what it printed."""
    out = io.StringIO()
    try:
        call_command("verify_integrity", stdout=out, **options)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


@pytest.mark.django_db
def test_a_whole_restore_passes_with_exit_code_zero(shop):
    code, report = verify()

    assert code == 0, report
    assert "Checked 5 license keys and 4 products." in report
    assert "OK: every key decrypts, fingerprints match, stock counts agree." in report


@pytest.mark.django_db
def test_a_key_that_no_configured_key_decrypts_is_named_and_fails(shop):
    # Given one key written under an encryption key the shop was not given back
    key = LicenseKey.objects.filter(product=shop["games"]).order_by("pk").first()
    LicenseKey.objects.filter(pk=key.pk).update(ciphertext=Fernet(OTHER_FERNET_KEY.encode()).encrypt(b"GAME-X"))

    code, report = verify()

    assert code == 1
    assert "1 keys no key in KEY_ENCRYPTION_KEYS decrypts:" in report
    assert f"key {key.pk} (product {shop['games'].pk})" in report
    assert "KEY_ENCRYPTION_KEYS must hold the keys in use when the backup was taken" in report
    assert "1 integrity problems found." in report


@pytest.mark.django_db
def test_restoring_with_the_wrong_encryption_keys_fails_every_key(shop, settings):
    settings.KEY_ENCRYPTION_KEYS = [OTHER_FERNET_KEY]

    code, report = verify()

    assert code == 1
    assert "5 keys no key in KEY_ENCRYPTION_KEYS decrypts:" in report
    assert "1 products whose shared key no key in KEY_ENCRYPTION_KEYS decrypts:" in report
    assert f"product {shop['shared'].pk}" in report


@pytest.mark.django_db
def test_a_damaged_ciphertext_is_reported_not_raised(shop):
    key = LicenseKey.objects.filter(product=shop["tools"]).order_by("pk").last()
    LicenseKey.objects.filter(pk=key.pk).update(ciphertext=b"not a fernet token")

    code, report = verify()

    assert code == 1
    assert f"key {key.pk} (product {shop['tools'].pk})" in report


@pytest.mark.django_db
def test_a_fingerprint_that_does_not_match_fails(shop):
    key = LicenseKey.objects.filter(product=shop["games"]).order_by("pk").last()
    LicenseKey.objects.filter(pk=key.pk).update(fingerprint="0" * 64)

    code, report = verify()

    assert code == 1
    assert "1 keys whose fingerprint does not match KEY_FINGERPRINT_SECRET:" in report
    assert f"key {key.pk} (product {shop['games'].pk})" in report
    assert "KEY_FINGERPRINT_SECRET must be the one in use" in report


@pytest.mark.django_db
def test_restoring_with_another_fingerprint_secret_fails_every_key(shop, settings):
    settings.KEY_FINGERPRINT_SECRET = "not-the-secret-of-the-backup"

    code, report = verify()

    assert code == 1
    assert "5 keys whose fingerprint does not match KEY_FINGERPRINT_SECRET:" in report


@pytest.mark.django_db
def test_a_stock_count_that_disagrees_with_the_keys_fails(shop):
    Product.objects.filter(pk=shop["tools"].pk).update(keys_available=7)

    code, report = verify()

    assert code == 1
    assert "1 products whose stock count differs from their available keys:" in report
    assert f"product {shop['tools'].pk}: counter says 7, 2 keys are available" in report
    assert "keys_stock_recount" in report


@pytest.mark.django_db
def test_a_missing_download_file_fails(shop, private_media):
    (private_media / shop["download"].download_file.name).unlink()

    code, report = verify()

    assert code == 1
    assert "1 products whose download file is missing from the private storage:" in report
    assert f"product {shop['download'].pk}: {shop['download'].download_file.name}" in report
    assert "restore the private files" in report


@pytest.mark.django_db
def test_keys_under_an_older_encryption_key_pass_with_a_note(shop, settings):
    # Given a key rotation half done: a new key first, the backup's key after it
    settings.KEY_ENCRYPTION_KEYS = [OTHER_FERNET_KEY, *settings.KEY_ENCRYPTION_KEYS]
    # and one key already moved to it (the other four keys and the shared key are still under the older one)
    first = LicenseKey.objects.order_by("pk").first()
    LicenseKey.objects.filter(pk=first.pk).update(
        ciphertext=encrypt_secret("GAME-ROTATED"), fingerprint=fingerprint_secret("GAME-ROTATED")
    )

    code, report = verify()

    assert code == 0, report
    assert "Note: 5 keys are encrypted under an older key of KEY_ENCRYPTION_KEYS" in report


@pytest.mark.django_db
def test_every_kind_of_damage_at_once_is_listed_and_capped(shop):
    keys = list(LicenseKey.objects.order_by("pk"))
    LicenseKey.objects.filter(pk__in=[k.pk for k in keys[:3]]).update(ciphertext=b"garbage")
    LicenseKey.objects.filter(pk=keys[3].pk).update(fingerprint="f" * 64)
    Product.objects.filter(pk=shop["games"].pk).update(keys_available=0)

    code, report = verify(show=2)

    assert code == 1
    assert "3 keys no key in KEY_ENCRYPTION_KEYS decrypts:" in report
    assert "  ... and 1 more" in report
    assert "1 keys whose fingerprint does not match" in report
    assert "1 products whose stock count differs" in report
    assert "5 integrity problems found." in report
    # never a key's value
    assert "GAME-" not in report and "TOOL-" not in report and "SHARED-CODE" not in report


@pytest.mark.django_db
def test_a_database_without_the_shops_tables_is_refused_with_a_hint(shop):
    # Given a restore that never happened (the table is not there; DDL rolls back with the test)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE fulfillment_licensekey RENAME TO fulfillment_licensekey_not_restored")

    code, report = verify()

    assert code == 2
    assert "The database cannot be read" in report and "`migrate` run?" in report
