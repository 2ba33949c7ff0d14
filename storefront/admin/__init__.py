"""Django admin for the whole shop: one module per app's models, all in the top layer (they act through the
flow layer and the apps' services). Django's admin autodiscovery imports this package for the storefront app."""

from storefront.admin import (  # noqa: F401  (registers)
    catalog,
    coupons,
    fulfillment,
    integrations,
    licenses,
    orders,
    payments,
    riskengine,
    shop,
    staff,
    subscriptions,
)
