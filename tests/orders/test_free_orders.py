"""Free products (lead magnets) and orders a coupon makes free: the email alone, no payment step, screened and
rate-limited, delivered exactly once, and counted as paid orders of nothing."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from catalog.models import FulfilmentKind
from orders.cart import CartLine
from orders.errors import CheckoutError
from orders.models import Coupon, Order, OrderStatus, PaymentState
from payments.models import Payment
from riskengine.models import ListEntry, ListKind
from storefront.admin.dashboard import free_and_coupon_orders
from storefront.flow.checkout import checkout_create_order
from storefront.flow.payment import order_mark_paid
from tests.factories import ProductFactory, add_keys
from tests.riskengine.test_rules import use_shipped_rules

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def claim(product, *, email="reader@example.com", device="dev-free", ip="203.0.113.9", coupon="", quantity=1):
    return checkout_create_order(
        lines=[CartLine(product=product, quantity=quantity)],
        email=email,
        shipping=None,
        locale="en",
        purchase_ip=ip,
        user_agent="pytest",
        device_id=device,
        coupon=coupon,
    )


@pytest.fixture
def checklist():
    use_shipped_rules()
    return ProductFactory(name="Free checklist", kind=FulfilmentKind.SERVICE, price_amount=0)


def test_a_free_product_is_delivered_at_checkout_once_without_any_payment(
    checklist, django_capture_on_commit_callbacks
):
    # When a shopper checks out a free product with their email alone
    with django_capture_on_commit_callbacks(execute=True):
        order = claim(checklist)

    # Then it is delivered at once, with no payment anywhere, screened like any order
    order.refresh_from_db()
    assert (order.status, order.payment_state, order.total_amount) == (OrderStatus.FULFILLED, PaymentState.PAID, 0)
    assert order.paid_at is not None and order.lines.get().delivered_at is not None
    assert not Payment.objects.filter(order=order).exists()
    assert set(order.risk_assessments.values_list("stage", flat=True)) == {"pre_payment", "paid"}
    assert [m.subject for m in mail.outbox] == [f"Your order {order.number} is ready"]
    assert order.events.filter(type="status_changed", to_status=OrderStatus.FULFILLED).count() == 1


def test_free_license_keys_come_from_the_pool_one_per_unit(django_capture_on_commit_callbacks):
    use_shipped_rules()
    sample = ProductFactory(name="Free trial key", price_amount=0)
    add_keys(sample, 3)
    with django_capture_on_commit_callbacks(execute=True):
        order = claim(sample, quantity=2)
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert order.lines.get().license_keys.filter(status="sold").count() == 2


def test_free_orders_are_limited_per_mailbox_however_written(checklist, settings):
    settings.FREE_ORDERS_PER_DAY = 2
    claim(checklist, email="ann.lee@gmail.com", device="d1", ip="198.51.100.1")
    claim(checklist, email="annlee+x@gmail.com", device="d2", ip="198.51.100.2")

    with pytest.raises(CheckoutError) as refused:
        claim(checklist, email="AnnLee@googlemail.com", device="d3", ip="198.51.100.3")
    assert refused.value.code == "free_order_limit"
    assert Order.objects.count() == 2
    # another mailbox, device and address is not limited by Ann's claims
    assert claim(checklist, email="bob@example.com", device="d4", ip="198.51.100.4").status == OrderStatus.FULFILLED


def test_a_blocked_shopper_gets_nothing_free_and_nothing_is_created(checklist):
    ListEntry.objects.create(kind=ListKind.EMAIL, value="farmer@example.com")
    with pytest.raises(CheckoutError) as refused:
        claim(checklist, email="farmer@example.com")
    assert refused.value.code == "payment_blocked"
    assert not Order.objects.exists()


def test_a_coupon_that_takes_everything_skips_the_payment_step(django_capture_on_commit_callbacks):
    use_shipped_rules()
    service = ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=2500)
    Coupon.objects.create(code="GIFT", percent_off=100)
    with django_capture_on_commit_callbacks(execute=True):
        order = claim(service, coupon="gift")
    order.refresh_from_db()
    assert (order.total_amount, order.discount_amount, order.status) == (0, 2500, OrderStatus.FULFILLED)


def test_the_checkout_page_offers_a_free_cart_without_payment(client, checklist):
    client.post(reverse("cart-add", kwargs={"slug": checklist.slug}), {"quantity": "1"})
    page = client.get(reverse("checkout"))
    assert "Get it free" in page.content.decode()

    done = client.post(reverse("checkout"), {"email": "reader@example.com"}, follow=True)

    order = Order.objects.get()
    assert done.redirect_chain[-1][0] == reverse("order-detail", kwargs={"token": order.token})
    assert order.status == OrderStatus.FULFILLED


def test_free_orders_and_coupon_orders_are_counted_in_the_dashboard_figures(checklist):
    Coupon.objects.create(code="HALF", percent_off=50)
    service = ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=1000)
    with time_machine.travel(NOW, tick=False):
        claim(checklist)
        claim(checklist, email="other@example.com", device="dev-2")
        discounted = claim(service, coupon="HALF", email="buyer@example.com", device="dev-3")
        order_mark_paid(order_id=discounted.pk, amount=500, currency="USD", payment_ref="pi_half", actor="test")
        claim(service, email="unpaid@example.com", device="dev-4")  # not paid: not counted

        figures = free_and_coupon_orders(NOW - timedelta(days=1), NOW + timedelta(seconds=1))

    assert figures == {"free": 2, "with_coupon": 1}


def test_a_free_product_is_shown_as_free_not_as_zero(client):
    product = ProductFactory(kind=FulfilmentKind.DOWNLOAD, price_amount=0, name="Sample chapter", is_active=True)
    page = client.get(reverse("product-detail", kwargs={"slug": product.slug})).content.decode()
    assert '<p class="price-big">Free</p>' in page
    assert "USD 0.00" not in page
