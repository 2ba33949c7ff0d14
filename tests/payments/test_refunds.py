"""Refunds from admin, full or by line, through the provider: the refunded lines' keys are revoked and their
links die, the rest of the order stays the shopper's, and every refund call carries an idempotency key."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.files.base import ContentFile
from django.urls import reverse

from catalog.models import FulfilmentKind
from fulfillment.models import KeyStatus, LicenseKey
from fulfillment.services import download_token_for_line
from orders.models import OrderEvent, OrderStatus, PaymentState
from payments.models import Payment, PaymentStatus, Refund, RefundStatus
from payments.refunds import RefundNotAllowed
from storefront.flow.checkout import payment_confirm_card, payment_start_for_order
from storefront.flow.refunds import refund_issue
from tests.conftest import TEST_CARD
from tests.factories import ProductFactory, add_keys

KEY_SPAN = re.compile(r'<span class="key">([^<]+)</span>')


@pytest.fixture
def two_line_order(db, localstripe, stripe_client, make_order, django_capture_on_commit_callbacks, settings, tmp_path):
    """A delivered order: 2 keys of one product (2 x 10.00) and a download (15.00), paid at localstripe."""
    keys = ProductFactory(name="Game key", price_amount=1000)
    add_keys(keys, 4)
    ebook = ProductFactory(name="E-book", kind=FulfilmentKind.DOWNLOAD, price_amount=1500)
    ebook.download_file.save("book.pdf", ContentFile(b"%PDF-1.4 test"))
    order = make_order((keys, 2), (ebook, 1))
    payment = payment_start_for_order(order=order)
    token = stripe_client.v1.tokens.create(params={"card": TEST_CARD})
    with django_capture_on_commit_callbacks(execute=True):
        payment = payment_confirm_card(payment=payment, card_token=token.id)
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    mail.outbox.clear()
    return order, payment


def lines(order):
    by_name = {line.product_name: line for line in order.lines.all()}
    return by_name["Game key"], by_name["E-book"]


def refunds_at_stripe(stripe_client, payment: Payment) -> list[int]:
    return [r.amount for r in stripe_client.v1.refunds.list(params={"payment_intent": payment.provider_ref}).data]


def test_refunding_one_line_refunds_its_amount_and_withdraws_only_its_goods(
    client, two_line_order, stripe_client, django_capture_on_commit_callbacks
):
    order, payment = two_line_order
    key_line, ebook_line = lines(order)
    download = reverse("download", kwargs={"token": download_token_for_line(ebook_line)})

    # When the e-book line alone is refunded
    with django_capture_on_commit_callbacks(execute=True):
        refund_issue(order=order, actor="staff:ann", reason="Wrong book.", lines=[ebook_line])

    # Then Stripe refunded 15.00, the book's link is dead, and the keys are still the shopper's
    assert refunds_at_stripe(stripe_client, payment) == [1500]
    assert client.get(download).status_code == 410
    page = client.post(reverse("order-reveal", kwargs={"token": order.token}), {"line": key_line.pk}, follow=True)
    assert len(KEY_SPAN.findall(page.content.decode())) == 2
    order.refresh_from_db()
    payment.refresh_from_db()
    assert (order.status, order.payment_state) == (OrderStatus.FULFILLED, PaymentState.PARTIALLY_REFUNDED)
    assert (payment.status, payment.refunded_amount) == (PaymentStatus.SUCCEEDED, 1500)
    assert [m.subject for m in mail.outbox] == [f"Part of your order {order.number} was refunded"]
    assert "E-book" in mail.outbox[0].body and "Game key" not in mail.outbox[0].body

    # When the rest is refunded
    with django_capture_on_commit_callbacks(execute=True):
        refund_issue(order=order, actor="staff:ann", reason="Changed their mind.")

    # Then the remaining 20.00 goes back, the keys are revoked, and the order is refunded
    assert sorted(refunds_at_stripe(stripe_client, payment)) == [1500, 2000]
    assert set(LicenseKey.objects.filter(order_line=key_line).values_list("status", flat=True)) == {KeyStatus.REVOKED}
    order.refresh_from_db()
    assert (order.status, order.payment_state) == (OrderStatus.REFUNDED, PaymentState.REFUNDED)
    assert Payment.objects.get(pk=payment.pk).status == PaymentStatus.REFUNDED
    keys = [k for k in Refund.objects.order_by("pk").values_list("idempotency_key", flat=True)]
    assert len(set(keys)) == 2 and all(k.startswith(f"refund-{order.number}-") for k in keys)


def test_a_line_cannot_be_refunded_twice_nor_a_line_of_another_order(two_line_order, make_order):
    order, _ = two_line_order
    key_line, ebook_line = lines(order)
    refund_issue(order=order, actor="staff:ann", reason="Once.", lines=[ebook_line])
    stranger = make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1)).lines.get()

    with pytest.raises(RefundNotAllowed):
        refund_issue(order=order, actor="staff:ann", reason="Twice.", lines=[ebook_line])
    with pytest.raises(RefundNotAllowed):
        refund_issue(order=order, actor="staff:ann", reason="Not ours.", lines=[stranger])
    with pytest.raises(RefundNotAllowed):
        refund_issue(order=order, actor="staff:ann", reason="Nothing.", lines=[])
    assert Refund.objects.filter(status=RefundStatus.SUCCEEDED).count() == 1


def refund_page(client, order):
    return client.get(reverse("admin:orders_order_refund", kwargs={"order_id": order.pk}))


def test_staff_refund_chosen_lines_from_the_admin(
    client, two_line_order, stripe_client, django_capture_on_commit_callbacks
):
    # Given a clerk allowed to refund
    order, payment = two_line_order
    key_line, _ = lines(order)
    user = get_user_model().objects.create_user("clerk", "c@example.com", "pw-clerk-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_order", "change_order", "refund_order"]))
    client.force_login(user)
    change = client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert reverse("admin:orders_order_refund", kwargs={"order_id": order.pk}) in change
    assert refund_page(client, order).status_code == 200

    # When they refund the key line with a reason
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:orders_order_refund", kwargs={"order_id": order.pk}),
            {"lines": [key_line.pk], "reason": "Keys did not work."},
        )

    # Then the line is refunded at Stripe and its keys revoked
    assert response.status_code == 302
    assert refunds_at_stripe(stripe_client, payment) == [2000]
    assert set(LicenseKey.objects.filter(order_line=key_line).values_list("status", flat=True)) == {KeyStatus.REVOKED}
    event = OrderEvent.objects.get(order=order, type="partial_refund")
    assert (event.actor, event.note) == ("staff:clerk", "Keys did not work.")


def test_the_refund_page_needs_the_refund_permission(client, two_line_order):
    order, _ = two_line_order
    user = get_user_model().objects.create_user("viewer", "v@example.com", "pw-viewer-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_order", "change_order"]))
    client.force_login(user)

    assert refund_page(client, order).status_code == 403
    response = client.post(
        reverse("admin:orders_order_refund", kwargs={"order_id": order.pk}),
        {"lines": [line.pk for line in order.lines.all()], "reason": "Sneaky."},
    )
    assert response.status_code == 403
    assert not Refund.objects.exists()


def test_a_refund_the_provider_refuses_is_marked_failed_and_withdraws_nothing(two_line_order, monkeypatch):
    from payments.providers.base import PaymentError
    from payments.providers.stripe import StripeProvider

    order, _ = two_line_order

    # localstripe accepts any refund (even beyond the charge), so Stripe's refusal is played here
    def refused(self, **kwargs):
        error = PaymentError("charge already refunded")
        error.status = 400
        raise error

    monkeypatch.setattr(StripeProvider, "refund", refused)
    with pytest.raises(PaymentError):
        refund_issue(order=order, actor="staff:ann", reason="Try.")

    assert Refund.objects.get().status == RefundStatus.FAILED
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert LicenseKey.objects.filter(order_line__order=order, status=KeyStatus.SOLD).count() == 2
