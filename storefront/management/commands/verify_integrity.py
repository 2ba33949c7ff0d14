"""`manage.py verify_integrity`: after a restore, can the shop read what it sells, and does its stock add up?

Exits 0 when every license key decrypts with KEY_ENCRYPTION_KEYS, every fingerprint matches KEY_FINGERPRINT_SECRET,
every stock count agrees with the keys and every download file is in the private storage; otherwise prints each
problem by kind and exits 1; a database it cannot read at all (not restored, not migrated) exits 2. Changes
nothing (README, "Running it for real", backups).
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from fulfillment.integrity import PROBLEM_KINDS, integrity_check

SHOWN_PER_KIND = 20


class Command(BaseCommand):
    help = (
        "Check after a restore that every license key decrypts with KEY_ENCRYPTION_KEYS, its fingerprint matches "
        "KEY_FINGERPRINT_SECRET, stock counts agree with the keys and download files are present. "
        "Exits non-zero on any problem."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=2000, help="keys read per query (default 2000)")
        parser.add_argument(
            "--show", type=int, default=SHOWN_PER_KIND, help=f"problems listed per kind (default {SHOWN_PER_KIND})"
        )

    def handle(self, *args, batch_size: int, show: int, **options):
        try:
            report = integrity_check(batch_size=batch_size)
        except DatabaseError as exc:  # an empty or half-restored database: no table, no column
            raise CommandError(
                f"The database cannot be read ({type(exc).__name__}: {exc}). Was the dump restored, and `migrate` run?",
                returncode=2,
            ) from exc
        self.stdout.write(f"Checked {report.keys_checked} license keys and {report.products_checked} products.")
        if report.keys_under_older_key:
            self.stdout.write(
                f"Note: {report.keys_under_older_key} keys are encrypted under an older key of KEY_ENCRYPTION_KEYS "
                "(they read fine; `manage.py rotate_key_encryption` moves them to the first key)."
            )
        if report.ok:
            self.stdout.write(self.style.SUCCESS("OK: every key decrypts, fingerprints match, stock counts agree."))
            return
        for kind, title in PROBLEM_KINDS.items():
            found = [problem for problem in report.problems if problem.kind == kind]
            if not found:
                continue
            self.stdout.write(self.style.ERROR(f"{len(found)} {title}:"))
            for problem in found[:show]:
                self.stdout.write(f"  {problem.subject}" + (f": {problem.detail}" if problem.detail else ""))
            if len(found) > show:
                self.stdout.write(f"  ... and {len(found) - show} more")
        hints = []
        if report.count("undecryptable") or report.count("shared_key"):
            hints.append("KEY_ENCRYPTION_KEYS must hold the keys in use when the backup was taken")
        if report.count("fingerprint"):
            hints.append("KEY_FINGERPRINT_SECRET must be the one in use when the backup was taken")
        if report.count("stock"):
            hints.append(
                "beat's recount-key-stock sets stock counts right within 15 minutes, or at once: "
                "`manage.py shell -c 'from fulfillment.stock import keys_stock_recount; keys_stock_recount()'`"
            )
        if report.count("download_file"):
            hints.append("restore the private files (PRIVATE_MEDIA_ROOT or the S3 bucket)")
        for hint in hints:
            self.stdout.write(f"Hint: {hint}.")
        raise CommandError(f"{len(report.problems)} integrity problems found.", returncode=1)
