"""Stock as a kept count: `Product.keys_available` follows every move into or out of 'available', once it commits.

Moves apply to the counter in on_commit callbacks, so these tests run each move inside
django_capture_on_commit_callbacks(execute=True) (the test's own transaction never commits), or on real
transactions where commit and rollback are what is tested.
"""

import logging
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from catalog.models import Product, StockDisplay
from fulfillment.imports import key_import_create
from fulfillment.keys import (
    keys_add_to_pool,
    keys_release_expired,
    keys_reserve_for_order,
    keys_revoke_for_order,
    keys_set_state,
    keys_stock,
    keys_stock_recount,
)
from fulfillment.models import KeyStatus, LicenseKey
from fulfillment.services import order_deliver
from orders.models import Order, OrderStatus
from tests.factories import ProductFactory, add_keys


def counter(product: Product) -> int:
    return Product.objects.values_list("keys_available", flat=True).get(pk=product.pk)


def truly_available(product: Product) -> int:
    return LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).count()


def assert_stock(product: Product, expected: int) -> None:
    """The counter says `expected`, and so do the keys themselves."""
    assert (counter(product), truly_available(product)) == (expected, expected)


def key_ids(product: Product, status: str = KeyStatus.AVAILABLE, count: int | None = None) -> list[int]:
    ids = LicenseKey.objects.filter(product=product, status=status).order_by("id").values_list("pk", flat=True)
    return list(ids[:count] if count is not None else ids)


@pytest.fixture
def private_media(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }


@pytest.mark.django_db
def test_keys_added_or_imported_are_counted_once_committed(private_media, django_capture_on_commit_callbacks):
    # Given a product with no keys
    product = ProductFactory()
    assert_stock(product, 0)

    # When a merchant pastes 3 keys (one of them twice)
    with django_capture_on_commit_callbacks(execute=True):
        assert keys_add_to_pool(product=product, secrets_=["A-1", "A-2", "A-3", "A-1"], actor="merchant") == 3

    # Then stock is 3
    assert_stock(product, 3)

    # When a file of 4 keys is imported, one already in the pool
    with django_capture_on_commit_callbacks(execute=True):
        key_import = key_import_create(product=product, text="A-3\nB-1\nB-2\nB-3\n", actor="merchant")
    key_import.refresh_from_db()
    assert key_import.added == 3

    # Then only the 3 new keys are counted
    assert_stock(product, 6)
    assert keys_stock(product) == 6


@pytest.mark.django_db
def test_a_hold_counts_out_and_its_release_on_expiry_counts_back(
    make_order, time_machine, django_capture_on_commit_callbacks
):
    # Given 5 keys held for 15 minutes
    time_machine.move_to(timezone.now(), tick=False)
    product = ProductFactory(reservation_minutes=15)
    add_keys(product, 5)
    order = make_order((product, 2))

    # When the shopper starts paying, 2 keys are held
    with django_capture_on_commit_callbacks(execute=True):
        assert keys_reserve_for_order(order=order)
    assert_stock(product, 3)

    # When the same shopper comes back, the hold is extended, nothing more is taken
    with django_capture_on_commit_callbacks(execute=True):
        assert keys_reserve_for_order(order=order)
    assert_stock(product, 3)

    # When the window passes unpaid, the keys go back and are counted back
    with django_capture_on_commit_callbacks(execute=True):
        assert keys_release_expired(now=timezone.now() + timedelta(minutes=16)) == 2
    assert_stock(product, 5)


@pytest.mark.django_db
def test_delivery_counts_out_pool_keys_but_not_keys_already_held(make_order, django_capture_on_commit_callbacks):
    # Given 6 keys, an order whose 2 keys are held and an order that held nothing
    product = ProductFactory()
    add_keys(product, 6)
    held, unheld = make_order((product, 2)), make_order((product, 3))
    with django_capture_on_commit_callbacks(execute=True):
        assert keys_reserve_for_order(order=held)
    assert_stock(product, 4)
    Order.objects.filter(pk__in=[held.pk, unheld.pk]).update(status=OrderStatus.PAID)

    # When the order with held keys is delivered, stock does not move (those keys had left already)
    with django_capture_on_commit_callbacks(execute=True):
        assert order_deliver(order_id=held.pk).status == OrderStatus.FULFILLED
    assert_stock(product, 4)

    # When the other is delivered, its 3 keys are claimed from the pool
    with django_capture_on_commit_callbacks(execute=True):
        assert order_deliver(order_id=unheld.pk).status == OrderStatus.FULFILLED
    assert_stock(product, 1)

    # When a refund revokes the sold keys (sold -> revoked), stock does not move
    with django_capture_on_commit_callbacks(execute=True):
        assert keys_revoke_for_order(order=unheld, actor="staff:ada") == 3
    assert LicenseKey.objects.filter(product=product, status=KeyStatus.REVOKED).count() == 3
    assert_stock(product, 1)


@pytest.mark.django_db
def test_a_delivery_short_of_keys_counts_only_what_it_claimed(make_order, django_capture_on_commit_callbacks):
    # Given 2 keys and a paid order for 3
    product = ProductFactory()
    add_keys(product, 2)
    order = make_order((product, 2))
    order.lines.update(quantity=3)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.PAID)

    # When it is delivered, it gets the 2 there are and waits for the third
    with django_capture_on_commit_callbacks(execute=True):
        assert order_deliver(order_id=order.pk).status == OrderStatus.AWAITING_STOCK

    # Then stock is 0, never below
    assert_stock(product, 0)


