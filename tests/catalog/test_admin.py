import csv
import io
import logging
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from catalog.models import FulfilmentKind, Product
from fulfillment import imports, keys
from fulfillment.crypto import decrypt_secret
from fulfillment.models import ImportStatus, KeyEvent, KeyImport, KeyStatus, LicenseKey
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    return tmp_path


@pytest.fixture
def merchant_client(client):
    user = get_user_model().objects.create_superuser("merchant", "m@example.com", "pw-merchant-1")
    client.force_login(user)
    return client


def staff_client(username: str, *codenames: str) -> Client:
    """A logged-in staff user holding only the given permissions ('app_label.codename')."""
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    for name in codenames:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client = Client()
    client.force_login(user)
    return client


def key_file(content: str, name: str = "keys.txt") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode())


def cell(page: str, product: Product, column: str) -> str:
    """The text of one column in a product's row of the change list."""
    link = reverse("admin:catalog_product_change", args=[product.pk])
    rows = [row for row in re.findall(r"<tr\b.*?</tr>", page, re.S) if link in row]
    assert len(rows) == 1, f"no single row for {product}"
    found = re.search(rf'<td class="field-{column}">(.*?)</td>', rows[0], re.S)
    assert found, f"no {column} column"
    return found.group(1).strip()


def test_product_list_shows_stock_reserved_sold_and_low_stock(merchant_client):
    # Given a product with 7 keys: 3 on sale, 1 reserved, 2 sold, 1 locked; low stock below 5
    low = ProductFactory(name="Low", low_stock_threshold=5)
    add_keys(low, 7)
    ids = list(LicenseKey.objects.filter(product=low).order_by("pk").values_list("pk", flat=True))
    LicenseKey.objects.filter(pk=ids[3]).update(status=KeyStatus.RESERVED)
    LicenseKey.objects.filter(pk__in=ids[4:6]).update(status=KeyStatus.SOLD)
    LicenseKey.objects.filter(pk=ids[6]).update(status=KeyStatus.LOCKED)
    # And a product with plenty, a download and a reusable-key product
    plenty = ProductFactory(name="Plenty", low_stock_threshold=5)
    add_keys(plenty, 6)
    download = ProductFactory(name="Download", kind=FulfilmentKind.DOWNLOAD)
    shared = ProductFactory(name="Shared")
    keys.keys_set_shared(product=shared, secret="SHARED-CODE", actor="test")

    # When the merchant opens the product list
    page = merchant_client.get(reverse("admin:catalog_product_changelist")).content.decode()

    # Then each row shows its counts and whether it is low on stock
    assert (cell(page, low, "stock"), cell(page, low, "reserved"), cell(page, low, "sold")) == ("3", "1", "2")
    assert 'alt="True"' in cell(page, low, "low_stock")
    assert cell(page, plenty, "stock") == "6"
    assert 'alt="False"' in cell(page, plenty, "low_stock")
    assert cell(page, download, "stock") == "-"
    assert cell(page, shared, "stock") == "shared key"
    assert "SHARED-CODE" not in page


def test_product_change_page_links_to_the_key_tools(merchant_client):
    product = ProductFactory()

    page = merchant_client.get(reverse("admin:catalog_product_change", args=[product.pk])).content.decode()

    assert reverse("admin:catalog_product_import_keys", args=[product.pk]) in page
    assert reverse("admin:catalog_product_shared_key", args=[product.pk]) in page
    assert reverse("admin:catalog_product_export_keys", args=[product.pk]) in page


def test_product_add_page_still_renders(merchant_client):
    assert merchant_client.get(reverse("admin:catalog_product_add")).status_code == 200


def test_merchant_imports_a_file_and_the_progress_page_shows_the_report(
    merchant_client, django_capture_on_commit_callbacks
):
    # Given a product that already holds one of the keys
    product = ProductFactory()
    add_keys(product, 1, prefix="OLD")
    old_key = f"OLD-{product.pk}-00000"
    url = reverse("admin:catalog_product_import_keys", args=[product.pk])
    assert merchant_client.get(url).status_code == 200

    # When the merchant uploads a CSV with notes, a repeat, a blank line, a key already in stock
    content = f"NEW-1,first\nNEW-2,second\nNEW-1,again\n\n{old_key},old\n{'X' * 501}\n"
    with django_capture_on_commit_callbacks(execute=True):
        response = merchant_client.post(url, {"file": key_file(content, "keys.csv"), "text": "", "delimiter": "comma"})

    # Then they land on the progress page of the finished import, which reports every line
    key_import = KeyImport.objects.get(product=product)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:catalog_product_key_import", args=[key_import.pk])
    page = merchant_client.get(response["Location"]).content.decode()
    assert "Done" in page and "100%" in page
    assert '<meta http-equiv="refresh"' not in page
    report = dict(re.findall(r"<tr><th>(.*?)</th><td>(\d+)</td></tr>", page))
    assert report == {
        "Added to stock": "2",
        "Duplicates in the file": "1",
        "Duplicates already in stock": "1",
        "Blank lines": "1",
        "Too long (over 500 characters)": "1",
    }
    assert key_import.created_by == "staff:merchant"
    keys = {k.reveal(): k.note for k in LicenseKey.objects.filter(product=product)}
    assert keys == {old_key: "", "NEW-1": "first", "NEW-2": "second"}


