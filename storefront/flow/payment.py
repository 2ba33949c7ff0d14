"""A payment's outcome: what happens when the provider says a payment failed or succeeded.

Every way an outcome reaches us (the shopper's confirmation, a webhook, reconciliation) ends in
`payment_apply_snapshot`, which locks the order, then the payment, and applies the provider's view once:
whichever arrives first acts, the others find nothing left to do. A success pays the order: the amount is
checked, the risk engine decides, and the order is released for delivery, held for review, or declined and
refunded.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction

from fulfillment.services import order_deliver_locked
from orders.models import Order, OrderEvent, OrderEventType, OrderStatus, PaymentState
from orders.status import order_event_record, order_events_write, order_lock, order_transition
from orders.subscriptions import SavedCard, order_renewing_line, subscription_period_paid, subscription_start
from payments.models import Payment, PaymentStatus
from payments.providers.base import PaymentSnapshot
from payments.services import (
    PAID,
    payment_channel_for,
    payment_find,
    payment_is_duplicate,
    payment_lock_with_siblings,
    payment_mark_duplicate,
    payment_note_fee,
    payment_record_snapshot,
)
from riskengine.models import RiskDecision
from riskengine.review import review_case_open
from riskengine.services import risk_assess_order, risk_record_event
from storefront.flow import tasks
from storefront.flow.events import order_emit, order_held
from storefront.logs import bind_order

logger = logging.getLogger(__name__)


@transaction.atomic(savepoint=False)  # inside a webhook's transaction: one transaction, no savepoint
def payment_apply_snapshot(
    *, provider_name: str, snapshot: PaymentSnapshot, actor: str, found: Payment | None = None
) -> Payment | None:
    """Bring our Payment (and its order) in line with the provider's view of it. Idempotent.

    Locks the order, then the payment (the order every writer uses). A success pays the order once;
    a second success for an order already paid, or for one that was cancelled meanwhile, is marked a
    duplicate and refunded after commit, so no shopper pays twice.
    """
    if found is None:  # `found`: the caller looked it up already (a webhook, before asking the provider)
        found = payment_find(provider_name=provider_name, ref=snapshot.ref, capture_ref=snapshot.capture_ref)
    if found is None:
        logger.warning("%s payment %s is not one of ours; ignored", provider_name, snapshot.ref or snapshot.capture_ref)
        return None
    order = order_lock(order_id=found.order_id)
    bind_order(order.number)  # its log lines, and the tasks it queues, name the order
    payment, siblings = payment_lock_with_siblings(order_id=order.pk, payment_id=found.pk)
    if payment.status in PAID:
        payment_note_fee(payment=payment, snapshot=snapshot)
        return payment
    if snapshot.status == PaymentStatus.FAILED:
        _record_failed_attempt(order=order, payment=payment, snapshot=snapshot, actor=actor)
    if payment_record_snapshot(payment=payment, snapshot=snapshot) and snapshot.status == PaymentStatus.SUCCEEDED:
        _payment_succeeded(order=order, payment=payment, siblings=siblings, snapshot=snapshot, actor=actor)
    return payment


def _payment_succeeded(
    *, order: Order, payment: Payment, siblings: list[Payment], snapshot: PaymentSnapshot, actor: str
) -> None:
    already_paid = payment_is_duplicate(payment=payment, siblings=siblings)
    if already_paid or order.status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED):
        payment_mark_duplicate(payment=payment)
        why = "the order was already paid" if already_paid else f"the order is {order.status}"
        order_event_record(
            order=order,
            type=OrderEventType.DUPLICATE_PAYMENT,
            actor=actor,
            note=f"A second payment arrived ({why}); it is refunded.",
            data={"payment": payment.provider_ref, "amount": snapshot.amount_received},
        )
        transaction.on_commit(lambda: tasks.refund_duplicate_payment.delay(payment.pk), robust=True)
        return
    _order_paid(
        order=order,
        amount=snapshot.amount_received,
        currency=snapshot.currency,
        payment_ref=snapshot.ref,
        actor=actor,
        signals=PaymentSignals(
            card_fingerprint=snapshot.card_fingerprint,
            card_country=snapshot.card_country,
            billing_country=snapshot.billing_country or snapshot.payer_country,
            radar=snapshot.radar,
        ),
        saved_card=lambda: SavedCard(
            provider=payment.provider,
            channel_code=payment_channel_for(payment).code,
            customer_ref=snapshot.customer_ref,
            method_ref=snapshot.method_ref,
        ),
    )


def _record_failed_attempt(*, order: Order, payment: Payment, snapshot: PaymentSnapshot, actor: str) -> None:
    """Count each failed attempt once (a confirm response and its webhook describe the same attempt),
    however many cards are tried on one PaymentIntent: card testing shows up in the counters."""
    attempt = snapshot.attempt_ref
    if (
        attempt
        and OrderEvent.objects.filter(
            order_id=payment.order_id, type=OrderEventType.PAYMENT_FAILED, data__attempt=attempt
        ).exists()
    ):
        return
    if not attempt and payment.status == PaymentStatus.FAILED and snapshot.status == payment.status:
        return  # nothing tells this notice from the one already counted
    risk_record_event(order=order, event="payment_failed", card_fingerprint=snapshot.card_fingerprint, attempt=attempt)
    order_event_record(
        order=order,
        type=OrderEventType.PAYMENT_FAILED,
        actor=actor,
        note=snapshot.failure_message,
        data={"payment": snapshot.ref, "attempt": attempt, "card": snapshot.card_fingerprint},
    )


@dataclass(frozen=True)
class PaymentSignals:
    """What the payment told us about the payer, for the risk engine (all optional)."""

    card_fingerprint: str = ""
    card_country: str = ""
    billing_country: str = ""
    radar: dict | None = None


@transaction.atomic
def order_mark_paid(
    *,
    order_id: int,
    amount: int,
    currency: str,
    payment_ref: str,
    actor: str,
    signals: PaymentSignals | None = None,
    saved_card: SavedCard | None = None,
) -> Order:
    """Record that the order's payment cleared (see _order_paid); `saved_card` is how its subscription renews
    when no payment carried the card (a free trial). Idempotent."""
    order = order_lock(order_id=order_id)
    bind_order(order.number)
    return _order_paid(
        order=order,
        amount=amount,
        currency=currency,
        payment_ref=payment_ref,
        actor=actor,
        signals=signals,
        saved_card=(lambda: saved_card) if saved_card is not None else None,
    )


def _order_paid(
    *,
    order: Order,
    amount: int,
    currency: str,
    payment_ref: str,
    actor: str,
    signals: PaymentSignals | None = None,
    saved_card: Callable[[], SavedCard] | None = None,
) -> Order:
    """Record that the order's payment cleared, check the amount, assess risk, then release, hold or decline.

    Call with the order locked, inside the payment's transaction. An order no longer pending payment is
    returned unchanged. A payment whose amount or currency differs from the order is held for staff and
    releases nothing. Risk 'review' opens a case in the ops queue; 'decline' holds the order and refunds it
    after commit; 'approve' delivers at once, in the same transaction (the email is queued on commit).
    """
    if order.status != OrderStatus.PENDING_PAYMENT:
        logger.info("order %s already past payment (%s); payment %s ignored", order.number, order.status, payment_ref)
        return order
    signals = signals or PaymentSignals()
    card = {
        "card_fingerprint": signals.card_fingerprint or order.card_fingerprint,
        "card_country": signals.card_country or order.card_country,
        "billing_country": signals.billing_country or order.billing_country,
    }
    if amount != order.total_amount or currency.upper() != order.currency.upper():
        expected = {"amount": order.total_amount, "currency": order.currency}
        received = {"amount": amount, "currency": currency.upper()}
        logger.warning("order %s: payment %s amount mismatch %s != %s", order.number, payment_ref, received, expected)
        order = order_transition(
            order=order,
            locked=True,
            also=card,
            to_status=OrderStatus.ON_HOLD,
            payment_state=PaymentState.MISMATCH,
            actor=actor,
            note="Paid amount does not match the order; held for staff.",
            data={"reason": "payment_mismatch", "expected": expected, "received": received, "payment": payment_ref},
        )
        order_held(order=order, reason="the paid amount does not match the order", for_review=True)
        return order
    events: list = []  # the status events of this transaction, written together at its end
    order = order_transition(
        order=order,
        locked=True,
        also=card,
        events=events,
        to_status=OrderStatus.PAID,
        payment_state=PaymentState.PAID,
        actor=actor,
        data={"payment": payment_ref},
    )
    order_emit(event="order.paid", order=order)
    if order.subscription_id or order_renewing_line(order):  # a subscription starts or moves on a period
        card = saved_card() if saved_card is not None else None
        if order.subscription_id:
            subscription_period_paid(order=order, card=card, actor=actor)
        else:
            subscription_start(order=order, card=card or SavedCard(provider=""), actor=actor)
    risk_record_event(order=order, event="card_used")
    assessment = risk_assess_order(order=order, radar=signals.radar)
    if assessment.decision == RiskDecision.APPROVE:
        # in this transaction: the key is out when the payment is recorded (the sweeper is there if not)
        order = order_deliver_locked(order=order, events=events)
        order_events_write(events)
        return order
    top = "; ".join(r["reason"] for r in assessment.reasons[:3])
    order = order_transition(
        order=order,
        locked=True,
        events=events,
        to_status=OrderStatus.ON_HOLD,
        actor="riskengine",
        note=f"Risk {assessment.decision} ({assessment.score}): {top}",
        data={"reason": "risk", "decision": assessment.decision, "score": assessment.score},
    )
    order_events_write(events)
    order_held(
        order=order,
        reason=f"risk {assessment.decision} ({assessment.score}): {top}",
        for_review=(assessment.decision == RiskDecision.REVIEW),
    )
    if assessment.decision == RiskDecision.REVIEW:
        review_case_open(order=order, assessment=assessment)
    else:
        transaction.on_commit(lambda: tasks.refund_declined_order.delay(order.pk), robust=True)
    return order
