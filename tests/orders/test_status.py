from datetime import UTC, datetime

import pytest
from django.core import mail

from catalog.models import FulfilmentKind
from fulfillment.models import KeyStatus, LicenseKey
from fulfillment.services import order_deliver
from orders.models import Order, OrderEvent, OrderLine, OrderStatus
from orders.services import ShippingAddress, order_mark_lines_shipped
from orders.status import (
    COMPLETE_STATUSES,
    TRANSITIONS,
    IllegalTransition,
    determine_fulfilment_status,
    order_transition,
)
from storefront.flow.payment import order_mark_paid
from tests.factories import ProductFactory, add_keys

S = OrderStatus
ADDRESS = ShippingAddress(
    name="Ada Lovelace", line1="1 Analytical Way", city="London", postal_code="N1 1AA", country="gb"
)

ALLOWED = sorted((from_status, to_status) for from_status, targets in TRANSITIONS.items() for to_status in targets)

# Written out by hand rather than derived from TRANSITIONS, so a wrong edit to the table is caught.
ILLEGAL = [
    (S.PENDING_PAYMENT, S.FULFILLED),
    (S.PENDING_PAYMENT, S.SHIPPED),
    (S.PENDING_PAYMENT, S.REFUNDED),
    (S.PENDING_PAYMENT, S.AWAITING_SHIPMENT),
    (S.PENDING_PAYMENT, S.PENDING_PAYMENT),
    (S.PAID, S.PENDING_PAYMENT),
    (S.PAID, S.SHIPPED),
    (S.ON_HOLD, S.FULFILLED),
    (S.AWAITING_STOCK, S.CANCELLED),
    (S.AWAITING_SHIPMENT, S.PAID),  # (-> fulfilled is legal: when what was to ship is refunded)
    (S.AWAITING_SHIPMENT, S.CANCELLED),
    (S.FULFILLED, S.PENDING_PAYMENT),
    (S.FULFILLED, S.PAID),
    (S.FULFILLED, S.CANCELLED),
    (S.SHIPPED, S.AWAITING_SHIPMENT),
    (S.CANCELLED, S.PAID),
    (S.CANCELLED, S.PENDING_PAYMENT),
    (S.REFUNDED, S.PAID),
    (S.REFUNDED, S.FULFILLED),
    (S.REFUNDED, S.CANCELLED),
]


def status_changes(order: Order) -> list[tuple[str, str]]:
    return list(OrderEvent.objects.filter(order=order, type="status_changed").values_list("from_status", "to_status"))


def order_in_status(make_order, status: str) -> Order:
    """A one-line service order forced into `status` (setup only: bypasses the transition table)."""
    order = make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1))
    Order.objects.filter(pk=order.pk).update(status=status)
    order.refresh_from_db()
    return order