def test_the_progress_page_refreshes_itself_while_the_import_is_not_done(merchant_client, monkeypatch):
    # Given an import waiting for its task
    monkeypatch.setattr(imports.run_key_import, "delay", lambda import_id: None)
    product = ProductFactory()
    key_import = imports.key_import_create(product=product, text="WAIT-1\nWAIT-2\n", actor="staff:merchant")
    url = reverse("admin:catalog_product_key_import", args=[key_import.pk])

    # When the merchant watches it, before and after the task ran
    waiting = merchant_client.get(url).content.decode()
    imports.key_import_run(import_id=key_import.pk)
    done = merchant_client.get(url).content.decode()

    # Then the page refreshes itself until the import is done
    assert '<meta http-equiv="refresh"' in waiting and "Waiting" in waiting and "0%" in waiting
    assert '<meta http-equiv="refresh"' not in done and "Done" in done and "100%" in done


def test_pasted_keys_are_imported_from_the_form(merchant_client, django_capture_on_commit_callbacks):
    product = ProductFactory()
    url = reverse("admin:catalog_product_import_keys", args=[product.pk])

    with django_capture_on_commit_callbacks(execute=True):
        response = merchant_client.post(url, {"text": "PASTED-1\nPASTED-2", "delimiter": "line"})

    assert response.status_code == 302
    assert sorted(k.reveal() for k in LicenseKey.objects.filter(product=product)) == ["PASTED-1", "PASTED-2"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"file": SimpleUploadedFile("keys.txt", b"OK\n\x00\x01\x02binary"), "delimiter": "line"}, "binary data"),
        ({"file": SimpleUploadedFile("keys.txt", b"caf\xe9\n"), "delimiter": "line"}, "not UTF-8 text"),
        ({"file": SimpleUploadedFile("keys.pdf", b"%PDF-1.4"), "delimiter": "line"}, "Only .txt or .csv"),
        ({"text": "", "delimiter": "line"}, "one of the two"),
    ],
    ids=["binary", "not-utf8", "pdf", "nothing"],
)
def test_a_rejected_file_re_renders_the_form_with_the_reason_and_creates_nothing(
    merchant_client, private_media, data, message
):
    product = ProductFactory()

    response = merchant_client.post(reverse("admin:catalog_product_import_keys", args=[product.pk]), data)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not KeyImport.objects.exists()
    assert not LicenseKey.objects.exists()
    assert [p for p in private_media.rglob("*") if p.is_file()] == []


def test_an_oversized_upload_is_refused_in_the_form(merchant_client, settings):
    settings.MAX_KEY_IMPORT_BYTES = 10
    product = ProductFactory()

    response = merchant_client.post(
        reverse("admin:catalog_product_import_keys", args=[product.pk]),
        {"file": key_file("ELEVEN-CHAR"), "delimiter": "line"},
    )

    assert response.status_code == 200
    assert "an import can be at most 10\xa0bytes" in response.content.decode()
    assert not KeyImport.objects.exists()


def test_staff_without_the_add_key_permission_get_403_and_import_nothing(django_capture_on_commit_callbacks):
    # Given staff who may edit products but not add keys
    client = staff_client("clerk", "catalog.view_product", "catalog.change_product")
    product = ProductFactory()
    url = reverse("admin:catalog_product_import_keys", args=[product.pk])

    # When they open or post the import form
    with django_capture_on_commit_callbacks(execute=True):
        posted = client.post(url, {"file": key_file("SNEAKY-1\n"), "delimiter": "line"})

    # Then both are forbidden and no key was added
    assert client.get(url).status_code == 403
    assert posted.status_code == 403
    assert not KeyImport.objects.exists()
    assert not LicenseKey.objects.exists()
    change_page = client.get(reverse("admin:catalog_product_change", args=[product.pk])).content.decode()
    assert url not in change_page


