import factory

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
    keys = [f"{prefix}-{product.pk}-{i:05d}" for i in range(count)]
    keys_add_to_pool(product=product, secrets_=keys, actor="test")
    return keys
