"""What a restore must bring back whole: license keys the configured secrets can read, and stock that adds up.

`integrity_check` reads the key pool in batches and answers, for `manage.py verify_integrity`, with every
problem it found. It changes nothing. A key is named by its id and product, never by its value.

- A key or a product's shared key that no key in KEY_ENCRYPTION_KEYS decrypts (the restore came with other
  encryption keys, or the row is damaged): that key can never be delivered.
- A key whose HMAC fingerprint is not the one KEY_FINGERPRINT_SECRET gives its value (another fingerprint
  secret, or a damaged row): duplicate detection on import no longer sees it.
- A product whose kept stock count (`Product.keys_available`) is not the number of its available keys.
- A product whose download file is missing from the private storage (the files were not restored).

Keys still encrypted under an older key of KEY_ENCRYPTION_KEYS are counted as a note, not a problem: they read
fine, and `manage.py rotate_key_encryption` moves them to the first key.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.fernet import InvalidToken
from django.core.files.storage import default_storage
from django.db.models import Count, F, FilteredRelation, Q

from catalog.models import FulfilmentKind, Product
from fulfillment.crypto import decrypt_secret_naming_key, fingerprint_secret
from fulfillment.models import KeyStatus, LicenseKey
from fulfillment.services import STORAGE_ERRORS

PROBLEM_KINDS = {
    "undecryptable": "keys no key in KEY_ENCRYPTION_KEYS decrypts",
    "fingerprint": "keys whose fingerprint does not match KEY_FINGERPRINT_SECRET",
    "shared_key": "products whose shared key no key in KEY_ENCRYPTION_KEYS decrypts",
    "stock": "products whose stock count differs from their available keys",
    "download_file": "products whose download file is missing from the private storage",
}


@dataclass(frozen=True)
class IntegrityProblem:
    kind: str  # one of PROBLEM_KINDS
    subject: str  # "key 12 (product 3)", "product 3"
    detail: str = ""


@dataclass
class IntegrityReport:
    keys_checked: int = 0
    products_checked: int = 0
    keys_under_older_key: int = 0
    problems: list[IntegrityProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def count(self, kind: str) -> int:
        return sum(1 for problem in self.problems if problem.kind == kind)


def integrity_check(*, batch_size: int = 2000, progress: Callable[[int], None] | None = None) -> IntegrityReport:
    """Check every license key, shared key, stock count and download file against the configured secrets.

    Read-only, in batches by id (no transaction is held across the pool). `progress`, if given, is called with
    the number of keys checked after each batch.
    """
    report = IntegrityReport()
    _check_keys(report, batch_size=batch_size, progress=progress)
    _check_shared_keys(report)
    _check_stock_counts(report)
    _check_download_files(report)
    report.products_checked = Product.objects.count()
    return report


def _check_keys(report: IntegrityReport, *, batch_size: int, progress: Callable[[int], None] | None) -> None:
    last_id = 0
    while True:
        batch = list(
            LicenseKey.objects.filter(pk__gt=last_id)
            .order_by("pk")
            .values_list("pk", "product_id", "ciphertext", "fingerprint")[:batch_size]
        )
        if not batch:
            return
        for key_id, product_id, ciphertext, fingerprint in batch:
            subject = f"key {key_id} (product {product_id})"
            try:
                value, position = decrypt_secret_naming_key(ciphertext)
            except (InvalidToken, UnicodeDecodeError):
                report.problems.append(IntegrityProblem("undecryptable", subject))
                continue
            if position:
                report.keys_under_older_key += 1
            if fingerprint_secret(value) != fingerprint:
                report.problems.append(IntegrityProblem("fingerprint", subject))
        report.keys_checked += len(batch)
        last_id = batch[-1][0]
        if progress is not None:
            progress(report.keys_checked)


def _check_shared_keys(report: IntegrityReport) -> None:
    shared = Product.objects.filter(kind=FulfilmentKind.LICENSE_KEY, shared_key_ciphertext__isnull=False)
    for product_id, ciphertext in shared.order_by("pk").values_list("pk", "shared_key_ciphertext"):
        try:
            _, position = decrypt_secret_naming_key(ciphertext)
        except (InvalidToken, UnicodeDecodeError):
            report.problems.append(IntegrityProblem("shared_key", f"product {product_id}"))
            continue
        if position:
            report.keys_under_older_key += 1


def _check_stock_counts(report: IntegrityReport) -> None:
    # The same grouped query as fulfillment.stock.keys_stock_recount, read only: the counter and the pool in one
    # snapshot.
    drifted = (
        Product.objects.annotate(
            pool=FilteredRelation("license_keys", condition=Q(license_keys__status=KeyStatus.AVAILABLE)),
            true_count=Count("pool"),
        )
        .exclude(keys_available=F("true_count"))
        .order_by("pk")
        .values_list("pk", "keys_available", "true_count")
    )
    for product_id, counted, true_count in drifted:
        report.problems.append(
            IntegrityProblem(
                "stock", f"product {product_id}", f"counter says {counted}, {true_count} keys are available"
            )
        )


def _check_download_files(report: IntegrityReport) -> None:
    with_files = Product.objects.exclude(download_file="").order_by("pk").values_list("pk", "download_file")
    for product_id, name in with_files:
        try:
            present = default_storage.exists(name)
        except STORAGE_ERRORS as exc:
            report.problems.append(
                IntegrityProblem("download_file", f"product {product_id}", f"{name}: {type(exc).__name__}")
            )
            continue
        if not present:
            report.problems.append(IntegrityProblem("download_file", f"product {product_id}", name))