def test_staff_with_the_add_key_permission_can_import(django_capture_on_commit_callbacks):
    client = staff_client("stocker", "catalog.view_product", "fulfillment.add_licensekey")
    product = ProductFactory()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:catalog_product_import_keys", args=[product.pk]),
            {"file": key_file("STOCK-1\n"), "delimiter": "line"},
        )

    assert response.status_code == 302
    assert client.get(response["Location"]).status_code == 200
    assert LicenseKey.objects.filter(product=product).count() == 1


# Export ---------------------------------------------------------------------------------------------------


def test_export_needs_the_export_permission_and_records_nothing_without_it():
    # Given staff who may add keys but not export them
    client = staff_client("stocker", "catalog.view_product", "fulfillment.add_licensekey")
    product = ProductFactory()
    add_keys(product, 2)
    url = reverse("admin:catalog_product_export_keys", args=[product.pk])

    # When they try to export
    responses = [client.get(url), client.post(url)]

    # Then they are refused and no key was exported
    assert [r.status_code for r in responses] == [403, 403]
    assert not KeyEvent.objects.filter(type="exported").exists()


def test_export_downloads_only_unsold_keys_and_audits_each_one_without_logging_a_key(
    caplog, django_capture_on_commit_callbacks
):
    # Given staff with the export permission and a pool with keys in every state
    client = staff_client("auditor", "catalog.view_product", "fulfillment.export_keys")
    product = ProductFactory(slug="game")
    keys = add_keys(product, 5)
    by_key = {k.reveal(): k for k in LicenseKey.objects.filter(product=product)}
    LicenseKey.objects.filter(pk=by_key[keys[3]].pk).update(status=KeyStatus.SOLD)
    LicenseKey.objects.filter(pk=by_key[keys[4]].pk).update(status=KeyStatus.LOCKED)
    LicenseKey.objects.filter(pk=by_key[keys[0]].pk).update(note="batch 7")
    url = reverse("admin:catalog_product_export_keys", args=[product.pk])

    # When they confirm (a staff job prepares the file), then download it from the job's page
    confirm = client.get(url)
    with caplog.at_level(logging.INFO, logger="fulfillment.imports"):
        with django_capture_on_commit_callbacks(execute=True):
            started = client.post(url)
        job_page = client.get(started["Location"])
        response = client.post(job_page.context["download_url"])
        body = response.content.decode()

    # Then the confirmation page shows no key, and the CSV holds exactly the three available keys
    assert confirm.status_code == 200
    assert "3 unsold keys" in confirm.content.decode()
    assert not any(k in confirm.content.decode() for k in keys)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="game-unsold-keys-' in response["Content-Disposition"]
    assert "no-store" in response["Cache-Control"]
    assert list(csv.reader(io.StringIO(body))) == [
        ["key", "note"],
        [keys[0], "batch 7"],
        [keys[1], ""],
        [keys[2], ""],
    ]
    # And each exported key has an 'exported' event by that user; nothing else was recorded as exported
    exported = KeyEvent.objects.filter(type="exported")
    assert sorted(e.key_id for e in exported) == sorted(by_key[k].pk for k in keys[:3])
    assert {e.actor for e in exported} == {"staff:auditor"}
    # And the log says who exported how many, with no key in it
    assert "staff:auditor exported 3 unsold keys" in caplog.text
    assert not any(k in caplog.text for k in keys)


# Shared key -----------------------------------------------------------------------------------------------


def test_merchant_sets_a_shared_key_that_is_stored_encrypted_and_never_shown_back(merchant_client):
    # Given a license-key product with no pool
    product = ProductFactory()
    url = reverse("admin:catalog_product_shared_key", args=[product.pk])

    # When the merchant saves a shared key
    response = merchant_client.post(url, {"secret": "  SHARED-2024-ABCD  "}, follow=True)

    # Then the product sells that one code, stored encrypted, and no page shows it
    product.refresh_from_db()
    assert product.is_reusable_key
    assert decrypt_secret(product.shared_key_ciphertext) == "SHARED-2024-ABCD"
    assert b"SHARED-2024-ABCD" not in bytes(product.shared_key_ciphertext)
    assert response.status_code == 200
    pages = [
        response.content.decode(),
        merchant_client.get(url).content.decode(),
        merchant_client.get(reverse("admin:catalog_product_change", args=[product.pk])).content.decode(),
        merchant_client.get(reverse("admin:catalog_product_changelist")).content.decode(),
    ]
    assert not any("SHARED-2024-ABCD" in page for page in pages)
    assert "A shared key is set" in pages[1]


