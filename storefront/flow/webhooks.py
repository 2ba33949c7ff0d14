"""A provider's notification: verified, recorded once, and applied through the same stories as everything else."""

from dataclasses import replace

from django.db import IntegrityError, transaction

from payments.models import PaymentChannel, PaymentStatus
from payments.providers import provider_for_channel
from payments.services import (
    payment_find,
    webhook_event_record,
    webhook_notice_read,
    webhook_seen,
    webhook_with_provider_facts,
)
from storefront.flow.disputes import fraud_notice_apply
from storefront.flow.payment import payment_apply_snapshot
from storefront.flow.refunds import refund_notice_apply


def webhook_process(*, channel: PaymentChannel, payload: bytes, headers: dict[str, str]) -> str:
    """Verify, record once, and apply a provider notification. Returns what happened.

    Raises WebhookRejected (nothing recorded) when the notification fails verification.
    Each event id is acted on at most once: the unique WebhookEvent row is written in the
    same transaction as its effects, so a redelivery either sees it or waits for it and fails.
    """
    provider_name = provider_for_channel(channel).name
    notice = webhook_notice_read(channel=channel, payload=payload, headers=headers)
    if notice.payment is None and webhook_seen(provider_name=provider_name, event_id=notice.event_id):
        return "duplicate"  # (a payment's notice is idempotent by the payment's state: no read for it here)
    ours = None
    if notice.payment is not None:
        ours = payment_find(provider_name=provider_name, ref=notice.payment.ref, capture_ref=notice.payment.capture_ref)
    notice = webhook_with_provider_facts(channel=channel, notice=notice, ours=ours)
    try:
        with transaction.atomic():
            if notice.fraud is not None:
                outcome = fraud_notice_apply(provider_name=provider_name, signal=notice.fraud)
            elif notice.refund is not None:
                outcome = refund_notice_apply(provider_name=provider_name, notice=notice.refund)
            elif notice.payment is None:
                outcome = "ignored"
            else:
                snapshot = notice.payment
                if snapshot.status == PaymentStatus.FAILED and not snapshot.attempt_ref:
                    # each failure notification is one attempt (redeliveries stopped above by the event id)
                    snapshot = replace(snapshot, attempt_ref=f"event:{notice.event_id}")
                applied = payment_apply_snapshot(
                    provider_name=provider_name, snapshot=snapshot, actor=f"{provider_name}:webhook", found=ours
                )
                outcome = "applied" if applied else "unknown_payment"
            webhook_event_record(channel=channel, notice=notice, outcome=outcome)
    except IntegrityError:
        if webhook_seen(provider_name=provider_name, event_id=notice.event_id):
            return "duplicate"
        raise
    return outcome
