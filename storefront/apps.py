from django.apps import AppConfig


class StorefrontConfig(AppConfig):
    name = "storefront"

    def ready(self):
        from storefront.page_cache import connect_signals

        connect_signals()
