"""Outcomes that teach the engine: disputes, early fraud warnings and Radar reviews label orders."""

import logging

from fulfillment.keys import keys_revoke_for_order
from orders.models import Order
from orders.status import order_event_record
from payments.providers.base import FraudSignal
from riskengine.models import FraudLabel, ListKind
from riskengine.review import risk_blocklist_order_identifiers

logger = logging.getLogger(__name__)

BLOCK_ON_FRAUD = [ListKind.CARD, ListKind.DEVICE, ListKind.EMAIL]


def fraud_signal_apply(*, order: Order, provider_name: str, signal: FraudSignal) -> str:
    """Label the order, and for a dispute, reversal or early fraud warning revoke its keys and block its
    identifiers. A closed dispute the merchant won, or a review closed as legitimate, labels it not fraud.

    Call inside the webhook's transaction; idempotency comes from the webhook event id.
    """
    actor = f"{provider_name}:{signal.kind}"
    if signal.kind == "review_opened":
        order_event_record(order=order, type="radar_review_opened", actor=actor, note=signal.reason)
        return "recorded"
    if signal.kind == "dispute_closed" and signal.fraud:
        order_event_record(order=order, type="dispute_lost", actor=actor, note=signal.reason)
        return "recorded"  # labelled and blocked when it opened
    FraudLabel.objects.create(order=order, source=signal.kind, is_fraud=signal.fraud)
    if not signal.fraud:
        order_event_record(order=order, type=f"{signal.kind}_not_fraud", actor=actor, note=signal.reason)
        return "labelled"
    revoked = keys_revoke_for_order(order=order, actor=actor)
    blocked = risk_blocklist_order_identifiers(order=order, kinds=BLOCK_ON_FRAUD, actor=actor, reason=signal.kind)
    order_event_record(
        order=order,
        type=signal.kind,
        actor=actor,
        note=signal.reason,
        data={"keys_revoked": revoked, "blocked": blocked},
    )
    return "labelled"
