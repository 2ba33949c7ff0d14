"""Key imports that meet a fault: a run killed mid-way resumes by itself (or from admin at once) without a
duplicate, an upload whose enqueue was lost with Redis is still imported, and a full disk refuses the upload
with a clear message and leaves nothing behind."""

import errno
from datetime import timedelta

import kombu.exceptions
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Count
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import fulfillment.tasks  # noqa: F401  (registers the beat jobs' tasks)
from fulfillment import imports
from fulfillment.imports import KeyImportRejected, key_import_create, key_import_run
from fulfillment.models import ImportStatus, KeyEvent, KeyImport, LicenseKey
from storefront.celery import app as celery_app
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

# 9 lines, 7 distinct keys: a repeat inside the file and a blank line
FILE = "R-1\nR-2\nR-3\nR-2\nR-4\n\nR-5\nR-6\nR-7\n"
KEYS = {f"R-{i}" for i in range(1, 8)}


class WorkerKilled(BaseException):
    """What a SIGKILL looks like from inside the run: it stops at once, and no handler of the run gets to act."""


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    return tmp_path


@pytest.fixture
def killed_after_two_batches(monkeypatch, time_machine):
    """An import of FILE (batches of 2 lines) whose run was killed once its second batch had committed."""
    time_machine.move_to(timezone.now(), tick=False)
    monkeypatch.setattr(imports, "BATCH_LINES", 2)
    monkeypatch.setattr(imports.run_key_import, "delay", lambda import_id: None)  # the task is in a broker
    product = ProductFactory()
    key_import = key_import_create(product=product, upload=SimpleUploadedFile("keys.txt", FILE.encode()), actor="a")
    real_commit = imports._commit_batch
    committed = []

    def commit_then_die(key_import, batch):
        real_commit(key_import, batch)
        committed.append(batch.lines)
        if len(committed) == 2:
            raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(imports, "_commit_batch", commit_then_die)
        with pytest.raises(WorkerKilled):
            key_import_run(import_id=key_import.pk)
    monkeypatch.undo()  # the next runs are ordinary (eager) runs
    key_import.refresh_from_db()
    assert (key_import.status, key_import.processed_lines) == (ImportStatus.RUNNING, 4)
    return key_import


def run_beat_jobs(module: str, capture) -> None:
    """Every job beat runs for `module` (as it does every minute), tasks eager, their on-commit work done."""
    with capture(execute=True):
        for entry in settings.CELERY_BEAT_SCHEDULE.values():
            if entry["task"].startswith(f"{module}."):
                celery_app.tasks[entry["task"]].apply().get()


def assert_imported_once(key_import: KeyImport) -> None:
    key_import.refresh_from_db()
    assert key_import.status == ImportStatus.DONE
    assert key_import.processed_lines == key_import.total_lines == 9
    assert (key_import.added, key_import.duplicates_in_file, key_import.blank) == (7, 1, 1)
    pool = LicenseKey.objects.filter(product=key_import.product)
    assert {key.reveal() for key in pool} == KEYS
    assert pool.count() == len(KEYS)
    assert not pool.values("fingerprint").annotate(n=Count("pk")).filter(n__gt=1).exists()
    assert KeyEvent.objects.filter(key__product=key_import.product, type="imported").count() == len(KEYS)


def test_an_import_whose_worker_was_killed_is_resumed_by_beat_once_its_heartbeat_is_stale(
    killed_after_two_batches, time_machine, django_capture_on_commit_callbacks
):
    key_import = killed_after_two_batches

    # When beat runs a minute later, the import could still be alive: it is left alone
    time_machine.move_to(timezone.now() + timedelta(minutes=1), tick=False)
    run_beat_jobs("fulfillment", django_capture_on_commit_callbacks)
    key_import.refresh_from_db()
    assert (key_import.status, key_import.processed_lines) == (ImportStatus.RUNNING, 4)

    # When beat runs again after the stall limit without a heartbeat
    time_machine.move_to(timezone.now() + settings.KEY_IMPORT_STALL_AFTER, tick=False)
    run_beat_jobs("fulfillment", django_capture_on_commit_callbacks)

    # Then the import carried on after its last committed batch and every key of the file is in stock, once
    assert_imported_once(key_import)


