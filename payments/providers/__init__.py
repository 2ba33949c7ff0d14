from payments.providers.base import PaymentProvider
from payments.providers.stripe import StripeProvider


def get_provider(name: str) -> PaymentProvider:
    if name == "stripe":
        return StripeProvider()
    raise LookupError(f"unknown payment provider {name!r}")
