"""Polling an order's status cheaply: GET /api/orders/<token>/ carries a strong ETag, and answers 304 with no body
for one query while nothing the payload shows has changed, whatever changed it (a status, a line, a key)."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from catalog.models import FulfilmentKind
from fulfillment.keys import keys_set_state
from fulfillment.models import KeyStatus, LicenseKey
from fulfillment.services import backorders_fill
from orders.models import OrderStatus
from storefront.flow.refunds import refund_issue
from tests.conftest import record_payment
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db


def status_url(order) -> str:
    return f"/api/orders/{order.token}/"


def poll(client: Client, order, etag: str = "", **headers):
    """The API's answer, and the SQL queries it cost."""
    if etag:
        headers["HTTP_IF_NONE_MATCH"] = etag
    with CaptureQueriesContext(connection) as queries:
        response = client.get(status_url(order), **headers)
    return response, len(queries.captured_queries)


def retire_available(*products) -> None:
    """The merchant withdraws every key still in stock: orders paid now wait for stock."""
    ids = LicenseKey.objects.filter(product__in=products, status=KeyStatus.AVAILABLE).values_list("pk", flat=True)
    keys_set_state(key_ids=list(ids), action="retire", actor="merchant")


@pytest.fixture
def key_order(make_order):
    product = ProductFactory(name="Star Game")
    add_keys(product, 2)
    return make_order((product, 1))


def test_the_status_carries_a_strong_etag_and_stays_out_of_caches(client, key_order):
    response, _ = poll(client, key_order)

    assert response.status_code == 200
    assert response["ETag"].startswith('"') and response["ETag"].endswith('"') and len(response["ETag"]) > 10
    assert response["Cache-Control"] == "no-store"
    assert response.json()["status"] == "pending_payment"


def test_the_same_etag_gets_304_with_no_body_for_one_query(client, key_order):
    # Given the ETag of a first answer
    first, _ = poll(client, key_order)

    # When the client polls with it, as it is and as a weak validator in a list
    again, queries = poll(client, key_order, first["ETag"])
    listed, _ = poll(client, key_order, f'"something-else", W/{first["ETag"]}')

    # Then nothing changed: 304, no body, one query, the same ETag
    assert (again.status_code, again.content, queries) == (304, b"", 1)
    assert again["ETag"] == first["ETag"] and again["Cache-Control"] == "no-store"
    assert listed.status_code == 304


def test_another_etag_gets_the_full_answer(client, key_order):
    response, _ = poll(client, key_order, '"not-the-etag"')

    assert response.status_code == 200 and response.json()["number"] == key_order.number


def test_delivery_changes_the_etag(client, key_order, django_capture_on_commit_callbacks):
    # Given a client holding the ETag of the order waiting for payment
    before, _ = poll(client, key_order)

    # When the payment arrives and the key is delivered
    record_payment(key_order, django_capture_on_commit_callbacks)
    after, _ = poll(client, key_order, before["ETag"])

    # Then the poll gets the new status in full, under a new ETag that holds
    assert after.status_code == 200 and after["ETag"] != before["ETag"]
    assert after.json()["status"] == OrderStatus.FULFILLED and after.json()["lines"][0]["delivered"] is True
    assert poll(client, key_order, after["ETag"])[0].status_code == 304


def test_a_backorder_line_filled_while_the_order_still_waits_changes_the_etag(
    client, make_order, django_capture_on_commit_callbacks
):
    # Given an order for two products, both out of stock when it was paid: it waits for stock
    first, second = ProductFactory(), ProductFactory()
    add_keys(first, 1)
    add_keys(second, 1)
    order = make_order((first, 1), (second, 1))
    retire_available(first, second)
    assert record_payment(order, django_capture_on_commit_callbacks).status == OrderStatus.AWAITING_STOCK
    before, _ = poll(client, order)

    # When keys of the first product arrive and fill its line (the order is not saved: it still waits)
    add_keys(first, 1, prefix="RESTOCK")
    with django_capture_on_commit_callbacks(execute=True):
        backorders_fill(product_id=first.pk)
    after, _ = poll(client, order, before["ETag"])

    # Then the poll shows the delivered line
    assert after.status_code == 200 and after["ETag"] != before["ETag"]
    assert after.json()["status"] == OrderStatus.AWAITING_STOCK
    assert [line["delivered"] for line in after.json()["lines"]] == [True, False]


