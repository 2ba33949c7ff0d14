"""Long staff actions as tasks with progress: refunds of many orders, a key export, a bulk key change, a backtest.

The admin records a StaffJob and returns at once with a link to its progress page; the task works through the
job's targets and commits its progress item by item (refunds) or batch by batch (keys), with a heartbeat, the
way a key import does (fulfillment.imports). Every run is safe to repeat:

- a refund goes through storefront.flow.refunds.refund_issue, which refunds an order once whatever happens: a
  run that died after the provider paid but before its progress committed finds the order refunded next time
  and reports it as such; the provider is never asked twice for the same money (idempotency keys);
- a batch of keys changes state in the same transaction as the progress that counts it;
- an export records its 'exported' events and its encrypted file in one transaction with the job's end;
- a backtest (storefront.flow.backtest_job) only reads: a run that died replays from the start again, and its
  comparison replaces what an earlier run may have stored, so a job holds one comparison however often it ran.

A run that died is resumed after its last committed item by the beat job resume-stalled-staff-jobs, or from
admin (*Staff jobs*, *Resume*); if two runs overlap, the second stops at its first commit.
"""

import io
import logging
from dataclasses import dataclass, field

from celery import shared_task
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import OperationalError, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

from catalog.models import Product
from fulfillment.crypto import decrypt_secret, encrypt_secret
from fulfillment.keys import keys_export_unsold, keys_set_state
from orders.models import Order, OrderStatus
from payments.providers.base import PaymentError
from payments.refunds import RefundNotAllowed
from storefront.csv_export import csv_writer
from storefront.flow.backtest_job import backtest_job_compute
from storefront.flow.refunds import refund_issue
from storefront.models import StaffJob, StaffJobKind, StaffJobStatus

logger = logging.getLogger(__name__)

KEY_BATCH = 500
KEY_ACTIONS = {StaffJobKind.LOCK_KEYS: "lock", StaffJobKind.UNLOCK_KEYS: "unlock", StaffJobKind.RETIRE_KEYS: "retire"}
DEFAULT_REFUND_REASON = "Refunded from admin."


class _Overtaken(Exception):
    """Another run of the same job committed first; this one stops."""


@dataclass
class _Step:
    """What one item or batch came to, committed with the progress that counts it."""

    items: int
    succeeded: int = 0
    skipped: int = 0
    failed: int = 0
    lines: list[str] = field(default_factory=list)


# Starting -------------------------------------------------------------------------------------------------


def staff_job_start(*, kind: str, actor: str, targets: list[int] | None = None, params: dict | None = None) -> StaffJob:
    """Record a staff job and enqueue its run once the record has committed. Returns at once.

    `targets` are the ids the job works through in order (orders to refund, keys to change); an export
    names its product in `params` instead. Like a key import, a broker that is away does not fail the
    request: the stalled-job sweep enqueues the job later.
    """
    targets = list(dict.fromkeys(targets or []))
    with transaction.atomic():
        job = StaffJob.objects.create(
            kind=kind, created_by=actor, targets=targets, total=len(targets), params=params or {}
        )
        job_id = job.pk
        transaction.on_commit(lambda: run_staff_job.delay(job_id), robust=True)
    logger.info("%s started staff job %s (%s, %d items)", actor, job.pk, kind, len(targets))
    return job


def staff_job_resume(*, job_id: int) -> None:
    """Enqueue an unfinished job again; it carries on after its last committed item."""
    transaction.on_commit(lambda: run_staff_job.delay(job_id))


# Running --------------------------------------------------------------------------------------------------


def staff_job_run(*, job_id: int) -> StaffJob | None:
    """Work through a job from its last committed item to the end. Idempotent; a finished job is left alone."""
    job = StaffJob.objects.filter(pk=job_id).first()
    if job is None:
        logger.warning("staff job %s no longer exists", job_id)
        return None
    if job.status == StaffJobStatus.DONE:
        return job
    StaffJob.objects.filter(pk=job_id).exclude(status=StaffJobStatus.DONE).update(
        status=StaffJobStatus.RUNNING, error="", heartbeat_at=timezone.now()
    )
    try:
        _RUNNERS[job.kind](job)
        _finish(job)
    except _Overtaken:
        logger.info("staff job %s: another run got ahead, this one stops", job_id)
    except Exception as exc:
        logger.exception("staff job %s failed after %d of %d items", job_id, job.processed, job.total)
        StaffJob.objects.filter(pk=job_id).exclude(status=StaffJobStatus.DONE).update(
            status=StaffJobStatus.FAILED,
            error=f"Stopped after {job.processed} of {job.total} ({type(exc).__name__}); resuming carries on there.",
        )
        raise
    job.refresh_from_db()
    return job


