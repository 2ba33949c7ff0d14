"""The flow layer: what happens, across the apps, when something happens to an order.

    pages, API, admin (storefront.views, storefront.api, storefront.admin, storefront.review, webhooks)
        ↓
    flow (this package): checkout, a payment's outcome, a review decided, stock arriving, a refund asked for,
                         a dispute, reconciliation, and the Celery tasks that drive them
        ↓
    payments | fulfillment | riskengine   (none imports another)
        ↓
    orders
        ↓
    catalog

Each module here says one story in order, calling the apps' services; the apps never call back up.
The layers are import-linter contracts in pyproject.toml, checked by `make test`.
"""
