"""Disputes, reversals and fraud warnings: marked on the order, answered with the evidence log.

Digital-goods disputes are won with proof of delivery and use: when the order was paid and delivered,
from which IP, and every time the key was revealed or the file downloaded. That log is kept from the
first sale (fulfillment.DeliveryAccess); here it is assembled for a dispute and, at Stripe, submitted.
"""

import logging

from django.db import transaction
from django.utils import timezone

from fulfillment.models import DeliveryAccess
from orders.models import Order, OrderEvent
from orders.status import order_event_record
from payments.health import provider_call
from payments.models import Dispute, DisputeStatus
from payments.providers import provider_for_channel
from payments.providers.base import DisputeEvidence, FraudSignal

logger = logging.getLogger(__name__)

DISPUTE_KINDS = {"dispute", "dispute_closed", "reversal"}


def fraud_notice_apply(*, provider_name: str, signal: FraudSignal) -> str:
    """Record a dispute or reversal with its evidence, then let the risk engine label and block.

    Call inside the webhook's transaction; idempotency comes from the webhook event id (and the
    dispute's own id, unique per provider).
    """
    from payments.services import payment_find
    from riskengine.feedback import fraud_signal_apply

    payment = payment_find(provider_name=provider_name, ref=signal.payment_ref, capture_ref=signal.capture_ref)
    if payment is None:
        logger.warning("%s %s for an unknown payment", provider_name, signal.kind)
        return "unknown_payment"
    order = payment.order
    if signal.kind in DISPUTE_KINDS and signal.dispute_ref:
        dispute_record(payment_id=payment.pk, order=order, provider_name=provider_name, signal=signal)
    return fraud_signal_apply(order=order, provider_name=provider_name, signal=signal)


def dispute_record(*, payment_id: int, order: Order, provider_name: str, signal: FraudSignal) -> Dispute:
    """Open (or update) the dispute, with the evidence as it stands now."""
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
            "evidence": dispute_evidence_build(order=order),
        },
    )
    if not created and signal.kind == "dispute_closed":
        Dispute.objects.filter(pk=dispute.pk).update(status=status)
        dispute.status = status
    return dispute


def dispute_evidence_build(*, order: Order) -> dict:
    """Everything a reviewer at the card network needs to see that the goods were delivered and used."""
    delivered = OrderEvent.objects.filter(order=order, to_status__in=["fulfilled", "shipped"]).order_by("pk").first()
    accesses = list(DeliveryAccess.objects.filter(order=order).select_related("line").order_by("pk"))
    lines = list(order.lines.all())
    log = [
        f"{a.created_at:%Y-%m-%d %H:%M:%S} UTC {a.kind} of {a.line.product_name} from {a.ip or 'unknown IP'}"
        f" ({a.channel}, {a.user_agent[:120] or 'no user agent'})"
        for a in accesses
    ]
    products = "; ".join(f"{line.quantity} x {line.product_name} ({line.get_kind_display()})" for line in lines)
    return {
        "order_number": order.number,
        "customer_email": order.email,
        "customer_name": order.ship_name,
        "purchase_ip": order.purchase_ip or "",
        "purchased_at": order.created_at.isoformat(timespec="seconds"),
        "paid_at": order.paid_at.isoformat(timespec="seconds") if order.paid_at else "",
        "delivered_at": delivered.created_at.isoformat(timespec="seconds") if delivered else "",
        "products": products,
        "access_log": log,
        "reveals": sum(1 for a in accesses if a.kind == "reveal"),
        "downloads": sum(1 for a in accesses if a.kind == "download"),
    }


def dispute_evidence(dispute: Dispute) -> DisputeEvidence:
    e = dispute.evidence or dispute_evidence_build(order=dispute.order)
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


def dispute_submit_evidence(*, dispute: Dispute, actor: str) -> Dispute:
    """Send the evidence to the provider (Stripe) and record who did. Rebuilt first, so it is current."""
    from payments.services import payment_channel_for

    if dispute.status != DisputeStatus.NEEDS_RESPONSE:
        raise ValueError(f"dispute {dispute.provider_ref} is {dispute.status}")
    evidence = dispute_evidence_build(order=dispute.order)
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
        order_event_record(order=dispute.order, type="dispute_evidence_submitted", actor=actor)
    dispute.refresh_from_db()
    return dispute
