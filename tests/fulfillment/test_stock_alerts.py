"""Low-stock alerts to merchants (once per crossing) and what shoppers are told about stock."""

import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.db import connection, transaction
from django.urls import reverse

from catalog.models import StockDisplay
from catalog.selectors import product_stock_label
from fulfillment.crypto import encrypt_secret
from fulfillment.keys import keys_reserve_for_order, keys_set_state, keys_stock_recount
from fulfillment.models import KeyStatus, LicenseKey
from orders.models import Order, OrderLine, OrderStatus
from storefront.flow.payment import order_mark_paid
from tests.factories import ProductFactory, add_keys

User = get_user_model()


def alerts() -> list:
    return [m for m in mail.outbox if m.subject.startswith("Low stock")]


def buy(make_order, product, capture, *, quantity: int = 1) -> Order:
    """A shopper checks out and pays; delivery claims keys from the pool and commits."""
    order = make_order((product, quantity))
    with capture(execute=True):
        order_mark_paid(
            order_id=order.pk, amount=order.total_amount, currency=order.currency, payment_ref="pi_x", actor="test"
        )
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    return order


@pytest.fixture
def merchants(db):
    """Who should hear about low stock (an active superuser, a product editor) and who should not."""
    User.objects.create_superuser("owner", "owner@example.com", "pw-owner-123")
    editor = User.objects.create_user("editor", "editor@example.com", "pw-editor-123", is_staff=True)
    editor.user_permissions.add(Permission.objects.get(codename="change_product", content_type__app_label="catalog"))
    User.objects.create_user("clerk", "clerk@example.com", "pw-clerk-123", is_staff=True)
    User.objects.create_superuser("gone", "gone@example.com", "pw-gone-123", is_active=False)
    User.objects.create_user("shopper", "shopper@example.com", "pw-shopper-123")
    return ["editor@example.com", "owner@example.com"]


@pytest.mark.django_db
def test_stock_falling_to_the_threshold_alerts_merchants_once_per_crossing(
    make_order, merchants, django_capture_on_commit_callbacks
):
    # Given 5 keys and a low-stock threshold of 3
    product = ProductFactory(name="Star Game", low_stock_threshold=3)
    with django_capture_on_commit_callbacks(execute=True):
        add_keys(product, 5)
    assert alerts() == []

    # When sales bring stock down to 4, nobody is alerted
    buy(make_order, product, django_capture_on_commit_callbacks)
    assert alerts() == []

    # When a sale brings it to the threshold, each merchant gets one alert
    buy(make_order, product, django_capture_on_commit_callbacks)
    (alert,) = alerts()
    assert sorted(alert.to) == merchants
    assert alert.subject == "Low stock: Star Game (3 keys left)"
    assert f"/admin/catalog/product/{product.pk}/change/" in alert.body

    # When sales go further below, nothing more is sent
    buy(make_order, product, django_capture_on_commit_callbacks)
    buy(make_order, product, django_capture_on_commit_callbacks, quantity=2)
    assert LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).count() == 0
    assert len(alerts()) == 1

    # When keys arrive but stock stays at the threshold, nothing is sent and nothing re-arms
    with django_capture_on_commit_callbacks(execute=True):
        add_keys(product, 3, prefix="FEW")
    buy(make_order, product, django_capture_on_commit_callbacks)
    assert len(alerts()) == 1

    # When stock goes above the threshold it re-arms silently, and the next crossing alerts again
    with django_capture_on_commit_callbacks(execute=True):
        add_keys(product, 2, prefix="MORE")
    assert len(alerts()) == 1
    buy(make_order, product, django_capture_on_commit_callbacks)
    assert len(alerts()) == 2
    assert alerts()[1].subject == "Low stock: Star Game (3 keys left)"


@pytest.mark.django_db
def test_reservations_and_merchant_locks_count_as_stock_going_down(
    merchants, make_order, django_capture_on_commit_callbacks
):
    # Given 6 keys and a threshold of 3
    product = ProductFactory(low_stock_threshold=3)
    add_keys(product, 6)

    # When a shopper holds 2 keys while paying, stock is 4: no alert
    with django_capture_on_commit_callbacks(execute=True):
        assert keys_reserve_for_order(order=make_order((product, 2)))
    assert alerts() == []

    # When the merchant locks one more, stock is 3: one alert
    key = LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).first()
    with django_capture_on_commit_callbacks(execute=True):
        keys_set_state(key_ids=[key.pk], action="lock", actor="merchant")
    assert [a.subject for a in alerts()] == [f"Low stock: {product.name} (3 keys left)"]


@pytest.mark.django_db
def test_without_a_merchant_email_the_sale_goes_through_and_nothing_is_sent(
    make_order, django_capture_on_commit_callbacks, caplog
):
    # Given the only superuser has no email address
    User.objects.create_superuser("owner", "", "pw-owner-123")
    product = ProductFactory(low_stock_threshold=1)
    add_keys(product, 2)

    # When a sale brings stock to the threshold
    order = buy(make_order, product, django_capture_on_commit_callbacks)

    # Then the order is delivered, nobody is emailed but the shopper, and the gap is logged
    assert order.status == OrderStatus.FULFILLED
    assert alerts() == []
    assert [m.to for m in mail.outbox] == [[order.email]]
    assert f"product {product.pk} is low on stock and no merchant has an email address" in caplog.text
    product.refresh_from_db()
    assert product.low_stock_alerted


