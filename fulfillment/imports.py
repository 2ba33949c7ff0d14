"""Keys in and out of the shop in bulk: a merchant's file imported by a task, unsold keys exported, and
the one shared code of a reusable-key product.

An import file is checked completely (type, size, UTF-8, no binary) before anything is stored, so a run
only ever sees a clean file. The run streams it in batches; each batch is one short transaction that adds
keys, writes their audit rows and advances the import's report, so the progress page is live and a run
that dies resumes after the last committed batch. Duplicates are found by fingerprint (an HMAC), never by
decrypting the pool, and the (product, fingerprint) unique constraint is the last guard when two imports
overlap: only rows this run really inserted count as added.

A run beats a heartbeat at every batch. One that died without a word (its worker SIGKILLed, its task lost
with Redis) leaves the import unfinished with an old heartbeat; beat's resume_stalled_key_imports starts it
again after KEY_IMPORT_STALL_AFTER, and staff can resume it from admin at once. Resuming is always safe: it
carries on after the last committed batch, and a run that finds another ahead of it stops.
"""

import codecs
import contextlib
import csv
import errno
import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

from celery import shared_task
from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import OperationalError, connection, transaction
from django.db.models.functions import Coalesce
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from catalog.models import FulfilmentKind, Product
from fulfillment.crypto import encrypt_secret, fingerprint_secret
from fulfillment.keys import MAX_KEY_LENGTH
from fulfillment.models import ImportStatus, KeyEvent, KeyEventType, KeyImport, KeyStatus, LicenseKey
from fulfillment.services import backorders_fill
from fulfillment.stock import keys_stock_adjust

logger = logging.getLogger(__name__)