@pytest.mark.django_db
def test_merchant_lock_unlock_and_retire_move_the_count(django_capture_on_commit_callbacks):
    # Given 6 keys
    product = ProductFactory()
    add_keys(product, 6)

    # When 2 are locked, stock is 4
    locked = key_ids(product, count=2)
    with django_capture_on_commit_callbacks(execute=True):
        assert keys_set_state(key_ids=locked, action="lock", actor="merchant") == 2
    assert_stock(product, 4)

    # When one is unlocked, stock is 5
    with django_capture_on_commit_callbacks(execute=True):
        assert keys_set_state(key_ids=locked[:1], action="unlock", actor="merchant") == 1
    assert_stock(product, 5)

    # When the still-locked key and 2 available ones are retired, only the available ones count out
    retired = [locked[1], *key_ids(product, count=2)]
    with django_capture_on_commit_callbacks(execute=True):
        assert keys_set_state(key_ids=retired, action="retire", actor="merchant") == 3
    assert_stock(product, 3)

    # When a merchant tries to unlock keys that are not locked, nothing moves
    with django_capture_on_commit_callbacks(execute=True):
        assert keys_set_state(key_ids=key_ids(product), action="unlock", actor="merchant") == 0
    assert_stock(product, 3)


@pytest.mark.django_db
def test_one_action_over_keys_of_two_products_counts_each_product(django_capture_on_commit_callbacks):
    first, second = ProductFactory(), ProductFactory()
    add_keys(first, 3)
    add_keys(second, 4)

    with django_capture_on_commit_callbacks(execute=True):
        keys_set_state(key_ids=key_ids(first, count=1) + key_ids(second, count=3), action="lock", actor="merchant")

    assert_stock(first, 2)
    assert_stock(second, 1)


@pytest.mark.django_db(transaction=True)
def test_moves_that_roll_back_are_never_counted(make_order):
    # Given 3 keys (on real transactions: commit and rollback are what is tested)
    product = ProductFactory()
    add_keys(product, 3)
    assert_stock(product, 3)

    # When a merchant's lock fails after moving the keys, its transaction rolls back
    with pytest.raises(RuntimeError), transaction.atomic():
        keys_set_state(key_ids=key_ids(product), action="lock", actor="merchant")
        raise RuntimeError("the request failed after the move")

    # Then nothing was counted
    assert_stock(product, 3)

    # When an order for more than there is cannot hold its keys (after holding some of another product's)
    other = ProductFactory()
    add_keys(other, 2)
    order = make_order((other, 1), (product, 3))
    order.lines.filter(product=product).update(quantity=4)
    order = Order.objects.get(pk=order.pk)  # read afresh: the instance keeps the lines it was created with
    assert not keys_reserve_for_order(order=order)

    # Then neither product's stock moved
    assert_stock(product, 3)
    assert_stock(other, 2)

    # And a move that commits is counted at once, without any help
    keys_set_state(key_ids=key_ids(product, count=1), action="lock", actor="merchant")
    assert_stock(product, 2)


@pytest.mark.django_db
def test_recount_fixes_a_counter_that_drifted_and_says_so(caplog, django_capture_on_commit_callbacks):
    # Given two products whose counters are right, then one that drifts (a process died before its UPDATE)
    drifted, fine = ProductFactory(), ProductFactory()
    add_keys(drifted, 4)
    add_keys(fine, 2)
    Product.objects.filter(pk=drifted.pk).update(keys_available=9)

    # When the counters are checked against the keys
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fulfillment.stock"):
        fixed = keys_stock_recount()

    # Then the one that drifted is fixed, logged with its product and both numbers, and the other left alone
    assert fixed == 1
    assert_stock(drifted, 4)
    assert_stock(fine, 2)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert (
        record.getMessage()
        == f"product {drifted.pk}: the stock counter said 9 keys available, the pool has 4; counter fixed"
    )

    # And checking again finds nothing to fix
    assert keys_stock_recount() == 0


@pytest.mark.django_db
def test_recount_of_chosen_products_touches_only_those(django_capture_on_commit_callbacks):
    first, second = ProductFactory(), ProductFactory()
    add_keys(first, 2)
    add_keys(second, 2)
    Product.objects.filter(pk__in=[first.pk, second.pk]).update(keys_available=0)

    assert keys_stock_recount(product_ids=[second.pk]) == 1

    assert counter(first) == 0
    assert_stock(second, 2)


@pytest.mark.django_db
def test_a_recount_that_finds_stock_low_sets_the_low_stock_flag(django_capture_on_commit_callbacks):
    # Given 2 keys under a threshold of 5, but a counter that drifted to 8 (so no alert was due)
    product = ProductFactory(low_stock_threshold=5)
    add_keys(product, 2)
    Product.objects.filter(pk=product.pk).update(keys_available=8, low_stock_alerted=False)

    # When the counter is fixed
    with django_capture_on_commit_callbacks(execute=True):
        assert keys_stock_recount(product_ids=[product.pk]) == 1

    # Then the low-stock state follows the true stock
    product.refresh_from_db()
    assert (product.keys_available, product.low_stock_alerted) == (2, True)


@pytest.mark.django_db
def test_the_product_page_reads_the_counter_and_counts_no_keys(client):
    # Given a product with 3 keys, shown as an exact count, and sold keys besides
    product = ProductFactory(stock_display=StockDisplay.COUNT, low_stock_threshold=1)
    add_keys(product, 5)
    LicenseKey.objects.filter(pk__in=key_ids(product, count=2)).update(status=KeyStatus.SOLD)
    Product.objects.filter(pk=product.pk).update(keys_available=3)

    # When a shopper opens its page
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("product-detail", kwargs={"slug": product.slug}))

    # Then the page shows the stock, and no query went near the keys
    assert page.status_code == 200
    assert "3 left" in page.content.decode()
    assert [q["sql"] for q in queries.captured_queries if "fulfillment_licensekey" in q["sql"]] == []