def test_a_key_claimed_for_a_line_still_short_of_keys_changes_the_etag(
    client, make_order, django_capture_on_commit_callbacks
):
    # Given an order for two keys, paid when none was left: it waits, with nothing to reveal
    product = ProductFactory()
    add_keys(product, 2)
    order = make_order((product, 2))
    retire_available(product)
    record_payment(order, django_capture_on_commit_callbacks)
    before, _ = poll(client, order)

    # When one key arrives: the line takes it and still waits for the other (neither order nor line saved)
    add_keys(product, 1, prefix="RESTOCK")
    with django_capture_on_commit_callbacks(execute=True):
        backorders_fill(product_id=product.pk)
    after, _ = poll(client, order, before["ETag"])

    # Then the poll shows a key to reveal
    assert before.json()["lines"][0]["has_keys"] is False
    assert after.status_code == 200 and after["ETag"] != before["ETag"]
    assert after.json()["status"] == OrderStatus.AWAITING_STOCK
    assert (after.json()["lines"][0]["delivered"], after.json()["lines"][0]["has_keys"]) == (False, True)


def test_each_partial_refund_changes_the_etag(client, make_order, django_capture_on_commit_callbacks):
    # Given a delivered order of three services
    order = make_order(*[(ProductFactory(kind=FulfilmentKind.SERVICE), 1) for _ in range(3)])
    record_payment(order, django_capture_on_commit_callbacks)
    lines = list(order.lines.order_by("pk"))
    delivered, _ = poll(client, order)

    # When one line is refunded, then another (the order's payment state stays "partially refunded")
    with django_capture_on_commit_callbacks(execute=True):
        refund_issue(order=order, actor="staff:ann", reason="First.", lines=[lines[0]])
    one_refunded, _ = poll(client, order, delivered["ETag"])
    with django_capture_on_commit_callbacks(execute=True):
        refund_issue(order=order, actor="staff:ann", reason="Second.", lines=[lines[1]])
    two_refunded, _ = poll(client, order, one_refunded["ETag"])

    # Then each poll sees its refund
    assert one_refunded.status_code == 200 and two_refunded.status_code == 200
    assert [line["refunded"] for line in one_refunded.json()["lines"]] == [True, False, False]
    assert [line["refunded"] for line in two_refunded.json()["lines"]] == [True, True, False]
    assert len({delivered["ETag"], one_refunded["ETag"], two_refunded["ETag"]}) == 3


def test_a_whole_refund_changes_the_etag(client, key_order, django_capture_on_commit_callbacks):
    record_payment(key_order, django_capture_on_commit_callbacks)
    delivered, _ = poll(client, key_order)

    with django_capture_on_commit_callbacks(execute=True):
        refund_issue(order=key_order, actor="staff:ann", reason="Refunded.")
    refunded, _ = poll(client, key_order, delivered["ETag"])

    assert refunded.status_code == 200 and refunded["ETag"] != delivered["ETag"]
    assert refunded.json()["status"] == OrderStatus.REFUNDED and refunded.json()["lines"][0]["has_keys"] is False


def test_each_language_has_its_own_etag(key_order):
    english, _ = poll(Client(HTTP_ACCEPT_LANGUAGE="en"), key_order)
    chinese, _ = poll(Client(HTTP_ACCEPT_LANGUAGE="zh-hans"), key_order, english["ETag"])

    assert chinese.status_code == 200 and chinese["ETag"] != english["ETag"]
    assert chinese.json()["status_label"] != english.json()["status_label"]


@pytest.mark.parametrize("if_none_match", ["", "*", '"anything"'])
def test_a_wrong_token_is_404_without_an_etag(client, key_order, if_none_match):
    response = client.get("/api/orders/" + "x" * 43 + "/", HTTP_IF_NONE_MATCH=if_none_match)

    assert response.status_code == 404 and response.json()["error"]["code"] == "order_not_found"
    assert "ETag" not in response
