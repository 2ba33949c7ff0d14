import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from catalog.models import FulfilmentKind
from orders.models import Order, OrderEvent, OrderStatus
from orders.services import ShippingAddress
from storefront.flow.payment import order_mark_paid
from tests.factories import ProductFactory, add_keys

ADDRESS = ShippingAddress(name="Ada", line1="1 Main St", city="Springfield", postal_code="12345", country="US")


@pytest.fixture
def merchant_client(client, db):
    user = get_user_model().objects.create_superuser("merchant", "m@example.com", "pw-merchant-1")
    client.force_login(user)
    return client


@pytest.fixture
def mixed_order_awaiting_shipment(make_order, django_capture_on_commit_callbacks):
    key_product = ProductFactory()
    add_keys(key_product, 2)
    stick = ProductFactory(kind=FulfilmentKind.PHYSICAL)
    order = make_order((key_product, 1), (stick, 1), shipping=ADDRESS)
    with django_capture_on_commit_callbacks(execute=True):
        order_mark_paid(
            order_id=order.pk, amount=order.total_amount, currency=order.currency, payment_ref="pi_adm", actor="test"
        )
    order.refresh_from_db()
    assert order.status == OrderStatus.AWAITING_SHIPMENT
    return order


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:catalog_product_changelist",
        "admin:catalog_product_add",
        "admin:orders_order_changelist",
        "admin:fulfillment_licensekey_changelist",
        "admin:payments_payment_changelist",
        "admin:payments_webhookevent_changelist",
        "admin:riskengine_riskassessment_changelist",
    ],
)
def test_merchant_admin_pages_render(merchant_client, mixed_order_awaiting_shipment, url_name):
    assert merchant_client.get(reverse(url_name)).status_code == 200


def test_order_admin_shows_lines_and_events_but_never_the_token(merchant_client, mixed_order_awaiting_shipment):
    order = mixed_order_awaiting_shipment
    page = merchant_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert order.number in page
    assert "status_changed" in page and "awaiting_shipment" in page
    assert order.token not in page


def test_merchant_marks_physical_lines_shipped_and_the_mixed_order_completes(
    merchant_client, mixed_order_awaiting_shipment
):
    order = mixed_order_awaiting_shipment

    response = merchant_client.post(
        reverse("admin:orders_order_changelist"),
        {"action": "mark_shipped", "_selected_action": [order.pk]},
        follow=True,
    )

    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.SHIPPED
    assert order.completed_at is not None
    event = OrderEvent.objects.get(order=order, to_status=OrderStatus.SHIPPED)
    assert event.actor == "staff:merchant"


def test_mark_shipped_leaves_orders_that_are_not_awaiting_shipment(merchant_client, make_order):
    product = ProductFactory()
    add_keys(product, 1)
    order = make_order((product, 1))

    merchant_client.post(
        reverse("admin:orders_order_changelist"), {"action": "mark_shipped", "_selected_action": [order.pk]}
    )

    assert Order.objects.get(pk=order.pk).status == OrderStatus.PENDING_PAYMENT


def test_admin_requires_staff(client, db):
    response = client.get(reverse("admin:orders_order_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
