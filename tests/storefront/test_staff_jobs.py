"""Long staff actions leave the request: refunds of many orders, the key export and bulk key changes run as staff
jobs (storefront.flow.staff_jobs) with a progress page, and running a job again never does its work twice."""

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from catalog.models import FulfilmentKind
from fulfillment.models import KeyEvent, KeyStatus, LicenseKey
from orders.models import OrderStatus
from payments.models import Refund
from storefront.flow import staff_jobs
from storefront.flow.checkout import payment_confirm_card, payment_start_for_order
from storefront.flow.staff_jobs import staff_job_run, staff_job_start, staff_jobs_resume_stalled
from storefront.models import StaffJob, StaffJobKind, StaffJobStatus
from tests.conftest import TEST_CARD
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db


def staff(username: str, *perms: str):
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw-staff-123", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def paid_orders(localstripe, stripe_client, make_order, django_capture_on_commit_callbacks):
    """Three delivered orders, each paid by card at localstripe."""
    product = ProductFactory(name="Game key", price_amount=1200)
    add_keys(product, 3)
    orders = []
    for n in range(3):
        order = make_order((product, 1), email=f"buyer{n}@example.com")
        payment = payment_start_for_order(order=order)
        token = stripe_client.v1.tokens.create(params={"card": TEST_CARD})
        with django_capture_on_commit_callbacks(execute=True):
            payment_confirm_card(payment=payment, card_token=token.id)
        order.refresh_from_db()
        assert order.status == OrderStatus.FULFILLED
        orders.append(order)
    mail.outbox.clear()
    return orders


def refunds_at_stripe(stripe_client, order) -> list[int]:
    intent = order.payments.get().provider_ref
    return [r.amount for r in stripe_client.v1.refunds.list(params={"payment_intent": intent}).data]


def test_refund_in_full_of_many_orders_returns_at_once_and_a_task_refunds_them(
    client, paid_orders, stripe_client, django_capture_on_commit_callbacks
):
    # Given a clerk allowed to refund, and three delivered orders
    client.force_login(staff("clerk", "orders.view_order", "orders.change_order", "orders.refund_order"))
    ids = [order.pk for order in paid_orders]

    # When they choose "Refund in full" for all three
    with django_capture_on_commit_callbacks(execute=False) as scheduled:
        response = client.post(
            reverse("admin:orders_order_changelist"), {"action": "refund_in_full", "_selected_action": ids}
        )

    # Then the request answered with the job's page, having refunded nothing itself
    job = StaffJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:storefront_staffjob_progress", args=[job.pk])
    assert (job.kind, job.status, job.total, job.created_by) == (
        StaffJobKind.REFUND_ORDERS,
        "pending",
        3,
        "staff:clerk",
    )
    assert not Refund.objects.exists()
    assert all(refunds_at_stripe(stripe_client, order) == [] for order in paid_orders)

    # When the task runs (as the request committed)
    with django_capture_on_commit_callbacks(execute=True):
        for callback in scheduled:
            callback()

    # Then every order is refunded once at Stripe, through the flow (keys revoked, shopper emailed)
    for order in paid_orders:
        order.refresh_from_db()
        assert order.status == OrderStatus.REFUNDED
        assert refunds_at_stripe(stripe_client, order) == [1200]
        assert LicenseKey.objects.get(order_line__order=order).status == KeyStatus.REVOKED
    assert len(mail.outbox) == 3
    # And the job's page shows it done, order by order
    page = client.get(response["Location"])
    job = page.context["job"]
    assert (job.status, job.processed, job.succeeded, job.skipped, job.failed) == ("done", 3, 3, 0, 0)
    assert job.report == [f"{order.number} refunded." for order in paid_orders]
    assert 'http-equiv="refresh"' not in page.content.decode()


def test_a_refund_job_run_again_from_the_start_refunds_nobody_twice(paid_orders, stripe_client):
    # Given a refund job that ran to the end
    job = staff_job_start(kind=StaffJobKind.REFUND_ORDERS, actor="staff:ann", targets=[o.pk for o in paid_orders])
    staff_job_run(job_id=job.pk)

    # When its task is delivered again, and again as if its progress had been lost (a worker killed before it
    # committed what it had done)
    staff_job_run(job_id=job.pk)
    StaffJob.objects.filter(pk=job.pk).update(status=StaffJobStatus.RUNNING, processed=0, succeeded=0, report=[])
    rerun = staff_job_run(job_id=job.pk)

    # Then Stripe refunded each order exactly once, and the rerun says they were refunded already
    assert [refunds_at_stripe(stripe_client, order) for order in paid_orders] == [[1200]] * 3
    assert Refund.objects.count() == 3
    assert (rerun.status, rerun.succeeded, rerun.skipped) == ("done", 0, 3)
    assert rerun.report == [f"{order.number}: already refunded." for order in paid_orders]


def test_a_refund_job_reports_orders_that_cannot_be_refunded_and_goes_on(paid_orders, make_order, stripe_client):
    # Given one unpaid order among the paid ones
    unpaid = make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1), email="late@example.com")
    targets = [paid_orders[0].pk, unpaid.pk, paid_orders[1].pk]

    job = staff_job_run(job_id=staff_job_start(kind=StaffJobKind.REFUND_ORDERS, actor="staff:ann", targets=targets).pk)

    assert (job.succeeded, job.skipped, job.failed) == (2, 1, 0)
    assert job.report[1].startswith(f"{unpaid.number}: not refunded")
    assert refunds_at_stripe(stripe_client, paid_orders[1]) == [1200]


