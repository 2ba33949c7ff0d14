"""A dispute, reversal, early fraud warning or Radar review reported by the provider: recorded with the
delivery evidence, the order's keys revoked when it means fraud, and the risk engine taught (label, block)."""

import logging

from fulfillment.evidence import delivery_evidence_build
from fulfillment.keys import keys_revoke_for_order
from orders.subscriptions import subscription_lock
from payments.disputes import DISPUTE_KINDS, dispute_record, dispute_submit_evidence
from payments.models import Dispute
from payments.providers.base import FraudSignal
from payments.services import payment_find
from riskengine.feedback import fraud_outcome_takes_goods_back, fraud_signal_apply
from storefront.flow.notify import notify_dispute_opened
from storefront.flow.subscription_end import subscription_end

logger = logging.getLogger(__name__)


def fraud_notice_apply(*, provider_name: str, signal: FraudSignal) -> str:
    """Record a dispute or reversal with its evidence, revoke the keys of a fraudulent order, then let the risk
    engine label it and block its identifiers.

    Call inside the webhook's transaction; idempotency comes from the webhook event id (and the
    dispute's own id, unique per provider).
    """
    payment = payment_find(provider_name=provider_name, ref=signal.payment_ref, capture_ref=signal.capture_ref)
    if payment is None:
        logger.warning("%s %s for an unknown payment", provider_name, signal.kind)
        return "unknown_payment"
    order = payment.order
    if signal.kind in DISPUTE_KINDS and signal.dispute_ref:
        opened = not Dispute.objects.filter(provider=provider_name, provider_ref=signal.dispute_ref).exists()
        dispute_record(
            payment_id=payment.pk,
            order=order,
            provider_name=provider_name,
            signal=signal,
            evidence=delivery_evidence_build(order=order),
        )
        if opened and signal.kind == "dispute":
            notify_dispute_opened(order=order, reason=signal.reason, amount=signal.amount, currency=signal.currency)
    revoked = 0
    if fraud_outcome_takes_goods_back(signal):
        revoked = keys_revoke_for_order(order=order, actor=f"{provider_name}:{signal.kind}")
        if order.subscription_id:  # a renewal carries no key of its own: the subscription ends, and with it access
            subscription = subscription_lock(order.subscription_id)
            subscription_end(subscription, note=f"Payment {signal.kind}: fraud", actor=f"{provider_name}:{signal.kind}")
    return fraud_signal_apply(order=order, provider_name=provider_name, signal=signal, keys_revoked=revoked)


def dispute_answer(*, dispute: Dispute, actor: str) -> Dispute:
    """Send the dispute's evidence, rebuilt first so it is current, to the provider (Stripe)."""
    return dispute_submit_evidence(dispute=dispute, actor=actor, evidence=delivery_evidence_build(order=dispute.order))
