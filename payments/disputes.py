"""Disputes and reversals: recorded with their evidence and, at Stripe, answered with it.

Digital-goods disputes are won with proof of delivery and use: when the order was paid and delivered,
from which IP, and every time the key was revealed or the file downloaded. That log is kept from the
first sale (fulfillment.DeliveryAccess) and assembled by fulfillment.evidence; the flow layer
(storefront.flow.disputes) hands it here.
"""

import logging

from django.db import transaction
from django.utils import timezone

from orders.models import Order, OrderEventType
from orders.status import order_event_record
from payments.health import provider_call
from payments.models import Dispute, DisputeStatus
from payments.providers import provider_for_channel
from payments.providers.base import DisputeEvidence, FraudSignal
from payments.services import payment_channel_for

logger = logging.getLogger(__name__)

DISPUTE_KINDS = {"dispute", "dispute_closed", "reversal"}


def dispute_record(
    *, payment_id: int, order: Order, provider_name: str, signal: FraudSignal, evidence: dict
) -> Dispute:
    """Open (or update) the dispute, with the evidence as it stands now (fulfillment.evidence)."""
    status = {
        "dispute": DisputeStatus.NEEDS_RESPONSE,
        "reversal": DisputeStatus.LOST,
        "dispute_closed": DisputeStatus.LOST if signal.fraud else DisputeStatus.WON,
    }[signal.kind]
    dispute, created = Dispute.objects.get_or_create(
        provider=provider_name,
        provider_ref=signal.dispute_ref,
        defaults={
            "payment_id": payment_id,
            "order": order,
            "kind": "reversal" if signal.kind == "reversal" else "dispute",
            "amount": signal.amount,
            "currency": signal.currency,
            "reason": signal.reason,
            "status": status,
            "evidence_due_by": signal.due_by,
            "evidence": evidence,
        },
    )
    if not created and signal.kind == "dispute_closed":
        Dispute.objects.filter(pk=dispute.pk).update(status=status)
        dispute.status = status
    return dispute


def dispute_evidence(dispute: Dispute) -> DisputeEvidence:
    """The dispute's stored evidence in the provider's fields."""
    e = dispute.evidence
    summary = (
        f"Order {e['order_number']} placed {e['purchased_at']} from IP {e['purchase_ip'] or 'unknown'}, "
        f"paid {e['paid_at'] or 'unknown'}, delivered digitally {e['delivered_at'] or 'not yet'} to "
        f"{e['customer_email']}. The buyer revealed the key {e['reveals']} time(s) and downloaded "
        f"{e['downloads']} time(s); every access is logged with time and IP below."
    )
    return DisputeEvidence(
        product_description=e["products"],
        customer_email=e["customer_email"],
        customer_name=e.get("customer_name", ""),
        customer_purchase_ip=e["purchase_ip"],
        service_date=(e["delivered_at"] or e["paid_at"] or e["purchased_at"])[:10],
        access_activity_log="\n".join(e["access_log"]) or "No reveal or download was recorded.",
        uncategorized_text=summary,
    )


def dispute_submit_evidence(*, dispute: Dispute, actor: str, evidence: dict) -> Dispute:
    """Send the evidence (as it stands now: storefront.flow.disputes rebuilds it) to the provider (Stripe) and
    record who did."""
    if dispute.status != DisputeStatus.NEEDS_RESPONSE:
        raise ValueError(f"dispute {dispute.provider_ref} is {dispute.status}")
    Dispute.objects.filter(pk=dispute.pk).update(evidence=evidence)
    dispute.evidence = evidence
    channel = payment_channel_for(dispute.payment)
    with provider_call(channel=channel, operation="dispute_evidence", order=dispute.order):
        provider_for_channel(channel).submit_dispute_evidence(
            dispute_ref=dispute.provider_ref, evidence=dispute_evidence(dispute)
        )
    with transaction.atomic():
        now = timezone.now()
        Dispute.objects.filter(pk=dispute.pk).update(
            status=DisputeStatus.SUBMITTED, evidence_submitted_at=now, evidence_submitted_by=actor[:100]
        )
        order_event_record(order=dispute.order, type=OrderEventType.DISPUTE_EVIDENCE_SUBMITTED, actor=actor)
    dispute.refresh_from_db()
    return dispute