DELIMITERS = ("", ",", ";", "\t", "|")
ALLOWED_EXTENSIONS = (".txt", ".csv")
BATCH_LINES = 5000
_USE_POSTGRES_ARRAYS = True  # tests switch it off to exercise the portable path
NOTE_MAX_LENGTH = LicenseKey._meta.get_field("note").max_length
_BINARY = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class KeyImportRejected(Exception):
    """A file that cannot be imported, with a message for the merchant. Nothing was stored."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------------------------------------------------
# Reading a key file
# ---------------------------------------------------------------------------------------------------------


class _NotUtf8(Exception):
    def __init__(self, line: int):
        super().__init__(f"line {line} is not UTF-8")
        self.line = line


def _text_lines(source: File) -> Iterator[str]:
    """The decoded lines of a stored or uploaded file, without line endings (LF, CRLF and CR all end one).

    A leading UTF-8 BOM is dropped; a line that is not UTF-8 raises _NotUtf8 with its number.
    """
    for number, raw in enumerate(source, start=1):  # django.core.files.File reads in chunks, splits lines
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _NotUtf8(number) from None
        yield line.rstrip("\r\n")


def _split(line: str, delimiter: str) -> tuple[str, str]:
    """(key, note) of one line: the first column is the key, the optional second a note."""
    if not delimiter or delimiter not in line:
        return line.strip(), ""
    columns = line.split(delimiter, 2)
    if '"' in line:  # quoted CSV fields, as spreadsheets write them; on a csv.Error the plain split stands
        with contextlib.suppress(csv.Error):
            columns = next(csv.reader([line], delimiter=delimiter), [""])
    key = columns[0].strip() if columns else ""
    note = columns[1].strip()[:NOTE_MAX_LENGTH] if len(columns) > 1 else ""
    return key, note


def _scan(source: File) -> int:
    """Check a whole file is UTF-8 text with at least one key; returns its line count or rejects it."""
    source.seek(0)
    if source.read(2) in _UTF16_BOMS:
        raise KeyImportRejected(
            "The file is saved as UTF-16 text. Save it as UTF-8 (in Excel: “CSV UTF-8”) and upload it again."
        )
    lines = 0
    has_key = False
    try:
        for line in _text_lines(source):
            lines += 1
            if _BINARY.search(line):
                raise KeyImportRejected(
                    f"Line {lines} contains binary data (control characters): this is not a text file of keys."
                )
            has_key = has_key or bool(line.strip())
    except _NotUtf8 as exc:
        raise KeyImportRejected(
            f"Line {exc.line} is not UTF-8 text: this may be a binary file (a spreadsheet, an image) or text saved "
            "in another encoding. Save it as UTF-8 text and upload it again."
        ) from None
    if not has_key:
        raise KeyImportRejected("The file is empty: it has no keys." if lines else "The file is empty.")
    return lines


def _check_product(product: Product) -> None:
    if product.kind != FulfilmentKind.LICENSE_KEY:
        raise KeyImportRejected("Keys can only be imported into a license-key product.")
    if product.is_reusable_key:
        raise KeyImportRejected(
            "This product sells one shared key to every buyer, so it has no pool of keys to import into."
        )
    if product.keys_unlimited:
        raise KeyImportRejected(
            "This product generates a new key for every buyer, so it has no pool of keys to import into."
        )


# ---------------------------------------------------------------------------------------------------------
# Import: create (validate, store, enqueue) and run (the task's work)
# ---------------------------------------------------------------------------------------------------------


def key_import_create(
    *,
    product: Product,
    actor: str,
    upload: File | None = None,
    text: str | None = None,
    delimiter: str = "",
) -> KeyImport:
    """Check a merchant's key file (an upload, or pasted text), store it and enqueue its import.

    Everything is checked before anything is stored: the product takes single-use keys, the file is
    a .txt or .csv of at most MAX_KEY_IMPORT_BYTES, and all of it decodes as UTF-8 text (a BOM is
    fine) without binary bytes. A file that fails raises KeyImportRejected and leaves no trace.
    """
    _check_product(product)
    if (upload is None) == (text is None):
        raise KeyImportRejected("Choose a file or paste keys, one of the two.")
    if delimiter not in DELIMITERS:
        raise KeyImportRejected("Unknown column separator: use none (one key per line), comma, semicolon, tab or |.")
    if upload is not None:
        name = upload.name or ""
        extension = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if extension not in ALLOWED_EXTENSIONS:
            raise KeyImportRejected(f"Only .txt or .csv files can be imported (got “{name or 'no name'}”).")
        source: File = upload
    else:
        extension = ".txt"
        source = ContentFile((text or "").encode("utf-8"))
    size = source.size
    if size > settings.MAX_KEY_IMPORT_BYTES:
        raise KeyImportRejected(
            f"The file is {filesizeformat(size)}; an import can be at most "
            f"{filesizeformat(settings.MAX_KEY_IMPORT_BYTES)}. Split it into smaller files."
        )
    source.open("rb")
    total_lines = _scan(source)

    key_import = KeyImport(product=product, delimiter=delimiter, created_by=actor, total_lines=total_lines)
    source.seek(0)
    _store_source(key_import, source, name=f"product-{product.pk}-{secrets.token_hex(8)}{extension}")
    try:
        with transaction.atomic():
            key_import.save()
            import_id = key_import.pk
            # robust: with the broker away the upload still succeeds; the stalled-import job enqueues it later
            transaction.on_commit(lambda: run_key_import.delay(import_id), robust=True)
    except BaseException:
        default_storage.delete(key_import.source.name)
        raise
    logger.info("%s uploaded key import %s for product %s (%d lines)", actor, key_import.pk, product.pk, total_lines)
    return key_import


STORAGE_FULL_MESSAGE = (
    "The file could not be stored: the shop's storage is full. Nothing was imported. "
    "Free some space (or ask whoever runs the shop to), then upload it again."
)
STORAGE_FAILED_MESSAGE = "The file could not be stored ({reason}). Nothing was imported; please try again."


def _store_source(key_import: KeyImport, source: File, *, name: str) -> None:
    """Save the checked file for the task; if storage fails (disk full...), leave nothing behind and say so."""
    field = key_import.source
    target = field.field.generate_filename(key_import, name)
    try:
        field.save(name, source, save=False)
    except OSError as exc:
        # a half-written file holds keys in clear: remove it (the name is ours, random, and was free)
        with contextlib.suppress(OSError):
            if field.storage.exists(target):
                field.storage.delete(target)
        logger.warning("key import for product %s not stored: %s", key_import.product_id, exc.strerror or exc)
        raise storage_rejection(exc) from exc


def storage_rejection(exc: OSError) -> KeyImportRejected:
    """What to tell the merchant when the shop's disk or storage refused their file."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return KeyImportRejected(STORAGE_FULL_MESSAGE)
    return KeyImportRejected(STORAGE_FAILED_MESSAGE.format(reason=exc.strerror or type(exc).__name__))


@dataclass
class _Batch:
    lines: int = 0
    blank: int = 0
    too_long: int = 0
    duplicates_in_file: int = 0
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # fingerprint -> (key, note)


_REPORT_FIELDS = ["processed_lines", "added", "duplicates_in_file", "duplicates_existing", "blank", "too_long"]


class _Overtaken(Exception):
    """Another run of the same import committed first; this one stops."""


