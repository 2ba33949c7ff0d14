from django.contrib import admin

from catalog.models import Product
from fulfillment.models import KeyStatus


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "price_amount", "currency", "is_active", "available_keys")
    list_filter = ("kind", "is_active", "currency")
    search_fields = ("name", "name_zh_hans", "slug")
    prepopulated_fields = {"slug": ("name",)}

    @admin.display(description="available keys")
    def available_keys(self, obj):
        if obj.kind != "license_key":
            return "-"
        return obj.license_keys.filter(status=KeyStatus.AVAILABLE).count()
