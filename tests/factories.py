import factory
from django.db import connection

from catalog.models import FulfilmentKind, Product
from fulfillment.keys import keys_add_to_pool


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    name = factory.Sequence(lambda n: f"Product {n}")
    slug = factory.Sequence(lambda n: f"product-{n}")
    kind = FulfilmentKind.LICENSE_KEY
    price_amount = 1999
    currency = "USD"
    max_per_order = 5


def add_keys(product: Product, count: int, prefix: str = "KEY") -> list[str]:
    """Add keys to the product's pool as if that had committed: counted in stock, low-stock alert decided.

    The pool's stock counter moves on commit, which a test's own transaction never reaches, so the commit
    callbacks this add scheduled are taken off the connection and run now (once: a surrounding
    django_capture_on_commit_callbacks does not see them again). `product` is refreshed with the result.
    """
    keys = [f"{prefix}-{product.pk}-{i:05d}" for i in range(count)]
    scheduled = len(connection.run_on_commit)
    keys_add_to_pool(product=product, secrets_=keys, actor="test")
    while len(connection.run_on_commit) > scheduled:  # a callback may schedule another (the alert email)
        _, callback, _ = connection.run_on_commit.pop(scheduled)
        callback()
    product.refresh_from_db(fields=["keys_available", "low_stock_alerted"])
    return keys