def test_a_shared_key_is_refused_while_unsold_keys_are_in_the_pool(merchant_client):
    product = ProductFactory()
    add_keys(product, 2)

    response = merchant_client.post(
        reverse("admin:catalog_product_shared_key", args=[product.pk]), {"secret": "SHARED-X"}
    )

    assert response.status_code == 200
    assert "still has 2 unsold key(s)" in response.content.decode()
    product.refresh_from_db()
    assert product.shared_key_ciphertext is None


def test_a_reusable_key_product_takes_no_import(merchant_client):
    product = ProductFactory()
    keys.keys_set_shared(product=product, secret="SHARED-Y", actor="test")

    response = merchant_client.post(
        reverse("admin:catalog_product_import_keys", args=[product.pk]),
        {"file": key_file("POOL-1\n"), "delimiter": "line"},
    )

    assert "sells one shared key to every buyer" in response.content.decode()
    assert not LicenseKey.objects.exists()


def test_a_product_that_generates_its_keys_takes_no_import(merchant_client):
    from tests.licensing import generated_product

    product = generated_product()

    response = merchant_client.post(
        reverse("admin:catalog_product_import_keys", args=[product.pk]),
        {"file": key_file("POOL-1\n"), "delimiter": "line"},
    )

    assert "generates a new key for every buyer" in response.content.decode()
    assert not LicenseKey.objects.filter(product=product).exists()


def test_staff_without_the_add_key_permission_cannot_set_a_shared_key():
    client = staff_client("clerk", "catalog.view_product", "catalog.change_product")
    product = ProductFactory()

    response = client.post(reverse("admin:catalog_product_shared_key", args=[product.pk]), {"secret": "NOPE"})

    assert response.status_code == 403
    product.refresh_from_db()
    assert product.shared_key_ciphertext is None


# License keys and imports in the admin ----------------------------------------------------------------------


def test_key_pages_never_show_a_key_or_its_ciphertext(merchant_client):
    product = ProductFactory()
    keys = add_keys(product, 2)
    key = LicenseKey.objects.filter(product=product).first()

    pages = [
        merchant_client.get(reverse("admin:fulfillment_licensekey_changelist")).content.decode(),
        merchant_client.get(reverse("admin:fulfillment_licensekey_change", args=[key.pk])).content.decode(),
    ]

    for page in pages:
        assert not any(k in page for k in keys)
        assert key.fingerprint not in page
        assert bytes(key.ciphertext).decode() not in page


def test_key_list_filters_by_product_and_status(merchant_client):
    product, other = ProductFactory(), ProductFactory()
    add_keys(product, 3)
    add_keys(other, 2)
    LicenseKey.objects.filter(pk=LicenseKey.objects.filter(product=product).first().pk).update(status=KeyStatus.LOCKED)

    response = merchant_client.get(
        reverse("admin:fulfillment_licensekey_changelist"), {"product__id__exact": product.pk, "status": "available"}
    )

    assert response.status_code == 200
    assert {k.pk for k in response.context["cl"].result_list} == set(
        LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).values_list("pk", flat=True)
    )
    assert response.context["cl"].result_count == 2


@pytest.mark.parametrize(
    ("action", "start", "end", "event"),
    [
        ("lock_keys", KeyStatus.AVAILABLE, KeyStatus.LOCKED, "locked"),
        ("unlock_keys", KeyStatus.LOCKED, KeyStatus.AVAILABLE, "unlocked"),
        ("retire_keys", KeyStatus.AVAILABLE, KeyStatus.RETIRED, "retired"),
    ],
)
def test_lock_unlock_retire_actions_change_unsold_keys_audit_them_and_leave_sold_keys(
    merchant_client, action, start, end, event, django_capture_on_commit_callbacks
):
    # Given two keys in the starting state and one sold key
    product = ProductFactory()
    add_keys(product, 3)
    first, second, sold = LicenseKey.objects.filter(product=product).order_by("pk")
    LicenseKey.objects.filter(pk__in=[first.pk, second.pk]).update(status=start)
    LicenseKey.objects.filter(pk=sold.pk).update(status=KeyStatus.SOLD)

    # When the merchant applies the action to all three (a staff job, run as the request commits)
    with django_capture_on_commit_callbacks(execute=True):
        response = merchant_client.post(
            reverse("admin:fulfillment_licensekey_changelist"),
            {"action": action, "_selected_action": [first.pk, second.pk, sold.pk]},
            follow=True,
        )

    # Then the two unsold keys moved and were audited; the sold key is untouched
    assert response.status_code == 200
    statuses = dict(LicenseKey.objects.filter(product=product).values_list("pk", "status"))
    assert statuses == {first.pk: end, second.pk: end, sold.pk: KeyStatus.SOLD}
    events = KeyEvent.objects.filter(type=event)
    assert sorted(e.key_id for e in events) == sorted([first.pk, second.pk])
    assert {e.actor for e in events} == {"staff:merchant"}
    assert not KeyEvent.objects.filter(key=sold).exclude(type="imported").exists()
    job = merchant_client.get(response.redirect_chain[-1][0]).context["job"]  # the staff job's page, once it ran
    assert (job.succeeded, job.skipped, job.failed) == (2, 1, 0)


