from django.apps import AppConfig


class StorefrontConfig(AppConfig):
    name = "storefront"

    def ready(self):
        from storefront.flow.events import events_connect_signals
        from storefront.metrics import metrics_connect_signals
        from storefront.page_cache import connect_signals
        from storefront.twofactor import audit  # noqa: F401  (connects the sign-in record to Django's signals)

        connect_signals()
        metrics_connect_signals()
        events_connect_signals()