def _run_refunds(job: StaffJob) -> None:
    reason = job.params.get("reason") or DEFAULT_REFUND_REASON
    for order_id in job.targets[job.processed :]:
        step = _refund_one(order_id=order_id, actor=job.created_by, reason=reason)
        with transaction.atomic():
            _commit_step(job, step)


def _refund_one(*, order_id: int, actor: str, reason: str) -> _Step:
    """Refund one order in full through the flow layer and say how it went, for the job's report."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        return _Step(items=1, skipped=1, lines=[f"Order #{order_id} no longer exists."])
    if order.status == OrderStatus.REFUNDED:  # an earlier run (or someone else) refunded it already
        return _Step(items=1, skipped=1, lines=[f"{order.number}: already refunded."])
    try:
        refund_issue(order=order, actor=actor, reason=reason)
    except RefundNotAllowed as exc:
        return _Step(items=1, skipped=1, lines=[f"{order.number}: not refunded ({exc})."])
    except PaymentError as exc:
        # The refund stays pending at the provider's door: reconciliation retries it, never paying twice.
        return _Step(items=1, failed=1, lines=[f"{order.number}: the provider did not answer ({exc}); retried later."])
    return _Step(items=1, succeeded=1, lines=[f"{order.number} refunded."])


def _run_key_state(job: StaffJob) -> None:
    action = KEY_ACTIONS[job.kind]
    while job.processed < job.total:
        batch = job.targets[job.processed : job.processed + KEY_BATCH]
        with transaction.atomic():
            locked = _lock_unchanged(job)
            changed = keys_set_state(key_ids=batch, action=action, actor=job.created_by)
            _save_step(locked, job, _Step(items=len(batch), succeeded=changed, skipped=len(batch) - changed))


def _run_export(job: StaffJob) -> None:
    """Every unsold key of the product, in clear, into a CSV encrypted at rest; audited in the same transaction."""
    product = Product.objects.get(pk=job.params["product"])
    name = f"staff-jobs/export-{job.pk}.csv.enc"
    with transaction.atomic():
        locked = _lock_unchanged(job)
        export = keys_export_unsold(product=product, actor=job.created_by)
        buffer = io.StringIO()
        writer = csv_writer(buffer)  # quotes cells a spreadsheet would run as formulas
        writer.writerow(["key", "note"])
        writer.writerows(export.rows)
        if default_storage.exists(name):  # left by a run that died before committing
            default_storage.delete(name)
        locked.result.name = default_storage.save(name, ContentFile(encrypt_secret(buffer.getvalue())))
        locked.total = export.count
        job.total = export.count
        _save_step(locked, job, _Step(items=export.count, succeeded=export.count), extra_fields=["result", "total"])


def _run_backtest(job: StaffJob) -> None:
    """Replay the orders again from the start (a replay cannot resume halfway); the moments replayed are the
    progress, committed with a heartbeat every few hundred, and the comparison is stored with the last."""

    def progress(done: int, total: int) -> None:
        with transaction.atomic():
            locked = _lock_unchanged(job)
            locked.processed = locked.succeeded = done
            locked.total, locked.heartbeat_at = total, timezone.now()
            locked.save(update_fields=["processed", "succeeded", "total", "heartbeat_at"])
        job.processed = job.succeeded = done
        job.total = total

    outcome = backtest_job_compute(params=job.params, progress=progress)
    with transaction.atomic():
        locked = _lock_unchanged(job)
        locked.outcome = outcome
        locked.save(update_fields=["outcome"])


_RUNNERS = {
    StaffJobKind.REFUND_ORDERS: _run_refunds,
    StaffJobKind.EXPORT_KEYS: _run_export,
    StaffJobKind.BACKTEST: _run_backtest,
    **{kind: _run_key_state for kind in KEY_ACTIONS},
}


def _lock_unchanged(job: StaffJob) -> StaffJob:
    """The job's row, locked, as long as no other run moved it since this one read it."""
    locked = StaffJob.objects.select_for_update().get(pk=job.pk)
    if locked.status == StaffJobStatus.DONE or locked.processed != job.processed:
        raise _Overtaken
    return locked