def test_a_key_job_that_died_mid_way_resumes_after_its_last_batch_and_changes_each_key_once(
    monkeypatch, django_capture_on_commit_callbacks
):
    # Given 5 keys locked in batches of 2, and a run that dies after its first batch
    monkeypatch.setattr(staff_jobs, "KEY_BATCH", 2)
    product = ProductFactory()
    add_keys(product, 5)
    ids = list(LicenseKey.objects.filter(product=product).order_by("pk").values_list("pk", flat=True))
    job = staff_job_start(kind=StaffJobKind.LOCK_KEYS, actor="staff:ann", targets=ids)
    real = staff_jobs.keys_set_state
    calls = []

    def dies_on_the_second_batch(**kwargs):
        calls.append(kwargs["key_ids"])
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return real(**kwargs)

    monkeypatch.setattr(staff_jobs, "keys_set_state", dies_on_the_second_batch)
    with pytest.raises(RuntimeError), django_capture_on_commit_callbacks(execute=True):
        staff_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.processed, job.succeeded) == ("failed", 2, 2)
    assert "resuming carries on" in job.error

    # When it runs again
    monkeypatch.setattr(staff_jobs, "keys_set_state", real)
    with django_capture_on_commit_callbacks(execute=True):  # the stock counter moves as each batch commits
        job = staff_job_run(job_id=job.pk)

    # Then every key is locked, each with exactly one 'locked' event, and the job is done
    assert (job.status, job.processed, job.succeeded) == ("done", 5, 5)
    assert set(LicenseKey.objects.filter(pk__in=ids).values_list("status", flat=True)) == {KeyStatus.LOCKED}
    assert sorted(KeyEvent.objects.filter(type="locked").values_list("key_id", flat=True)) == ids
    product.refresh_from_db()
    assert product.keys_available == 0


def test_the_export_is_prepared_encrypted_downloaded_once_by_whoever_asked_and_audited_once(
    client, django_capture_on_commit_callbacks, settings, tmp_path
):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    # Given staff who may export, and 3 unsold keys
    auditor = staff("auditor", "catalog.view_product", "fulfillment.export_keys")
    client.force_login(auditor)
    product = ProductFactory(slug="space-game")
    keys = add_keys(product, 3)

    # When they export, and the task runs (twice, as a redelivered task would)
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(reverse("admin:catalog_product_export_keys", args=[product.pk]))
    job = StaffJob.objects.get()
    staff_job_run(job_id=job.pk)

    # Then the file at rest holds no key in clear, and each key was recorded as exported once
    job.refresh_from_db()
    stored = default_storage.open(job.result.name).read()
    assert job.status == "done" and job.total == 3
    assert not any(key.encode() in stored for key in keys)
    assert KeyEvent.objects.filter(type="exported").count() == 3

    # And someone else with the export permission may not take it
    other = client.__class__()
    other.force_login(staff("other", "fulfillment.export_keys", "storefront.view_staffjob"))
    assert other.get(started["Location"]).context["download_url"] == ""
    assert other.post(reverse("admin:storefront_staffjob_download", args=[job.pk])).status_code == 403

    # When the auditor downloads it from the job's page
    page = client.get(started["Location"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(page.context["download_url"])

    # Then they get the CSV once; the file is gone and a second try is turned away
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert 'filename="space-game-unsold-keys-' in response["Content-Disposition"]
    assert list(csv.reader(io.StringIO(response.content.decode()))) == [["key", "note"], *[[k, ""] for k in keys]]
    assert not default_storage.exists(job.result.name)
    again = client.post(page.context["download_url"], follow=True)
    assert "downloaded already" in again.content.decode()
    assert client.get(started["Location"]).context["download_url"] == ""


def test_a_job_page_is_for_whoever_started_it_or_staff_who_may_view_jobs(client):
    job = staff_job_start(kind=StaffJobKind.LOCK_KEYS, actor="staff:ann", targets=[1])
    url = reverse("admin:storefront_staffjob_progress", args=[job.pk])

    client.force_login(staff("bob", "fulfillment.change_licensekey"))
    assert client.get(url).status_code == 403
    client.force_login(staff("ann", "fulfillment.change_licensekey"))
    page = client.get(url)
    assert page.status_code == 200
    assert 'http-equiv="refresh"' in page.content.decode()  # pending: the page refreshes itself


def test_stalled_jobs_are_resumed_once_per_stall(time_machine, django_capture_on_commit_callbacks):
    # Given a job whose task was lost, made at noon
    time_machine.move_to(timezone.now().replace(hour=12, minute=0), tick=False)
    product = ProductFactory()
    add_keys(product, 1)
    key = LicenseKey.objects.get(product=product)
    job = staff_job_start(kind=StaffJobKind.RETIRE_KEYS, actor="staff:ann", targets=[key.pk])

    # When the sweep looks before and after the stall time
    assert staff_jobs_resume_stalled() == []
    time_machine.shift(timedelta(minutes=4))
    with django_capture_on_commit_callbacks(execute=True):
        resumed = staff_jobs_resume_stalled()
    again = staff_jobs_resume_stalled()

    # Then it was resumed once, and ran
    assert (resumed, again) == ([job.pk], [])
    job.refresh_from_db()
    assert job.status == "done"
    key.refresh_from_db()
    assert key.status == KeyStatus.RETIRED
