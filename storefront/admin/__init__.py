"""Django admin for the whole shop: one module per app's models, all in the top layer (they act through the
flow layer and the apps' services). Django's admin autodiscovery imports this package for the storefront app."""

from storefront.admin import catalog, fulfillment, orders, payments, riskengine, shop  # noqa: F401  (registers)