def _save_step(locked: StaffJob, job: StaffJob, step: _Step, extra_fields: list[str] | None = None) -> None:
    locked.processed += step.items
    locked.succeeded += step.succeeded
    locked.skipped += step.skipped
    locked.failed += step.failed
    locked.report = [*locked.report, *step.lines]
    locked.heartbeat_at = timezone.now()
    fields = ["processed", "succeeded", "skipped", "failed", "report", "heartbeat_at"]
    locked.save(update_fields=[*fields, *(extra_fields or [])])
    for name in fields:
        setattr(job, name, getattr(locked, name))


def _commit_step(job: StaffJob, step: _Step) -> None:
    _save_step(_lock_unchanged(job), job, step)


def _finish(job: StaffJob) -> None:
    with transaction.atomic():
        locked = _lock_unchanged(job)
        locked.status = StaffJobStatus.DONE
        locked.finished_at = locked.heartbeat_at = timezone.now()
        locked.save(update_fields=["status", "finished_at", "heartbeat_at"])
    logger.info(
        "staff job %s (%s) done: %d succeeded, %d left alone, %d failed",
        job.pk,
        job.kind,
        locked.succeeded,
        locked.skipped,
        locked.failed,
    )


def staff_jobs_resume_stalled(*, now=None) -> list[int]:
    """Resume jobs waiting or running with no heartbeat for KEY_IMPORT_STALL_AFTER (their task was lost or their
    worker died). Each is stamped as it is enqueued, so the next sweep leaves it to its new run."""
    now = now or timezone.now()
    stalled = (
        StaffJob.objects.filter(status__in=[StaffJobStatus.PENDING, StaffJobStatus.RUNNING])
        .annotate(last_sign=Coalesce("heartbeat_at", "created_at"))
        .filter(last_sign__lt=now - settings.KEY_IMPORT_STALL_AFTER)
    )
    resumed = []
    for job in stalled.only("pk", "heartbeat_at"):
        with transaction.atomic():
            if not StaffJob.objects.filter(pk=job.pk, heartbeat_at=job.heartbeat_at).update(heartbeat_at=now):
                continue  # beat meanwhile: alive after all
            staff_job_resume(job_id=job.pk)
        logger.warning("staff job %s stalled (no heartbeat since %s): resumed", job.pk, job.last_sign)
        resumed.append(job.pk)
    return resumed


# The export's file ----------------------------------------------------------------------------------------


class ExportGone(Exception):
    """The export was downloaded already (its file is deleted then) or never finished."""


def staff_job_export_take(*, job_id: int, actor: str) -> bytes:
    """The finished export's CSV, in clear, for its one download; the file is deleted as it is handed over."""
    with transaction.atomic():
        job = StaffJob.objects.select_for_update().get(pk=job_id, kind=StaffJobKind.EXPORT_KEYS)
        if job.status != StaffJobStatus.DONE or not job.result:
            raise ExportGone
        with default_storage.open(job.result.name, "rb") as stored:
            body = decrypt_secret(stored.read())
        name = job.result.name
        job.result = ""
        job.result_downloaded_at = timezone.now()
        job.save(update_fields=["result", "result_downloaded_at"])
        transaction.on_commit(lambda: default_storage.delete(name))
    logger.info("%s downloaded the export of staff job %s", actor, job_id)
    return body.encode("utf-8")


# Tasks ----------------------------------------------------------------------------------------------------


@shared_task(
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
    acks_late=True,
    soft_time_limit=55 * 60,
    time_limit=60 * 60,
)
def run_staff_job(job_id: int) -> str | None:
    job = staff_job_run(job_id=job_id)
    return job.status if job else None


@shared_task
def resume_stalled_staff_jobs() -> int:
    """Beat job: start again the staff jobs whose run died without a word (worker killed, task lost)."""
    return len(staff_jobs_resume_stalled())
