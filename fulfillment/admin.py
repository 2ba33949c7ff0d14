from django.contrib import admin

from fulfillment.models import LicenseKey


@admin.register(LicenseKey)
class LicenseKeyAdmin(admin.ModelAdmin):
    """Keys are listed by status and owner only; the secret is never shown here."""

    list_display = ("id", "product", "status", "order_line", "sold_at", "created_at")
    list_filter = ("status", "product")
    fields = ("product", "status", "note", "order_line", "unit_index", "sold_at", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False
