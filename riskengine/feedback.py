"""Outcomes that teach the engine: disputes, early fraud warnings and Radar reviews label orders."""

import logging
from typing import Protocol

from orders.models import Order, OrderEventType
from orders.status import order_event_record
from riskengine.models import FraudLabel, ListKind
from riskengine.review import risk_blocklist_order_identifiers

logger = logging.getLogger(__name__)

BLOCK_ON_FRAUD = [ListKind.CARD, ListKind.DEVICE, ListKind.EMAIL]


class FraudOutcome(Protocol):
    """What a provider said about an order's payment (payments.providers.base.FraudSignal has these)."""

    kind: str  # dispute | dispute_closed | reversal | early_fraud_warning | review_opened | review_closed
    fraud: bool
    reason: str


def fraud_outcome_takes_goods_back(signal: FraudOutcome) -> bool:
    """Whether this outcome means the order was fraud and its keys must be revoked now."""
    if signal.kind == "review_opened" or (signal.kind == "dispute_closed" and signal.fraud):
        return False  # a note, or labelled and blocked already when the dispute opened
    return signal.fraud


def fraud_signal_apply(*, order: Order, provider_name: str, signal: FraudOutcome, keys_revoked: int = 0) -> str:
    """Label the order, and for a dispute, reversal or early fraud warning block its identifiers (the caller
    revoked its keys: `keys_revoked`). A closed dispute the merchant won, or a review closed as legitimate,
    labels it not fraud.

    Call inside the webhook's transaction; idempotency comes from the webhook event id.
    """
    actor = f"{provider_name}:{signal.kind}"
    if signal.kind == "review_opened":
        order_event_record(order=order, type=OrderEventType.RADAR_REVIEW_OPENED, actor=actor, note=signal.reason)
        return "recorded"
    if signal.kind == "dispute_closed" and signal.fraud:
        order_event_record(order=order, type=OrderEventType.DISPUTE_LOST, actor=actor, note=signal.reason)
        return "recorded"  # labelled and blocked when it opened
    FraudLabel.objects.create(order=order, source=signal.kind, is_fraud=signal.fraud)
    if not signal.fraud:
        order_event_record(order=order, type=f"{signal.kind}_not_fraud", actor=actor, note=signal.reason)
        return "labelled"
    blocked = risk_blocklist_order_identifiers(order=order, kinds=BLOCK_ON_FRAUD, actor=actor, reason=signal.kind)
    order_event_record(
        order=order,
        type=signal.kind,
        actor=actor,
        note=signal.reason,
        data={"keys_revoked": keys_revoked, "blocked": blocked},
    )
    return "labelled"