def key_import_run(*, import_id: int) -> KeyImport | None:
    """Import the keys of a stored file into its product's pool, batch by batch, and report.

    Idempotent and safe to run again at any point: a finished import is left alone, a run that died
    resumes after the last committed batch, and if two runs of one import overlap the second stops at
    its first batch. Each batch's keys are counted into the product's stock (and the low-stock alert
    re-evaluated) as it commits; at the end, orders waiting for this product's stock are filled (oldest
    first) once the import has committed.
    """
    key_import = KeyImport.objects.select_related("product").filter(pk=import_id).first()
    if key_import is None:
        logger.warning("key import %s no longer exists", import_id)
        return None
    if key_import.status == ImportStatus.DONE:
        return key_import
    KeyImport.objects.filter(pk=import_id).exclude(status=ImportStatus.DONE).update(
        status=ImportStatus.RUNNING, error="", heartbeat_at=timezone.now()
    )
    try:
        _run_batches(key_import)
        _finish(key_import)
    except _Overtaken:
        logger.info("key import %s: another run got ahead, this one stops", import_id)
    except Exception as exc:
        logger.exception("key import %s failed after line %d", import_id, key_import.processed_lines)
        KeyImport.objects.filter(pk=import_id).exclude(status=ImportStatus.DONE).update(
            status=ImportStatus.FAILED,
            error=f"Stopped after line {key_import.processed_lines} ({type(exc).__name__}); resuming carries on there.",
        )
        raise
    key_import.refresh_from_db()
    return key_import


def key_import_resume(*, import_id: int) -> None:
    """Enqueue an unfinished import again (it failed, or its run died); it carries on after its last committed
    batch. Safe even if a run is still alive: whichever commits first goes on, the other stops."""
    transaction.on_commit(lambda: run_key_import.delay(import_id))


def key_imports_resume_stalled(*, now=None) -> list[int]:
    """Resume imports waiting or running with no heartbeat for KEY_IMPORT_STALL_AFTER: their task was lost or
    their worker died mid-run. Each is stamped as it is enqueued, so it is not enqueued again before its new run
    had time to beat. Returns the imports resumed."""
    now = now or timezone.now()
    stalled = (
        KeyImport.objects.filter(status__in=[ImportStatus.PENDING, ImportStatus.RUNNING])
        .annotate(last_sign=Coalesce("heartbeat_at", "created_at"))
        .filter(last_sign__lt=now - settings.KEY_IMPORT_STALL_AFTER)
    )
    resumed = []
    for key_import in stalled.only("pk", "processed_lines", "heartbeat_at"):
        with transaction.atomic():
            if not KeyImport.objects.filter(pk=key_import.pk, heartbeat_at=key_import.heartbeat_at).update(
                heartbeat_at=now
            ):
                continue  # beat again meanwhile: alive after all
            key_import_resume(import_id=key_import.pk)
        logger.warning(
            "key import %s stalled after line %d (no heartbeat since %s): resumed",
            key_import.pk,
            key_import.processed_lines,
            key_import.last_sign,
        )
        resumed.append(key_import.pk)
    return resumed


def _run_batches(key_import: KeyImport) -> None:
    # In-file duplicates: 16 bytes of each fingerprint seen so far (2M keys ~ 150 MB, no false hits in practice).
    seen: set[bytes] = set()
    resume_after = key_import.processed_lines
    batch = _Batch()
    with key_import.source.open("rb") as source:
        for number, line in enumerate(_text_lines(source), start=1):
            key, note = _split(line, key_import.delimiter)
            if number <= resume_after:  # committed by an earlier run: only remember its keys
                if key and len(key) <= MAX_KEY_LENGTH:
                    seen.add(bytes.fromhex(fingerprint_secret(key)[:32]))
                if number % BATCH_LINES == 0:
                    _heartbeat(key_import)  # re-reading a long committed part: still alive
                continue
            batch.lines += 1
            if not key:
                batch.blank += 1
            elif len(key) > MAX_KEY_LENGTH:
                batch.too_long += 1
            else:
                fingerprint = fingerprint_secret(key)
                short = bytes.fromhex(fingerprint[:32])
                if short in seen:
                    batch.duplicates_in_file += 1
                else:
                    seen.add(short)
                    batch.keys[fingerprint] = (key, note)
            if batch.lines >= BATCH_LINES:
                _commit_batch(key_import, batch)
                batch = _Batch()
    if batch.lines:
        _commit_batch(key_import, batch)


def _commit_batch(key_import: KeyImport, batch: _Batch) -> None:
    """Add one batch's new keys with their audit rows and advance the report, in one transaction."""
    product_id = key_import.product_id
    existing = set(
        LicenseKey.objects.filter(product_id=product_id, fingerprint__in=list(batch.keys)).values_list(
            "fingerprint", flat=True
        )
    )
    rows = [
        _NewKey(fingerprint=fingerprint, ciphertext=encrypt_secret(key), note=note)
        for fingerprint, (key, note) in batch.keys.items()
        if fingerprint not in existing
    ]
    with transaction.atomic():
        locked = KeyImport.objects.select_for_update().get(pk=key_import.pk)
        if locked.status == ImportStatus.DONE or locked.processed_lines != key_import.processed_lines:
            raise _Overtaken
        added = _insert_new_keys(product_id=product_id, rows=rows, actor=key_import.created_by) if rows else 0
        keys_stock_adjust(product_id=product_id, delta=added)  # counted (and low stock re-checked) on commit
        locked.processed_lines += batch.lines
        locked.added += added
        locked.duplicates_in_file += batch.duplicates_in_file
        locked.duplicates_existing += len(batch.keys) - added
        locked.blank += batch.blank
        locked.too_long += batch.too_long
        locked.heartbeat_at = timezone.now()
        locked.save(update_fields=[*_REPORT_FIELDS, "heartbeat_at"])
    for name in _REPORT_FIELDS:
        setattr(key_import, name, getattr(locked, name))


