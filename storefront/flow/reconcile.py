"""Reconciliation: ask each provider what happened, and apply what never reached us.

A beat job (storefront.flow.jobs.reconcile_payments, every 5 minutes) runs this per channel. It
1. asks for the state of our payments still pending (older than RECONCILE_MIN_AGE, so a webhook in
   flight gets its chance): one that succeeded is applied exactly as its webhook would have been, then
   fulfilled; a PayPal order approved but never captured is captured first;
2. asks for the provider's recent successful payments and applies any we do not have as succeeded;
3. retries refunds left pending (the provider did not answer), with their own idempotency keys.
A lighter pass (storefront.flow.jobs.reconcile_recent_payments, every minute) does step 1 alone for payments
opened in the last RECONCILE_RECENT_WINDOW: a payment that succeeded while the shop could not take its
webhook (PostgreSQL restarting, the webhook answered 503) is applied within a minute of the shop's return,
not when the provider next retries. It keeps a run row only when it put something right or met an error.
Webhook and reconciliation race safely: both end in payment_apply_snapshot under the order's row lock.
Amount or currency mismatches are held for staff by storefront.flow.payment.order_mark_paid and counted here.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from orders.models import Order, PaymentState
from payments.health import provider_call
from payments.models import Payment, PaymentChannel, PaymentStatus, ReconciliationRun, Refund, RefundStatus
from payments.providers import provider_for_channel
from payments.providers.base import PaymentError, PaymentSnapshot
from payments.services import REUSABLE, payment_find
from storefront.flow.payment import payment_apply_snapshot
from storefront.flow.refunds import refund_send

logger = logging.getLogger(__name__)

ACTOR = "reconciliation"


def reconcile_channel(
    *, channel: PaymentChannel, min_age: timedelta | None = None, recent_only: bool = False
) -> ReconciliationRun:
    """One reconciliation pass over a channel. Safe to run at any time, any number of times.

    `recent_only`: the every-minute pass, over payments opened in the last RECONCILE_RECENT_WINDOW only,
    without the provider's listing or the refund retries; its run is saved only if it found something.
    """
    min_age = settings.RECONCILE_MIN_AGE if min_age is None else min_age
    now = timezone.now()
    run = ReconciliationRun(channel=channel)
    if not recent_only:
        run.save()
    provider = provider_for_channel(channel)
    since = now - (settings.RECONCILE_RECENT_WINDOW if recent_only else settings.RECONCILE_LOOKBACK)
    pending = Payment.objects.filter(
        channel=channel, status__in=REUSABLE, created_at__gte=since, created_at__lte=now - min_age
    ).select_related("order")
    for payment in pending.order_by("created_at")[:500]:
        run.checked += 1
        try:
            with provider_call(channel=channel, operation="fetch", order=payment.order):
                snapshot = provider.fetch_payment(ref=payment.provider_ref)
            if snapshot.needs_capture:
                with provider_call(channel=channel, operation="capture", order=payment.order):
                    snapshot = provider.capture(ref=payment.provider_ref, idempotency_key=f"capture-{payment.pk}")
        except PaymentError as exc:
            run.errors += 1
            run.notes.append(f"{payment.provider_ref}: {type(exc).__name__}")
            continue
        _apply(run, snapshot, payment)
    if recent_only:
        run.finished_at = timezone.now()
        if run.applied or run.mismatches or run.errors:
            run.save()
            _log(run)
        return run
    try:
        with provider_call(channel=channel, operation="list_recent"):
            recent = provider.recent_payments(since=since)
    except PaymentError as exc:
        run.errors += 1
        run.notes.append(f"recent payments: {type(exc).__name__}")
        recent = []
    for snapshot in recent:
        run.checked += 1
        payment = _ours(channel, snapshot)
        if payment is None:
            continue
        if payment.status in REUSABLE and not snapshot.ref:  # from a listing: fetch the full picture
            try:
                with provider_call(channel=channel, operation="fetch", order=payment.order):
                    snapshot = provider.fetch_payment(ref=payment.provider_ref)
            except PaymentError:
                run.errors += 1
                continue
        _apply(run, snapshot, payment)
    _retry_pending_refunds(run, channel, older_than=now - min_age)
    run.finished_at = timezone.now()
    run.save()
    if run.applied or run.mismatches or run.errors:
        _log(run)
    return run


def _log(run: ReconciliationRun) -> None:
    logger.warning(
        "reconciliation of %s: %d checked, %d applied, %d mismatches, %d errors",
        run.channel.code,
        run.checked,
        run.applied,
        run.mismatches,
        run.errors,
    )


def _ours(channel: PaymentChannel, snapshot: PaymentSnapshot) -> Payment | None:
    payment = payment_find(provider_name=channel.provider, ref=snapshot.ref, capture_ref=snapshot.capture_ref)
    if payment is None and snapshot.order_number:
        candidates = list(
            Payment.objects.filter(channel=channel, order__number=snapshot.order_number, status__in=REUSABLE)
        )
        payment = candidates[0] if len(candidates) == 1 else None
    return payment


def _apply(run: ReconciliationRun, snapshot: PaymentSnapshot, payment: Payment) -> None:
    if payment.status not in REUSABLE or snapshot.status == payment.status:
        return
    applied = payment_apply_snapshot(provider_name=payment.provider, snapshot=snapshot, actor=ACTOR)
    if applied is None or applied.status != PaymentStatus.SUCCEEDED:
        return
    run.applied += 1
    run.notes.append(f"{payment.provider_ref}: applied (its notification never arrived)")
    if Order.objects.filter(pk=payment.order_id, payment_state=PaymentState.MISMATCH).exists():
        run.mismatches += 1
        run.notes.append(f"{payment.provider_ref}: amount or currency differs from the order; held for staff")


def _retry_pending_refunds(run: ReconciliationRun, channel: PaymentChannel, *, older_than) -> None:
    stuck = Refund.objects.filter(
        Q(payment__channel=channel) | Q(payment__channel__isnull=True, payment__provider=channel.code),
        status=RefundStatus.PENDING,
        created_at__lte=older_than,
    ).select_related("payment", "order")
    for refund in stuck[:100]:
        try:
            refund_send(refund=refund)
            run.notes.append(f"refund {refund.pk}: sent again and settled")
        except Exception as exc:  # noqa: BLE001 - one refund's failure must not stop the others
            run.errors += 1
            run.notes.append(f"refund {refund.pk}: {type(exc).__name__}")


def reconcile_all(*, min_age: timedelta | None = None, recent_only: bool = False) -> list[ReconciliationRun]:
    """Every enabled channel, and any disabled one that still has payments in flight (see reconcile_channel)."""
    runs = []
    in_flight = Payment.objects.filter(status__in=REUSABLE).values("channel_id")
    for channel in PaymentChannel.objects.filter(Q(enabled=True) | Q(pk__in=in_flight)).order_by("priority"):
        if channel.missing_credentials():
            continue
        try:
            runs.append(reconcile_channel(channel=channel, min_age=min_age, recent_only=recent_only))
        except PaymentError as exc:
            logger.warning("reconciliation of %s could not start: %s", channel.code, exc)
    return runs