def mark_paid(order: Order) -> Order:
    return order_mark_paid(
        order_id=order.pk, amount=order.total_amount, currency=order.currency, payment_ref="pi_test", actor="test"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("from_status, to_status", ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_allowed_transition_saves_status_and_appends_one_event(make_order, from_status, to_status):
    # Given an order in from_status
    order = order_in_status(make_order, from_status)
    events_before = OrderEvent.objects.filter(order=order).count()

    # When it moves to to_status
    order_transition(order=order, to_status=to_status, actor="staff:alice", note="why not")

    # Then the row has the new status and exactly one event records who moved it from where to where
    order.refresh_from_db()
    assert order.status == to_status
    assert (order.completed_at is not None) == (to_status in COMPLETE_STATUSES)
    assert OrderEvent.objects.filter(order=order).count() == events_before + 1
    event = OrderEvent.objects.filter(order=order).latest("id")
    assert (event.type, event.from_status, event.to_status, event.actor, event.note) == (
        "status_changed",
        from_status,
        to_status,
        "staff:alice",
        "why not",
    )


@pytest.mark.django_db
@pytest.mark.parametrize("from_status, to_status", ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_illegal_transition_raises_and_changes_nothing(make_order, from_status, to_status):
    # Given an order in from_status
    order = order_in_status(make_order, from_status)
    events_before = OrderEvent.objects.filter(order=order).count()

    # When something tries to move it to to_status
    with pytest.raises(IllegalTransition) as raised:
        order_transition(order=order, to_status=to_status, actor="staff:alice")

    # Then it is refused, and neither the row nor its history changed
    assert (raised.value.from_status, raised.value.to_status) == (from_status, to_status)
    order.refresh_from_db()
    assert order.status == from_status
    assert order.completed_at is None
    assert OrderEvent.objects.filter(order=order).count() == events_before


def line(kind: str, *, delivered: bool = False, shipped: bool = False) -> OrderLine:
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    return OrderLine(kind=kind, delivered_at=moment if delivered else None, shipped_at=moment if shipped else None)


@pytest.mark.parametrize(
    "lines, expected",
    [
        pytest.param(
            [line(FulfilmentKind.LICENSE_KEY, delivered=True), line(FulfilmentKind.DOWNLOAD, delivered=True)],
            S.FULFILLED,
            id="digital-only-delivered-is-fulfilled",
        ),
        pytest.param(
            [line(FulfilmentKind.SERVICE, delivered=True), line(FulfilmentKind.PHYSICAL)],
            S.AWAITING_SHIPMENT,
            id="mixed-digital-delivered-awaits-shipment",
        ),
        pytest.param(
            [line(FulfilmentKind.SERVICE, delivered=True), line(FulfilmentKind.PHYSICAL, shipped=True)],
            S.SHIPPED,
            id="mixed-all-done-is-shipped",
        ),
        pytest.param([line(FulfilmentKind.PHYSICAL)], S.AWAITING_SHIPMENT, id="physical-only-awaits-shipment"),
        pytest.param(
            [line(FulfilmentKind.LICENSE_KEY, delivered=True), line(FulfilmentKind.LICENSE_KEY)],
            S.AWAITING_STOCK,
            id="undelivered-digital-awaits-stock",
        ),
        pytest.param(
            [line(FulfilmentKind.LICENSE_KEY), line(FulfilmentKind.PHYSICAL)],
            S.AWAITING_STOCK,
            id="missing-stock-wins-over-shipping",
        ),
    ],
)
def test_determine_fulfilment_status(lines, expected):
    assert determine_fulfilment_status(lines) == expected


@pytest.mark.django_db
def test_paid_digital_order_goes_straight_to_fulfilled(make_order, django_capture_on_commit_callbacks):
    # Given an order for a key, a download and a service
    key_product = ProductFactory(kind=FulfilmentKind.LICENSE_KEY)
    add_keys(key_product, 2)
    download = ProductFactory(kind=FulfilmentKind.DOWNLOAD)
    service = ProductFactory(kind=FulfilmentKind.SERVICE)
    order = make_order((key_product, 1), (download, 1), (service, 1))

    # When its payment is recorded (no task runs: delivery is part of recording the payment)
    with django_capture_on_commit_callbacks(execute=False):
        mark_paid(order)

    # Then every line is delivered and the order is fulfilled without ever awaiting shipment
    order.refresh_from_db()
    assert order.status == S.FULFILLED
    assert order.completed_at is not None
    assert status_changes(order) == [(S.PENDING_PAYMENT, S.PAID), (S.PAID, S.FULFILLED)]
    assert all(line.delivered_at for line in order.lines.all())

    # And delivering again (the sweeper, a stray task) changes nothing
    order_deliver(order_id=order.pk)
    assert status_changes(order) == [(S.PENDING_PAYMENT, S.PAID), (S.PAID, S.FULFILLED)]


@pytest.mark.django_db
def test_payment_releases_delivery_on_commit_and_emails_once(make_order, django_capture_on_commit_callbacks):
    # Given a pending order for a key
    product = ProductFactory()
    add_keys(product, 1)
    order = make_order((product, 1))

    # When its payment is recorded and the transaction commits
    with django_capture_on_commit_callbacks(execute=True):
        mark_paid(order)

    # Then delivery ran after commit: the order is fulfilled and the shopper got one email with the link
    order.refresh_from_db()
    assert order.status == S.FULFILLED
    assert order.payment_state == "paid"
    assert status_changes(order) == [(S.PENDING_PAYMENT, S.PAID), (S.PAID, S.FULFILLED)]
    assert len(mail.outbox) == 1
    assert order.token in mail.outbox[0].body


@pytest.mark.django_db
def test_mixed_order_awaits_shipment_then_ships(make_order, django_capture_on_commit_callbacks):
    # Given a paid order for a key and a physical item
    key_product = ProductFactory(kind=FulfilmentKind.LICENSE_KEY)
    add_keys(key_product, 1)
    book = ProductFactory(kind=FulfilmentKind.PHYSICAL)
    order = make_order((key_product, 1), (book, 1), shipping=ADDRESS)
    with django_capture_on_commit_callbacks(execute=False):
        mark_paid(order)

    # When delivery runs, the key is delivered but the order waits for the parcel
    order_deliver(order_id=order.pk)
    order.refresh_from_db()
    assert order.status == S.AWAITING_SHIPMENT
    assert order.completed_at is None
    key_line, book_line = order.lines.all()
    assert key_line.delivered_at is not None
    assert book_line.shipped_at is None

    # When staff mark the physical lines shipped
    order_mark_lines_shipped(order_id=order.pk, actor="staff:bob")

    # Then the order is complete as 'shipped'
    order.refresh_from_db()
    book_line.refresh_from_db()
    assert order.status == S.SHIPPED
    assert order.completed_at is not None
    assert book_line.shipped_at is not None
    assert status_changes(order) == [
        (S.PENDING_PAYMENT, S.PAID),
        (S.PAID, S.AWAITING_SHIPMENT),
        (S.AWAITING_SHIPMENT, S.SHIPPED),
    ]
    assert OrderEvent.objects.filter(order=order, to_status=S.SHIPPED).get().actor == "staff:bob"


@pytest.mark.django_db
def test_physical_only_order_awaits_shipment(make_order, django_capture_on_commit_callbacks):
    order = make_order((ProductFactory(kind=FulfilmentKind.PHYSICAL), 2), shipping=ADDRESS)
    with django_capture_on_commit_callbacks(execute=True):
        mark_paid(order)

    order.refresh_from_db()
    assert order.status == S.AWAITING_SHIPMENT


@pytest.mark.django_db
def test_digital_line_without_stock_awaits_stock(make_order, django_capture_on_commit_callbacks):
    # Given a paid order whose only key was taken out of the pool after checkout
    product = ProductFactory()
    add_keys(product, 1)
    order = make_order((product, 1))
    LicenseKey.objects.filter(product=product).update(status=KeyStatus.RETIRED)
    with django_capture_on_commit_callbacks(execute=False):
        mark_paid(order)

    # When delivery runs
    order_deliver(order_id=order.pk)

    # Then nothing was delivered and the order awaits stock
    order.refresh_from_db()
    assert order.status == S.AWAITING_STOCK
    assert order.lines.get().delivered_at is None


@pytest.mark.django_db
def test_marking_shipped_is_refused_unless_order_awaits_shipment(make_order):
    order = order_in_status(make_order, S.PAID)

    with pytest.raises(IllegalTransition):
        order_mark_lines_shipped(order_id=order.pk, actor="staff:bob")

    order.refresh_from_db()
    assert order.status == S.PAID
    assert not status_changes(order)
