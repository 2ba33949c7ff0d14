"""Generated keys and license tracking: keys made at delivery (once), licenses found by fingerprint, statuses,
activation limits (two machines racing for the last slot: one wins), and revocation with the order."""

import contextlib
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from catalog.selectors import product_in_stock
from fulfillment import licenses
from fulfillment.generation import ALPHABET, key_from_pattern
from fulfillment.keys import keys_revoke_for_order
from fulfillment.models import KeyEvent, KeySource, KeyStatus, License, LicenseActivation, LicenseKey, LicensePolicy
from fulfillment.services import order_deliver
from orders.models import OrderStatus
from tests.factories import ProductFactory, add_keys
from tests.licensing import bought_key, generated_product, order_keys

KEY_SHAPE = re.compile(rf"^[{ALPHABET}]{{4}}(-[{ALPHABET}]{{4}}){{3}}$")
NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_a_pattern_makes_random_keys_from_the_alphabet_and_keeps_the_rest():
    keys = {key_from_pattern("LIN-XXXXXX-XXXXXX") for _ in range(200)}
    assert len(keys) == 200
    assert all(re.fullmatch(rf"LIN-[{ALPHABET}]{{6}}-[{ALPHABET}]{{6}}", key) for key in keys)


@pytest.mark.django_db
def test_a_generated_product_is_in_stock_without_a_pool_and_its_keys_are_made_at_delivery(
    make_order, django_capture_on_commit_callbacks, time_machine
):
    # Given a product whose keys are generated, with two activations and a year of validity
    time_machine.move_to(NOON, tick=False)
    product = generated_product(activation_limit=2, expires_after_days=365)
    assert product_in_stock(product) and product.keys_available == 0

    # When an order of two is paid
    order, _ = bought_key(make_order, django_capture_on_commit_callbacks, product, quantity=2)

    # Then it is delivered with two new keys of the pattern, each tracked as a license, audited as generated
    assert order.status == OrderStatus.FULFILLED
    keys = order_keys(order)
    assert len(set(keys)) == 2 and all(KEY_SHAPE.match(key) for key in keys)
    found = [licenses.license_find(license_key=key) for key in keys]
    assert all(lic is not None and lic.product_id == product.pk for lic in found)
    assert {(lic.activation_limit, lic.expires_at) for lic in found} == {(2, NOON + timedelta(days=365))}
    assert [e.type for e in KeyEvent.objects.filter(key__order_line__order=order)] == ["generated", "generated"]
    product.refresh_from_db()
    assert product.keys_available == 0  # nothing entered or left a pool


@pytest.mark.django_db
def test_delivering_again_makes_no_second_key(make_order, django_capture_on_commit_callbacks):
    order, key = bought_key(make_order, django_capture_on_commit_callbacks, generated_product())
    type(order).objects.filter(pk=order.pk).update(status=OrderStatus.AWAITING_STOCK)  # as the sweeper finds it
    order_deliver(order_id=order.pk, actor="sweeper")
    order_deliver(order_id=order.pk, actor="sweeper")
    assert order_keys(order) == [key]
    assert License.objects.filter(key__order_line__order=order).count() == 1


@pytest.mark.django_db
def test_pool_keys_are_tracked_only_when_the_product_opts_in(make_order, django_capture_on_commit_callbacks):
    untracked, tracked = ProductFactory(), ProductFactory()
    add_keys(untracked, 1, prefix="UNT")
    add_keys(tracked, 1, prefix="TRK")
    LicensePolicy.objects.create(product=tracked, key_source=KeySource.POOL, track_pool_keys=True, activation_limit=3)

    _, plain_key = bought_key(make_order, django_capture_on_commit_callbacks, untracked)
    _, tracked_key = bought_key(make_order, django_capture_on_commit_callbacks, tracked)

    assert licenses.license_find(license_key=plain_key) is None
    found = licenses.license_find(license_key=tracked_key)
    assert found is not None and found.activation_limit == 3 and found.expires_at is None


@pytest.mark.django_db
def test_a_license_is_found_by_fingerprint_without_decrypting_any_key(
    make_order, django_capture_on_commit_callbacks, monkeypatch
):
    _, key = bought_key(make_order, django_capture_on_commit_callbacks, generated_product())

    def no_decrypting(*args, **kwargs):
        raise AssertionError("a key was decrypted to search")

    monkeypatch.setattr("fulfillment.crypto.decrypt_secret", no_decrypting)
    monkeypatch.setattr(LicenseKey, "reveal", no_decrypting)
    assert licenses.license_validate(license_key=f"  {key} ").valid is True
    assert licenses.license_activate(license_key=key, instance_name="laptop").created is True


