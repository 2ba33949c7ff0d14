"""The merchant's brand in admin: shop settings (one row) and footer pages. Saving shows on the next page."""

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse

from catalog.images import ImageRejected
from storefront.branding import ForgetsBranding, branding_forget, branding_logo_prepare
from storefront.models import ShopPage, ShopSettings


@admin.register(ShopSettings)
class ShopSettingsAdmin(admin.ModelAdmin):
    fieldsets = (
        (None, {"fields": ("name", "name_zh_hans", "tagline", "tagline_zh_hans", "logo", "primary_colour")}),
        ("Announcement banner", {"fields": ("announcement", "announcement_zh_hans")}),
    )

    def has_add_permission(self, request):
        return not ShopSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        """There is one row: the list opens it (and creates it with the defaults the first time)."""
        shop, _ = ShopSettings.objects.get_or_create(pk=1)
        return HttpResponseRedirect(reverse("admin:storefront_shopsettings_change", args=[shop.pk]))

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if "logo" in form.changed_data:
            try:
                branding_logo_prepare(shop=obj)
            except ImageRejected:
                messages.error(request, "The logo is not a picture the shop can read.")
        branding_forget()


@admin.register(ShopPage)
class ShopPageAdmin(ForgetsBranding, admin.ModelAdmin):
    list_display = ("title", "slug", "position")
    list_editable = ("position",)
    prepopulated_fields = {"slug": ("title",)}