@pytest.mark.django_db
def test_a_merchant_allowed_through_a_group_is_alerted(make_order, django_capture_on_commit_callbacks):
    merchants = Group.objects.create(name="Merchants")
    merchants.permissions.add(Permission.objects.get(codename="change_product", content_type__app_label="catalog"))
    editor = User.objects.create_user("editor", "editor@example.com", "pw-editor-123", is_staff=True)
    editor.groups.add(merchants)
    assert editor.has_perm("catalog.change_product")
    product = ProductFactory(low_stock_threshold=1)
    add_keys(product, 2)

    buy(make_order, product, django_capture_on_commit_callbacks)

    assert [a.to for a in alerts()] == [["editor@example.com"]]


@pytest.mark.django_db
def test_selling_a_shared_code_product_never_alerts_low_stock(merchants, django_capture_on_commit_callbacks):
    # Given a product sold with one shared code: it has no pool, by design
    product = ProductFactory(low_stock_threshold=5)
    product.shared_key_ciphertext = encrypt_secret("SHARED-CODE")
    product.save()
    order = Order.objects.create(
        email="buyer@example.com",
        currency="USD",
        subtotal_amount=product.price_amount,
        total_amount=product.price_amount,
    )
    OrderLine.objects.create(
        order=order,
        product=product,
        product_name=product.name,
        kind=product.kind,
        unit_price=product.price_amount,
        quantity=1,
        line_total=product.price_amount,
    )

    # When it is sold and delivered
    with django_capture_on_commit_callbacks(execute=True):
        order_mark_paid(
            order_id=order.pk, amount=order.total_amount, currency="USD", payment_ref="pi_shared", actor="test"
        )

    # Then the shopper is served and no merchant is told it runs low
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert alerts() == []


@pytest.mark.django_db(transaction=True)
def test_two_moves_at_once_never_wait_on_each_other_and_cross_the_threshold_once():
    """No transaction that moves keys holds the product row: the stock counter moves after commit, in its own
    short UPDATE, and only the UPDATE that flips the alert flag may alert."""
    # Given 6 keys, a threshold of 5, and one merchant
    User.objects.create_superuser("owner", "owner@example.com", "pw-owner-123")
    product = ProductFactory(low_stock_threshold=5)
    add_keys(product, 6)
    first, second = LicenseKey.objects.filter(product=product).order_by("id")[:2]
    first_moved, let_first_commit = threading.Event(), threading.Event()

    def take(key_id: int, *, hold: bool) -> None:
        try:
            with transaction.atomic():
                keys_set_state(key_ids=[key_id], action="lock", actor="merchant")
                if hold:
                    first_moved.set()
                    let_first_commit.wait(timeout=20)
        finally:
            connection.close()

    # When one merchant action locks a key and, before it commits, another one locks a second key
    holding = threading.Thread(target=take, args=(first.pk,), kwargs={"hold": True})
    holding.start()
    try:
        assert first_moved.wait(timeout=20)
        started = time.monotonic()
        other = threading.Thread(target=take, args=(second.pk,), kwargs={"hold": False})
        other.start()
        other.join(timeout=10)

        # Then the second one did not queue behind the first: it committed and was counted, and stock at the
        # threshold alerted the merchant
        assert not other.is_alive()
        assert time.monotonic() - started < 5
        product.refresh_from_db()
        assert product.keys_available == 5
        assert len(alerts()) == 1
    finally:
        let_first_commit.set()
        holding.join(timeout=30)

    # When the first one commits, stock goes further down and nobody is alerted again
    product.refresh_from_db()
    assert product.keys_available == 4
    assert LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).count() == 4
    assert len(alerts()) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("available", "display", "expected"),
    [
        (6, StockDisplay.STATUS, {"state": "in_stock", "count": None}),
        (5, StockDisplay.STATUS, {"state": "low", "count": None}),
        (1, StockDisplay.STATUS, {"state": "low", "count": None}),
        (0, StockDisplay.STATUS, {"state": "sold_out", "count": None}),
        (6, StockDisplay.COUNT, {"state": "in_stock", "count": 6}),
        (3, StockDisplay.COUNT, {"state": "low", "count": 3}),
        (0, StockDisplay.COUNT, {"state": "sold_out", "count": 0}),
    ],
)
def test_stock_label_is_a_state_and_an_exact_count_only_when_the_merchant_chose_counts(available, display, expected):
    # Given keys that are available plus keys that are not (reserved, locked, retired, revoked, sold),
    # moved there behind the services' back and then recounted into the product's stock counter
    product = ProductFactory(low_stock_threshold=5, stock_display=display)
    add_keys(product, available + 5)
    unavailable = list(LicenseKey.objects.filter(product=product).order_by("id")[:5])
    others = [KeyStatus.RESERVED, KeyStatus.LOCKED, KeyStatus.RETIRED, KeyStatus.REVOKED, KeyStatus.SOLD]
    for key, status in zip(unavailable, others, strict=True):
        LicenseKey.objects.filter(pk=key.pk).update(status=status)
    assert keys_stock_recount(product_ids=[product.pk]) == 1
    product.refresh_from_db()

    assert product.keys_available == available
    assert product_stock_label(product) == expected


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("display", "keys", "shown", "not_shown"),
    [
        (StockDisplay.COUNT, 3, "3 left", "Low stock"),
        (StockDisplay.STATUS, 3, "Low stock", "3 left"),
        (StockDisplay.STATUS, 9, "In stock", "9 left"),
        (StockDisplay.COUNT, 0, "Sold out", "0 left"),
    ],
)
def test_product_page_shows_stock_the_way_the_merchant_chose(client, display, keys, shown, not_shown):
    product = ProductFactory(low_stock_threshold=5, stock_display=display)
    add_keys(product, keys)

    detail = client.get(reverse("product-detail", kwargs={"slug": product.slug})).content.decode()
    listing = client.get(reverse("product-list")).content.decode()

    for page in (detail, listing):
        assert shown in page
        assert not_shown not in page
    assert ("Add to cart" in detail) == (keys > 0)
