from django.contrib import admin

from payments.models import Payment, WebhookEvent


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("provider_ref", "order", "provider", "amount", "currency", "status", "created_at")
    list_filter = ("provider", "status")
    search_fields = ("provider_ref", "order__number")
    exclude = ("client_secret",)

    def has_add_permission(self, request):
        return False  # payments come from providers, never typed in

    readonly_fields = [
        f
        for f in (
            "order",
            "provider",
            "provider_ref",
            "amount",
            "currency",
            "status",
            "failure_message",
            "amount_received",
        )
    ]


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("event_id", "provider", "event_type", "payment_ref", "outcome", "received_at")
    list_filter = ("provider", "event_type", "outcome")
    search_fields = ("event_id", "payment_ref")
    readonly_fields = ("provider", "event_id", "event_type", "payment_ref", "outcome", "received_at")

    def has_add_permission(self, request):
        return False