def test_key_page_shows_its_audit_trail(merchant_client, django_capture_on_commit_callbacks):
    product = ProductFactory()
    add_keys(product, 1)
    key = LicenseKey.objects.get(product=product)
    with django_capture_on_commit_callbacks(execute=True):
        merchant_client.post(
            reverse("admin:fulfillment_licensekey_changelist"), {"action": "lock_keys", "_selected_action": [key.pk]}
        )

    page = merchant_client.get(reverse("admin:fulfillment_licensekey_change", args=[key.pk])).content.decode()

    trail = page[page.lower().index("audit trail") :]
    assert trail.index("imported") < trail.index("locked")
    assert "staff:merchant" in trail


def test_key_import_list_shows_the_reports_read_only(merchant_client, django_capture_on_commit_callbacks):
    product = ProductFactory()
    with django_capture_on_commit_callbacks(execute=True):
        key_import = imports.key_import_create(product=product, text="R-1\nR-1\n\n", actor="staff:merchant")

    response = merchant_client.get(reverse("admin:fulfillment_keyimport_changelist"))
    detail = merchant_client.get(reverse("admin:fulfillment_keyimport_change", args=[key_import.pk]))

    assert response.status_code == 200
    row = response.context["cl"].result_list[0]
    assert (row.status, row.added, row.duplicates_in_file, row.blank) == (ImportStatus.DONE, 1, 1, 1)
    page = response.content.decode()
    assert reverse("admin:catalog_product_key_import", args=[key_import.pk]) in page
    assert reverse("admin:fulfillment_keyimport_add") not in page
    assert detail.status_code == 200
    assert "key-imports/" not in detail.content.decode()


def test_merchant_resumes_a_failed_import(merchant_client, monkeypatch, django_capture_on_commit_callbacks):
    # Given an import that failed before its first batch committed
    product = ProductFactory()
    with monkeypatch.context() as patched:
        patched.setattr(imports.run_key_import, "delay", lambda import_id: None)
        key_import = imports.key_import_create(product=product, text="AGAIN-1\nAGAIN-2\n", actor="staff:merchant")
    KeyImport.objects.filter(pk=key_import.pk).update(status=ImportStatus.FAILED, error="Stopped after line 0")

    # When the merchant resumes it from the import list
    with django_capture_on_commit_callbacks(execute=True):
        response = merchant_client.post(
            reverse("admin:fulfillment_keyimport_changelist"),
            {"action": "resume_imports", "_selected_action": [key_import.pk]},
            follow=True,
        )

    # Then it runs to the end
    assert "1 import(s) resumed" in response.content.decode()
    key_import.refresh_from_db()
    assert (key_import.status, key_import.added, key_import.error) == (ImportStatus.DONE, 2, "")


def test_staff_without_the_add_key_permission_cannot_resume_an_import(monkeypatch, django_capture_on_commit_callbacks):
    client = staff_client("viewer", "fulfillment.view_keyimport")
    product = ProductFactory()
    with monkeypatch.context() as patched:
        patched.setattr(imports.run_key_import, "delay", lambda import_id: None)
        key_import = imports.key_import_create(product=product, text="AGAIN-1\n", actor="staff:merchant")
    KeyImport.objects.filter(pk=key_import.pk).update(status=ImportStatus.FAILED)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:fulfillment_keyimport_changelist"),
            {"action": "resume_imports", "_selected_action": [key_import.pk]},
        )

    key_import.refresh_from_db()
    assert key_import.status == ImportStatus.FAILED
    assert not LicenseKey.objects.exists()
