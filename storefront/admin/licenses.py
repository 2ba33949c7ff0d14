"""Admin for selling software: a product's license policy (an inline of the product), licenses with their
activations (disable, enable, reset), all acting through fulfillment.licenses."""

from django import forms
from django.contrib import admin, messages

from catalog.models import FulfilmentKind
from fulfillment import licenses
from fulfillment.models import KeySource, License, LicenseActivation, LicensePolicy
from storefront.admin.base import ReadOnlyAdmin
from storefront.admin.catalog_forms import RENEWING_KEY_NEEDS_GENERATED


class LicensePolicyFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        """A license-key product sold by period renews one generated key's expiry each period, so it needs a
        policy that generates its keys (a pool key cannot be made to expire, nor a shared one)."""
        super().clean()
        product = self.instance  # the product form's cleaned values are on it already
        if product.kind != FulfilmentKind.LICENSE_KEY or not product.billing_interval:
            return
        kept = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if not any(f.cleaned_data.get("key_source") == KeySource.GENERATED for f in kept):
            raise forms.ValidationError(RENEWING_KEY_NEEDS_GENERATED)


class LicensePolicyInline(admin.StackedInline):
    """Shown on every product; only license-key products use it (none: keys from the imported pool, untracked)."""

    model = LicensePolicy
    formset = LicensePolicyFormSet
    extra = 0
    max_num = 1
    can_delete = True
    fields = ("key_source", "pattern", "activation_limit", "expires_after_days", "track_pool_keys")
    verbose_name = "license policy (license-key products: generated keys, activations, expiry)"
    verbose_name_plural = verbose_name


class LicenseActivationInline(admin.TabularInline):
    model = LicenseActivation
    extra = 0
    can_delete = False
    fields = ("instance_id", "name", "created_at", "deactivated_at", "deactivated_by")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(License)
class LicenseAdmin(ReadOnlyAdmin):
    """Licenses by product and status; never the key. Merchants disable, enable or reset activations."""

    list_display = ("id", "product", "status", "activation_usage", "activation_limit", "expires_at", "created_at")
    list_filter = ("disabled", "product")
    search_fields = ("=key__order_line__order__number",)
    list_select_related = ("product", "key")
    fields = ("product", "key", "status", "activation_limit", "activation_usage", "expires_at", "disabled")
    readonly_fields = fields
    inlines = [LicenseActivationInline]
    actions = ["disable", "enable", "reset_activations"]

    @admin.display(description="status")
    def status(self, obj: License) -> str:
        return licenses.license_status(obj)

    def has_change_permission(self, request, obj=None):  # the view page, with its actions
        return request.user.has_perm("fulfillment.change_license")

    def _act(self, request, queryset, verb: str, act) -> None:
        actor = f"staff:{request.user.get_username()}"
        for license_id in queryset.values_list("pk", flat=True):
            act(license_id=license_id, actor=actor)
        messages.success(request, f"{verb} {queryset.count()} license(s).")

    @admin.action(description="Disable selected licenses (they validate false)", permissions=["change"])
    def disable(self, request, queryset):
        self._act(request, queryset, "Disabled", lambda **kw: licenses.license_set_disabled(disabled=True, **kw))

    @admin.action(description="Enable selected licenses", permissions=["change"])
    def enable(self, request, queryset):
        self._act(request, queryset, "Enabled", lambda **kw: licenses.license_set_disabled(disabled=False, **kw))

    @admin.action(description="Reset activations of selected licenses", permissions=["change"])
    def reset_activations(self, request, queryset):
        self._act(request, queryset, "Reset the activations of", licenses.license_reset_activations)