def _heartbeat(key_import: KeyImport) -> None:
    KeyImport.objects.filter(pk=key_import.pk, status=ImportStatus.RUNNING).update(heartbeat_at=timezone.now())


@dataclass(frozen=True)
class _NewKey:
    fingerprint: str
    ciphertext: bytes
    note: str


# One statement per batch: the keys go in as three arrays, the unique constraint skips any fingerprint a
# concurrent import committed first, and only the rows really inserted get their 'imported' audit row.
_PG_INSERT_KEYS_AND_EVENTS = """
WITH added AS (
    INSERT INTO fulfillment_licensekey (product_id, status, created_at, fingerprint, ciphertext, note)
    SELECT %(product_id)s, %(status)s, %(now)s, row.fingerprint, row.ciphertext, row.note
    FROM unnest(%(fingerprints)s::varchar[], %(ciphertexts)s::bytea[], %(notes)s::varchar[])
        AS row (fingerprint, ciphertext, note)
    ON CONFLICT (product_id, fingerprint) DO NOTHING
    RETURNING id
)
INSERT INTO fulfillment_keyevent (key_id, type, actor, created_at)
SELECT id, 'imported', %(actor)s, %(now)s FROM added
"""


def _insert_new_keys(*, product_id: int, rows: list[_NewKey], actor: str) -> int:
    """Insert keys (skipping any fingerprint already in the pool) with their audit rows; returns how many."""
    if connection.vendor == "postgresql" and _USE_POSTGRES_ARRAYS:
        with connection.cursor() as cursor:
            cursor.execute(
                _PG_INSERT_KEYS_AND_EVENTS,
                {
                    "product_id": product_id,
                    "status": KeyStatus.AVAILABLE.value,
                    "now": timezone.now(),
                    "fingerprints": [row.fingerprint for row in rows],
                    "ciphertexts": [row.ciphertext for row in rows],
                    "notes": [row.note for row in rows],
                    "actor": actor,
                },
            )
            return cursor.rowcount
    # Portable path (the SQLite demo): the constraint skips conflicting rows without saying which, so ours
    # are found again by their ciphertexts, unique thanks to Fernet's random IVs.
    LicenseKey.objects.bulk_create(
        [
            LicenseKey(product_id=product_id, fingerprint=row.fingerprint, ciphertext=row.ciphertext, note=row.note)
            for row in rows
        ],
        batch_size=500,
        ignore_conflicts=True,
    )
    ours = {row.ciphertext for row in rows}
    added_ids = [
        pk
        for pk, ciphertext in LicenseKey.objects.filter(
            product_id=product_id, fingerprint__in=[row.fingerprint for row in rows]
        ).values_list("pk", "ciphertext")
        if bytes(ciphertext) in ours
    ]
    KeyEvent.objects.bulk_create(
        [KeyEvent(key_id=pk, type=KeyEventType.IMPORTED, actor=actor) for pk in added_ids], batch_size=500
    )
    return len(added_ids)


def _finish(key_import: KeyImport) -> None:
    product_id = key_import.product_id
    source_name = key_import.source.name
    with transaction.atomic():
        locked = KeyImport.objects.select_for_update().get(pk=key_import.pk)
        if locked.status == ImportStatus.DONE or locked.processed_lines != key_import.processed_lines:
            raise _Overtaken
        locked.status = ImportStatus.DONE
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "finished_at"])
        if locked.added:  # this is a task already: orders waiting for the stock are filled here, after commit
            transaction.on_commit(lambda: backorders_fill(product_id=product_id), robust=True)
        # The file holds the keys in clear; once they are encrypted in the pool it has served its purpose.
        transaction.on_commit(lambda: default_storage.delete(source_name))
    logger.info(
        "key import %s for product %s done: %d added, %d duplicates in file, %d already in stock, "
        "%d blank, %d too long",
        locked.pk,
        product_id,
        locked.added,
        locked.duplicates_in_file,
        locked.duplicates_existing,
        locked.blank,
        locked.too_long,
    )


@shared_task(
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
    acks_late=True,
    soft_time_limit=55 * 60,
    time_limit=60 * 60,
)
def run_key_import(import_id: int) -> str | None:
    key_import = key_import_run(import_id=import_id)
    return key_import.status if key_import else None
