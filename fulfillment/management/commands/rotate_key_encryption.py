from django.core.management.base import BaseCommand
from django.db import transaction

from fulfillment.crypto import reencrypt_secret
from fulfillment.models import LicenseKey


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored license key under the first key in KEY_ENCRYPTION_KEYS. "
        "Put the new key first, keep the old ones after it, run this, then drop the old ones."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args, batch_size: int, **options):
        last_id, total = 0, 0
        while True:
            with transaction.atomic():
                batch = list(
                    LicenseKey.objects.select_for_update()
                    .filter(pk__gt=last_id)
                    .order_by("pk")
                    .only("pk", "ciphertext")[:batch_size]
                )
                if not batch:
                    break
                for key in batch:
                    key.ciphertext = reencrypt_secret(key.ciphertext)
                LicenseKey.objects.bulk_update(batch, ["ciphertext"])
            last_id, total = batch[-1].pk, total + len(batch)
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {total} license keys."))
