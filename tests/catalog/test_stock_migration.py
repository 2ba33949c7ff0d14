"""catalog 0005 adds the stock counter and fills it from the keys that exist at the time."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from catalog.models import Product

BEFORE = [("catalog", "0004_categories_images_price_breaks")]
AFTER = [("catalog", "0005_product_keys_available")]


@pytest.fixture
def migrated_back():
    """The database as it was before the counter existed; migrated to the latest state again afterwards."""
    MigrationExecutor(connection).migrate(BEFORE)  # and whatever depends on later catalog migrations
    # the models as the database now has them (not the leaves of other apps: some need a later catalog)
    yield MigrationExecutor(connection)._create_project_state(with_applied_migrations=True).apps
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_each_products_available_keys(migrated_back):
    # Given products from before the counter: one with keys in every status, one without keys
    old_product = migrated_back.get_model("catalog", "Product")
    old_key = migrated_back.get_model("fulfillment", "LicenseKey")
    stocked = old_product.objects.create(name="Stocked", slug="stocked", kind="license_key", price_amount=100)
    empty = old_product.objects.create(name="Empty", slug="empty", kind="license_key", price_amount=100)
    statuses = ["available"] * 3 + ["reserved", "locked", "retired", "revoked"]
    old_key.objects.bulk_create(
        old_key(product_id=stocked.pk, ciphertext=b"x", fingerprint=f"fp-{i}", status=status)
        for i, status in enumerate(statuses)
    )

    # When the migration runs
    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)

    # Then each counter holds its product's available keys
    assert dict(Product.objects.values_list("slug", "keys_available")) == {stocked.slug: 3, empty.slug: 0}
