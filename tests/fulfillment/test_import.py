import re
import threading
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet, MultiFernet
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.models import FulfilmentKind
from fulfillment import crypto, imports
from fulfillment.crypto import encrypt_secret, fingerprint_secret
from fulfillment.imports import KeyImportRejected, key_import_create, key_import_run
from fulfillment.keys import MAX_KEY_LENGTH, keys_set_state
from fulfillment.models import ImportStatus, KeyEvent, KeyImport, KeyStatus, LicenseKey
from orders.models import Order, OrderStatus
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    """Each test stores uploads in its own folder, so 'nothing was stored' can be checked."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    return tmp_path


@pytest.fixture(params=["postgres-arrays", "portable-orm"])
def insert_path(request, monkeypatch):
    """Run a test through both ways of inserting keys: PostgreSQL arrays, and the ORM path the SQLite demo uses."""
    monkeypatch.setattr(imports, "_USE_POSTGRES_ARRAYS", request.param == "postgres-arrays")
    return request.param


def stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()]


def upload(content: bytes | str, name: str = "keys.txt") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode() if isinstance(content, str) else content)


@pytest.fixture
def import_now(django_capture_on_commit_callbacks):
    """Create an import and let its task run (eagerly) once the creating transaction commits."""

    def run(product, content=None, *, text=None, delimiter="", name="keys.txt", actor="staff:ada") -> KeyImport:
        with django_capture_on_commit_callbacks(execute=True):
            key_import = key_import_create(
                product=product,
                upload=None if content is None else upload(content, name),
                text=text,
                delimiter=delimiter,
                actor=actor,
            )
        key_import.refresh_from_db()
        return key_import

    return run


def pool(product) -> dict[str, LicenseKey]:
    return {key.reveal(): key for key in LicenseKey.objects.filter(product=product)}


def report(key_import: KeyImport) -> dict:
    return {
        "added": key_import.added,
        "duplicates_in_file": key_import.duplicates_in_file,
        "duplicates_existing": key_import.duplicates_existing,
        "blank": key_import.blank,
        "too_long": key_import.too_long,
    }


def test_a_txt_file_with_one_key_per_line_is_encrypted_into_the_pool_and_audited(
    import_now, private_media, insert_path
):
    # Given a license-key product with an empty pool
    product = ProductFactory()

    # When a merchant imports a text file with one key per line (Windows line endings, UTF-8 BOM)
    key_import = import_now(product, "\ufeffAAAA-1111\r\nBBBB-2222\r\n  CCCC-3333  \r\n")

    # Then the three keys are in stock, encrypted, fingerprinted and audited, and the report says so
    assert key_import.status == ImportStatus.DONE
    assert key_import.finished_at is not None
    assert key_import.total_lines == key_import.processed_lines == 3
    assert key_import.percent == 100
    assert report(key_import) == {
        "added": 3,
        "duplicates_in_file": 0,
        "duplicates_existing": 0,
        "blank": 0,
        "too_long": 0,
    }
    keys = pool(product)
    assert set(keys) == {"AAAA-1111", "BBBB-2222", "CCCC-3333"}
    for plaintext, key in keys.items():
        assert key.status == KeyStatus.AVAILABLE
        assert plaintext.encode() not in bytes(key.ciphertext)
        assert key.fingerprint == fingerprint_secret(plaintext)
    events = KeyEvent.objects.filter(key__product=product)
    assert sorted((e.type, e.actor) for e in events) == [("imported", "staff:ada")] * 3
    # and the uploaded file, which held the keys in clear, is gone
    assert stored_files(private_media) == []


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_a_csv_with_notes_puts_the_first_column_in_the_pool_and_the_second_in_the_note(
    import_now, delimiter, insert_path
):
    # Given a product and a delimited file: key, optional note, extra columns ignored, a quoted field
    product = ProductFactory()
    d = delimiter
    content = f'KEY-1{d}batch A\nKEY-2\n"KEY-3"{d}"note {d} quoted"\nKEY-4{d}{d}ignored{d}columns\n'

    # When it is imported with that column separator
    key_import = import_now(product, content, delimiter=delimiter, name="keys.CSV")

    # Then each key is stored alone, with its note
    assert key_import.added == 4
    assert {plain: key.note for plain, key in pool(product).items()} == {
        "KEY-1": "batch A",
        "KEY-2": "",
        "KEY-3": f"note {d} quoted",
        "KEY-4": "",
    }


def test_pasted_text_is_imported_like_a_file(import_now):
    product = ProductFactory()

    key_import = import_now(product, text="PASTE-1\nPASTE-2\n")

    assert key_import.added == 2
    assert set(pool(product)) == {"PASTE-1", "PASTE-2"}


def test_two_overlapping_files_leave_no_duplicate_and_their_reports_add_up(import_now, insert_path):
    # Given a pool filled from a first file of six keys
    product = ProductFactory()
    first = import_now(product, "\n".join(f"K-{i}" for i in range(1, 7)))

    # When a second file repeats three of them and brings three new ones
    second = import_now(product, "\n".join(f"K-{i}" for i in range(4, 10)))

    # Then every key is in the pool exactly once and each report tells what happened to each line
    assert report(first) == {"added": 6, "duplicates_in_file": 0, "duplicates_existing": 0, "blank": 0, "too_long": 0}
    assert report(second) == {"added": 3, "duplicates_in_file": 0, "duplicates_existing": 3, "blank": 0, "too_long": 0}
    assert sorted(pool(product)) == sorted(f"K-{i}" for i in range(1, 10))


@pytest.mark.django_db(transaction=True)
def test_two_overlapping_imports_running_at_the_same_moment_never_duplicate_a_key(monkeypatch, insert_path):
    # Given two stored imports of 3,000 keys each, 2,000 of them in both files (tasks not started yet)
    monkeypatch.setattr(imports.run_key_import, "delay", lambda import_id: None)
    product = ProductFactory()
    file_a = "\n".join(f"OVERLAP-{i:05d}" for i in range(0, 3000))
    file_b = "\n".join(f"OVERLAP-{i:05d}" for i in range(1000, 4000))
    ids = [key_import_create(product=product, upload=upload(f), actor="staff:ada").pk for f in (file_a, file_b)]

    # When both run at the same moment, each on its own database connection
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(import_id: int) -> None:
        try:
            barrier.wait()
            key_import_run(import_id=import_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    # Then the pool holds the 4,000 distinct keys once each, and the reports add up to exactly that
    assert errors == []
    a, b = (KeyImport.objects.get(pk=i) for i in ids)
    assert a.status == b.status == ImportStatus.DONE
    assert LicenseKey.objects.filter(product=product).count() == 4000
    assert a.added + b.added == 4000
    assert a.added + a.duplicates_existing == 3000
    assert b.added + b.duplicates_existing == 3000
    assert KeyEvent.objects.filter(key__product=product, type="imported").count() == 4000


def test_duplicates_inside_one_file_are_counted_and_stored_once_even_across_batches(import_now, monkeypatch):
    # Given batches of two lines, so the repeats fall in later batches than their first appearance
    monkeypatch.setattr(imports, "BATCH_LINES", 2)
    product = ProductFactory()

    # When a file repeats a key three times and another once (whitespace around does not make a new key)
    key_import = import_now(product, "DUP-A\nDUP-B\nDUP-A\n  DUP-A \nDUP-C\nDUP-B\n")

    # Then each distinct key is added once and the repeats are counted as duplicates in the file
    assert report(key_import) == {
        "added": 3,
        "duplicates_in_file": 3,
        "duplicates_existing": 0,
        "blank": 0,
        "too_long": 0,
    }
    assert sorted(pool(product)) == ["DUP-A", "DUP-B", "DUP-C"]


def test_blank_and_too_long_lines_are_counted_and_skipped(import_now):
    # Given a file with blank lines, a key of exactly the maximum length and one just over it
    product = ProductFactory()
    longest = "L" * MAX_KEY_LENGTH
    content = f"OK-1\n\n   \n{longest}\n{'X' * (MAX_KEY_LENGTH + 1)}\n\t\nOK-2"

    # When it is imported
    key_import = import_now(product, content)

    # Then only the well-formed keys are added and the report counts the rest
    assert key_import.total_lines == key_import.processed_lines == 7
    assert report(key_import) == {
        "added": 3,
        "duplicates_in_file": 0,
        "duplicates_existing": 0,
        "blank": 3,
        "too_long": 1,
    }
    assert sorted(pool(product)) == sorted(["OK-1", "OK-2", longest])


def test_an_oversized_file_is_rejected_with_a_clear_message_and_nothing_is_stored(settings, private_media):
    # Given an import limit of 100 bytes
    settings.MAX_KEY_IMPORT_BYTES = 100
    product = ProductFactory()

    # When a 101-byte file is uploaded
    with pytest.raises(KeyImportRejected) as rejected:
        key_import_create(product=product, upload=upload("K" * 101), actor="staff:ada")

    # Then the merchant is told the size and the limit, and no import, key or file exists
    assert "101\xa0bytes" in rejected.value.message
    assert "at most 100\xa0bytes" in rejected.value.message
    assert not KeyImport.objects.exists()
    assert not LicenseKey.objects.exists()
    assert stored_files(private_media) == []


def test_a_file_at_the_size_limit_is_accepted(settings, import_now):
    settings.MAX_KEY_IMPORT_BYTES = 100
    product = ProductFactory()

    key_import = import_now(product, "K" * 99 + "\n")

    assert key_import.added == 1


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "keys.txt", "Line 1 is not UTF-8 text"),
        (b"GOOD-KEY\n" * 5000 + b"caf\xe9\n" + b"MORE-KEY\n", "keys.txt", "Line 5001 is not UTF-8 text"),
        (b"KEY-ONE\nKEY-TWO\x07\n", "keys.txt", "Line 2 contains binary data"),
        (b"KEY-ONE\nKEY\x00TWO\n", "keys.csv", "Line 2 contains binary data"),
        ("KEY-ONE\nKEY-TWO\n".encode("utf-16"), "keys.txt", "UTF-16"),
        (b"", "keys.txt", "empty"),
        (b"\n  \n\n", "keys.txt", "no keys"),
        (b"KEY-ONE\n", "keys.xlsx", "Only .txt or .csv"),
        (b"KEY-ONE\n", "keys", "Only .txt or .csv"),
    ],
    ids=[
        "png",
        "invalid-utf8-late-in-file",
        "control-char",
        "nul-byte",
        "utf16",
        "empty",
        "only-blank",
        "xlsx",
        "no-extension",
    ],
)
def test_a_file_that_is_not_utf8_text_of_keys_is_rejected_and_nothing_is_imported(
    content, name, message, private_media, django_capture_on_commit_callbacks
):
    # Given a product
    product = ProductFactory()

    # When a malformed file is uploaded
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(KeyImportRejected) as rejected:
        key_import_create(product=product, upload=upload(content, name), actor="staff:ada")

    # Then the merchant is told why, and not one key of the file (not even its good first lines) is imported
    assert message in rejected.value.message
    assert not KeyImport.objects.exists()
    assert not LicenseKey.objects.exists()
    assert stored_files(private_media) == []


@pytest.mark.parametrize(
    ("kind", "shared", "message"),
    [
        (FulfilmentKind.DOWNLOAD, False, "license-key product"),
        (FulfilmentKind.LICENSE_KEY, True, "shared key"),
    ],
)
def test_keys_go_only_into_a_pool_of_single_use_keys(kind, shared, message):
    product = ProductFactory(kind=kind, shared_key_ciphertext=encrypt_secret("SHARED") if shared else None)

    with pytest.raises(KeyImportRejected) as rejected:
        key_import_create(product=product, upload=upload("KEY-1\n"), actor="staff:ada")

    assert message in rejected.value.message
    assert not KeyImport.objects.exists()


def test_an_unknown_delimiter_or_no_input_is_rejected():
    product = ProductFactory()

    with pytest.raises(KeyImportRejected, match="separator"):
        key_import_create(product=product, upload=upload("A:B\n"), delimiter=":", actor="staff:ada")
    with pytest.raises(KeyImportRejected, match="one of the two"):
        key_import_create(product=product, actor="staff:ada")
    with pytest.raises(KeyImportRejected, match="one of the two"):
        key_import_create(product=product, upload=upload("A\n"), text="B", actor="staff:ada")
    assert not KeyImport.objects.exists()


def test_the_importer_never_decrypts_a_key(import_now, monkeypatch):
    # Given a pool that already holds keys the file repeats
    product = ProductFactory()
    add_keys(product, 3, prefix="OLD")
    existing = [f"OLD-{product.pk}-{i:05d}" for i in range(3)]

    # And any decryption, by whatever path, blows up
    def forbidden(*args, **kwargs):
        raise AssertionError("the importer decrypted a key")

    monkeypatch.setattr(crypto, "decrypt_secret", forbidden)
    monkeypatch.setattr("fulfillment.models.decrypt_secret", forbidden)
    monkeypatch.setattr(Fernet, "decrypt", forbidden)
    monkeypatch.setattr(MultiFernet, "decrypt", forbidden)

    # When a file with those keys and new ones is imported
    key_import = import_now(product, "\n".join([*existing, "NEW-1", "NEW-2"]))

    # Then duplicates were found by fingerprint alone
    assert key_import.status == ImportStatus.DONE
    assert (key_import.added, key_import.duplicates_existing) == (2, 3)


def test_a_finished_import_run_again_changes_nothing(import_now):
    product = ProductFactory()
    key_import = import_now(product, "ONCE-1\nONCE-2\n")

    again = key_import_run(import_id=key_import.pk)

    assert report(again) == report(key_import)
    assert LicenseKey.objects.filter(product=product).count() == 2
    assert KeyEvent.objects.filter(key__product=product).count() == 2


def test_a_run_that_died_midway_resumes_after_its_last_batch(monkeypatch, private_media):
    # Given batches of two lines and a stored import whose task has not run
    monkeypatch.setattr(imports, "BATCH_LINES", 2)
    monkeypatch.setattr(imports.run_key_import, "delay", lambda import_id: None)
    product = ProductFactory()
    key_import = key_import_create(product=product, upload=upload("R-1\nR-2\nR-3\nR-1\nR-4\n\n"), actor="staff:ada")

    # When the database fails on the second batch
    real_commit = imports._commit_batch
    calls = []

    def failing_second_batch(key_import, batch):
        calls.append(batch.lines)
        if len(calls) == 2:
            raise RuntimeError("connection lost")
        return real_commit(key_import, batch)

    monkeypatch.setattr(imports, "_commit_batch", failing_second_batch)
    with pytest.raises(RuntimeError):
        key_import_run(import_id=key_import.pk)

    # Then the first batch is committed and the import says where it stopped
    key_import.refresh_from_db()
    assert key_import.status == ImportStatus.FAILED
    assert key_import.processed_lines == 2
    assert "after line 2" in key_import.error
    assert sorted(pool(product)) == ["R-1", "R-2"]

    # When it is resumed
    monkeypatch.setattr(imports, "_commit_batch", real_commit)
    key_import = key_import_run(import_id=key_import.pk)

    # Then it finishes as if it had never stopped: nothing twice, the repeat of line 1 still a duplicate in the file
    assert key_import.status == ImportStatus.DONE
    assert key_import.error == ""
    assert key_import.processed_lines == 6
    assert report(key_import) == {
        "added": 4,
        "duplicates_in_file": 1,
        "duplicates_existing": 0,
        "blank": 1,
        "too_long": 0,
    }
    assert sorted(pool(product)) == ["R-1", "R-2", "R-3", "R-4"]


def test_keys_are_written_in_batches_not_one_by_one(import_now, monkeypatch, insert_path):
    # Given batches of 25 lines
    monkeypatch.setattr(imports, "BATCH_LINES", 25)
    product = ProductFactory()

    # When 100 keys are imported
    with CaptureQueriesContext(connection) as queries:
        key_import = import_now(product, "\n".join(f"B-{i}" for i in range(100)))

    # Then the pool got four multi-row inserts and the report moved after each batch
    key_inserts = [q for q in queries if re.search(r'INSERT INTO "?fulfillment_licensekey\b', q["sql"])]
    assert len(key_inserts) == 4
    progress = [q for q in queries if q["sql"].startswith('UPDATE "fulfillment_keyimport" SET "processed_lines"')]
    assert len(progress) == 4
    assert key_import.added == 100
    assert KeyEvent.objects.filter(key__product=product, type="imported").count() == 100


def test_an_import_fills_orders_waiting_for_stock_oldest_first(make_order, import_now):
    # Given two paid orders waiting for stock (the pool they were bought from was retired)
    product = ProductFactory()
    add_keys(product, 2)
    older, newer = make_order((product, 1)), make_order((product, 1), email="later@example.com")
    keys_set_state(
        key_ids=list(LicenseKey.objects.filter(product=product).values_list("pk", flat=True)),
        action="retire",
        actor="test",
    )
    now = timezone.now()
    Order.objects.filter(pk=older.pk).update(status=OrderStatus.AWAITING_STOCK, paid_at=now - timedelta(hours=2))
    Order.objects.filter(pk=newer.pk).update(status=OrderStatus.AWAITING_STOCK, paid_at=now - timedelta(hours=1))

    # When one new key is imported
    import_now(product, "RESTOCK-1\n")

    # Then the order that paid first gets it and the later one keeps waiting
    older.refresh_from_db()
    newer.refresh_from_db()
    assert older.status == OrderStatus.FULFILLED
    assert newer.status == OrderStatus.AWAITING_STOCK
    sold = LicenseKey.objects.get(product=product, status=KeyStatus.SOLD)
    assert sold.reveal() == "RESTOCK-1"
    assert sold.order_line.order_id == older.pk
