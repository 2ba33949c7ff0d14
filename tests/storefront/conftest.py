import pytest
from django.contrib.auth.models import Group

from catalog.models import BillingInterval, FulfilmentKind
from tests.factories import ProductFactory


@pytest.fixture
def membership(db):
    """A monthly membership at USD 9.00 (tests/storefront/test_subscriptions.py)."""
    return ProductFactory(
        kind=FulfilmentKind.MEMBERSHIP,
        price_amount=900,
        billing_interval=BillingInterval.MONTH,
        membership_group=Group.objects.create(name="members"),
        max_per_order=1,
    )