def test_staff_resume_a_killed_import_from_admin_at_once(killed_after_two_batches, django_capture_on_commit_callbacks):
    # Given a merchant in admin, right after the worker died
    merchant = get_user_model().objects.create_superuser("merchant", "m@example.com", "merchant-pass-1")
    client = Client()
    client.force_login(merchant)

    # When they select the import and choose "Resume"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:fulfillment_keyimport_changelist"),
            {"action": "resume_imports", "_selected_action": [killed_after_two_batches.pk]},
            follow=True,
        )

    # Then it is finished at once, every key once, and admin says so
    assert "1 import(s) resumed" in response.content.decode()
    assert_imported_once(killed_after_two_batches)


def test_an_upload_whose_task_was_lost_with_redis_is_still_imported(
    monkeypatch, time_machine, django_capture_on_commit_callbacks
):
    # Given the broker is down when a merchant uploads a file
    time_machine.move_to(timezone.now(), tick=False)

    def broker_down(import_id):
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(imports.run_key_import, "delay", broker_down)
    product = ProductFactory()
    with django_capture_on_commit_callbacks(execute=True):
        key_import = key_import_create(product=product, upload=SimpleUploadedFile("keys.txt", FILE.encode()), actor="a")

    # Then the upload is accepted and waits
    key_import.refresh_from_db()
    assert key_import.status == ImportStatus.PENDING

    # When Redis is back and beat runs after the stall limit, the import runs
    monkeypatch.undo()
    time_machine.move_to(timezone.now() + settings.KEY_IMPORT_STALL_AFTER + timedelta(seconds=1), tick=False)
    run_beat_jobs("fulfillment", django_capture_on_commit_callbacks)
    assert_imported_once(key_import)


# A full disk -------------------------------------------------------------------------------------------------


class DiskFullStorage(FileSystemStorage):
    """Writes the first chunk of a file, then the disk is full (as FileSystemStorage leaves it: a partial file)."""

    def _save(self, name, content):
        with open(self.path(name), "wb") as partial:
            partial.write(next(iter(content.chunks(64))))
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def disk_full(settings, private_media):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": f"{__name__}.DiskFullStorage", "OPTIONS": {"location": str(private_media)}},
    }
    (private_media / "key-imports").mkdir()
    return private_media


def stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()]


def test_a_full_disk_refuses_the_import_with_a_clear_message_and_records_nothing(disk_full):
    product = ProductFactory()

    with pytest.raises(KeyImportRejected) as refused:
        key_import_create(product=product, upload=SimpleUploadedFile("keys.txt", FILE.encode()), actor="a")

    assert "storage is full" in refused.value.message and "Nothing was imported" in refused.value.message
    assert not KeyImport.objects.exists()
    assert stored_files(disk_full) == []  # the half-written file held keys in clear


def upload_on_the_admin_import_page():
    """A merchant uploads FILE on a product's key-import page; the page they get back."""
    merchant = get_user_model().objects.create_superuser("merchant", "m@example.com", "merchant-pass-1")
    client = Client()
    client.force_login(merchant)
    url = reverse("admin:catalog_product_import_keys", args=[ProductFactory().pk])
    return client.post(url, {"file": SimpleUploadedFile("keys.txt", FILE.encode()), "text": "", "delimiter": "line"})


def assert_told_the_storage_is_full_and_nothing_recorded(response) -> None:
    assert response.status_code == 200
    assert "the shop&#x27;s storage is full" in response.content.decode()
    assert not KeyImport.objects.exists()
    assert not LicenseKey.objects.exists()


def test_the_admin_import_page_shows_the_full_disk_and_records_nothing(disk_full):
    response = upload_on_the_admin_import_page()

    assert_told_the_storage_is_full_and_nothing_recorded(response)
    assert stored_files(disk_full) == []


def test_an_upload_that_fills_the_temporary_disk_is_refused_on_the_admin_page(settings, monkeypatch):
    # Given an upload large enough to be spooled to a temporary file, on a disk that is full
    from django.core.files import uploadedfile

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(uploadedfile.tempfile, "NamedTemporaryFile", no_space)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 10

    # When the merchant uploads it, then the import page says the storage is full, and nothing was recorded
    assert_told_the_storage_is_full_and_nothing_recorded(upload_on_the_admin_import_page())
