"""Bulk key import throughput: a 100,000-line file through key_import_create + key_import_run.

Called from tests/bench.py once Django is set up on a fresh database; runs on its own too:
`.venv/bin/python tests/bench_import.py` (PostgreSQL from DATABASE_URL, like tests/bench.py).
"""

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench_key_import(n: int = 100_000) -> dict:
    """Import an n-line key file into a new product (task eager, as in the suite) and time it end to end."""
    from django.core.files.uploadedfile import UploadedFile

    from fulfillment.imports import key_import_create, key_import_run
    from fulfillment.models import ImportStatus, KeyEvent, LicenseKey
    from tests.factories import ProductFactory

    product = ProductFactory(slug=f"bench-import-{time.time_ns()}", low_stock_threshold=5)
    with tempfile.NamedTemporaryFile(suffix=".txt") as handle:
        handle.writelines(f"BENCH-{product.pk}-{i:07d}-XXXX-YYYY\n".encode() for i in range(n))
        handle.flush()
        size = handle.tell()
        handle.seek(0)
        start = time.perf_counter()
        key_import = key_import_create(
            product=product, upload=UploadedFile(handle, name="bench.txt", size=size), actor="bench"
        )
        # Eager Celery already ran it on commit; with a real broker this runs it here. Either way it is done once.
        key_import = key_import_run(import_id=key_import.pk)
        elapsed = time.perf_counter() - start
    if key_import.status != ImportStatus.DONE or key_import.added != n:
        raise SystemExit(f"import incomplete: {key_import.status}, {key_import.added} of {n} keys added")
    if LicenseKey.objects.filter(product=product).count() != n:
        raise SystemExit("the pool does not hold every imported key exactly once")
    if KeyEvent.objects.filter(key__product=product, type="imported").count() != n:
        raise SystemExit("not every imported key has its audit row")
    return {"keys": n, "seconds": elapsed, "keys_per_s": n / elapsed}


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from tests import bench  # sets DJANGO_SETTINGS_MODULE and points DATABASE_URL at the bench database

    bench.recreate_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()
    call_command("migrate", verbosity=0)
    result = bench_key_import()
    print(f"key import: {result['keys_per_s']:.0f} keys/s ({result['keys']} keys in {result['seconds']:.1f} s)")
