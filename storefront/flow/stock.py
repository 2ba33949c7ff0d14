"""Stock arriving: orders waiting for a product's keys are delivered, oldest payment first."""

from django.db import transaction

from catalog.models import Product
from fulfillment.keys import keys_set_shared
from fulfillment.tasks import fill_backorders


def shared_key_set(*, product: Product, secret: str, actor: str) -> None:
    """Make a product sell one shared code (fulfillment.keys.keys_set_shared), then deliver the orders that
    were waiting for it once that commits."""
    keys_set_shared(product=product, secret=secret, actor=actor)
    transaction.on_commit(lambda: fill_backorders.delay(product.pk), robust=True)