@pytest.mark.django_db
def test_statuses_inactive_active_disabled_expired_and_revoked(
    make_order, django_capture_on_commit_callbacks, time_machine
):
    time_machine.move_to(NOON, tick=False)
    order, key = bought_key(make_order, django_capture_on_commit_callbacks, generated_product(expires_after_days=30))
    lic = licenses.license_find(license_key=key)

    def status():
        return licenses.license_validate(license_key=key)

    assert (status().status, status().valid) == ("inactive", True)
    licenses.license_activate(license_key=key, instance_name="desk")
    assert (status().status, status().valid) == ("active", True)
    licenses.license_set_disabled(license_id=lic.pk, disabled=True, actor="test")
    assert (status().status, status().valid) == ("disabled", False)
    licenses.license_set_disabled(license_id=lic.pk, disabled=False, actor="test")
    time_machine.move_to(NOON + timedelta(days=30), tick=False)
    assert (status().status, status().valid) == ("expired", False)
    time_machine.move_to(NOON + timedelta(days=29), tick=False)
    keys_revoke_for_order(order=order, actor="test")
    assert (status().status, status().valid) == ("revoked", False)


@pytest.mark.django_db
def test_activation_limit_same_name_and_deactivation(make_order, django_capture_on_commit_callbacks):
    _, key = bought_key(make_order, django_capture_on_commit_callbacks, generated_product(activation_limit=2))

    first = licenses.license_activate(license_key=key, instance_name="laptop")
    again = licenses.license_activate(license_key=key, instance_name="laptop")
    assert (first.created, again.created, again.instance.pk) == (True, False, first.instance.pk)
    licenses.license_activate(license_key=key, instance_name="desktop")
    with pytest.raises(licenses.ActivationLimitReached) as refused:
        licenses.license_activate(license_key=key, instance_name="tablet")
    assert refused.value.code == "activation_limit_reached" and refused.value.license.activation_usage == 2

    freed, instance = licenses.license_deactivate(license_key=key, instance_id=str(first.instance.instance_id))
    assert freed.activation_usage == 1 and instance.deactivated_at is not None
    repeat, _ = licenses.license_deactivate(license_key=key, instance_id=str(first.instance.instance_id))
    assert repeat.activation_usage == 1  # the same answer, nothing counted twice
    assert licenses.license_activate(license_key=key, instance_name="tablet").created is True
    with pytest.raises(licenses.InstanceNotFound):
        licenses.license_deactivate(license_key=key, instance_id="not-a-uuid")
    with pytest.raises(licenses.LicenseNotFound):
        licenses.license_activate(license_key="NOPE-NOPE-NOPE-NOPE", instance_name="x")


@pytest.mark.django_db
def test_unlimited_activations_and_reset(make_order, django_capture_on_commit_callbacks):
    _, key = bought_key(make_order, django_capture_on_commit_callbacks, generated_product(activation_limit=None))
    for n in range(5):
        licenses.license_activate(license_key=key, instance_name=f"machine-{n}")
    lic = licenses.license_find(license_key=key)
    assert lic.activation_usage == 5
    lic, freed = licenses.license_reset_activations(license_id=lic.pk, actor="test")
    assert (lic.activation_usage, freed) == (0, 5)
    assert not LicenseActivation.objects.filter(license=lic, deactivated_at__isnull=True).exists()


@pytest.mark.django_db
def test_a_revoked_license_cannot_be_activated(make_order, django_capture_on_commit_callbacks):
    order, key = bought_key(make_order, django_capture_on_commit_callbacks, generated_product())
    keys_revoke_for_order(order=order, actor="test")
    assert LicenseKey.objects.get(order_line__order=order).status == KeyStatus.REVOKED
    with pytest.raises(licenses.LicenseNotUsable) as refused:
        licenses.license_activate(license_key=key, instance_name="laptop")
    assert refused.value.code == "license_revoked"


@pytest.mark.django_db(transaction=True)
def test_two_machines_racing_for_the_last_slot_one_wins(make_order, django_capture_on_commit_callbacks, monkeypatch):
    # Given a license with one slot left
    _, key = bought_key(make_order, django_capture_on_commit_callbacks, generated_product(activation_limit=2))
    licenses.license_activate(license_key=key, instance_name="first")
    start = threading.Barrier(2)
    # Each activation, having read the license, waits (up to a second) for the other to have read it too: without
    # the row lock both would read one slot free; with it the second cannot read until the first commits.
    meet, read_status = threading.Barrier(2, timeout=1), licenses.license_status

    def read_then_meet(license, *, now=None):
        status = read_status(license, now=now)
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait()
        return status

    monkeypatch.setattr(licenses, "license_status", read_then_meet)
    outcomes: dict[str, str] = {}

    def activate(name: str) -> None:
        try:
            start.wait(timeout=10)
            licenses.license_activate(license_key=key, instance_name=name)
            outcomes[name] = "activated"
        except licenses.ActivationLimitReached:
            outcomes[name] = "limit"
        finally:
            connection.close()

    # When two machines activate it at the same moment, each in its own transaction
    threads = [threading.Thread(target=activate, args=(name,)) for name in ("second", "third")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then exactly one gets the slot, and the count matches the live activations
    assert sorted(outcomes.values()) == ["activated", "limit"]
    lic = licenses.license_find(license_key=key)
    assert lic.activation_usage == 2 == lic.activations.filter(deactivated_at__isnull=True).count()
