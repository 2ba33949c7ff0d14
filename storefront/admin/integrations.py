"""Admin for the merchant's other systems: merchant API keys (shown once, revoked, every call audited) and
outbound webhook endpoints with their deliveries and attempts (resend by hand)."""

from django import forms
from django.contrib import admin, messages
from standardwebhooks.webhooks import Webhook

from fulfillment.crypto import encrypt_secret
from storefront import safe_http
from storefront.admin.base import ReadOnlyAdmin
from storefront.flow.outbound import new_endpoint_secret, webhook_resend
from storefront.merchant_keys import api_key_create, api_key_revoke
from storefront.models import (
    MerchantApiCall,
    MerchantApiKey,
    MerchantApiScope,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)


class MerchantApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=MerchantApiScope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = MerchantApiKey
        fields = ("name", "scopes")


@admin.register(MerchantApiKey)
class MerchantApiKeyAdmin(admin.ModelAdmin):
    """The key is shown once, in the message after it is made; only its hash is kept. Revoke, never edit."""

    form = MerchantApiKeyForm
    list_display = ("name", "prefix", "scopes", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        return ("name", "scopes", "prefix", "created_by", "created_at", "last_used_at", "revoked_at") if obj else ()

    def get_fields(self, request, obj=None):
        return self.get_readonly_fields(request, obj) if obj else ("name", "scopes")

    def save_model(self, request, obj, form, change):
        if change:
            return
        key, token = api_key_create(
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            actor=f"staff:{request.user.get_username()}",
        )
        obj.pk = key.pk
        messages.warning(request, f"The new API key, shown this once only (copy it now): {token}")

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        actor = f"staff:{request.user.get_username()}"
        done = sum(api_key_revoke(key_id=pk, actor=actor) for pk in queryset.values_list("pk", flat=True))
        messages.success(request, f"Revoked {done} key(s).")


@admin.register(MerchantApiCall)
class MerchantApiCallAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "key", "method", "path", "status", "ip")
    list_filter = ("status", "key")
    list_select_related = ("key",)


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(label="URL", max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple)
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput,
        help_text="whsec_... (Standard Webhooks). Empty: a new one is made and shown once; on an existing "
        "endpoint empty keeps the current one.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "events", "enabled")

    def clean_url(self):
        url = self.cleaned_data["url"]
        try:
            return safe_http.url_check(url)
        except safe_http.UnsafeUrl as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_secret(self):
        secret = self.cleaned_data["secret"].strip()
        if secret:
            try:
                Webhook(secret)
            except Exception:
                raise forms.ValidationError("Not a Standard Webhooks secret (whsec_ and base64).") from None
        return secret


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("url", "description", "events", "enabled", "disabled_reason", "created_at")
    readonly_fields = ("disabled_reason",)

    def save_model(self, request, obj, form, change):
        secret = form.cleaned_data.get("secret")
        if not change and not secret:
            secret = new_endpoint_secret()
            messages.warning(request, f"The endpoint's signing secret, shown this once only: {secret}")
        if secret:
            obj.secret_ciphertext = encrypt_secret(secret)
        if obj.enabled:
            obj.disabled_reason = ""
        super().save_model(request, obj, form, change)


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ("attempted_at", "status_code", "error", "duration_ms", "succeeded", "actor")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Every delivery with its attempts (status and time); resend by hand from the list."""

    list_display = (
        "id",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event_type", "endpoint")
    list_select_related = ("endpoint",)
    fields = (
        "endpoint",
        "msg_id",
        "event_type",
        "status",
        "attempts",
        "last_status_code",
        "last_attempt_at",
        "next_attempt_at",
        "created_at",
        "payload",
    )
    readonly_fields = fields
    inlines = [WebhookAttemptInline]
    actions = ["resend"]

    def has_change_permission(self, request, obj=None):  # the view page and the resend action
        return request.user.has_perm("storefront.change_webhookdelivery")

    @admin.action(description="Resend selected deliveries now", permissions=["change"])
    def resend(self, request, queryset):
        actor = f"staff:{request.user.get_username()}"
        results = [webhook_resend(delivery_id=pk, actor=actor) for pk in queryset.values_list("pk", flat=True)]
        sent = [d for d in results if d is not None]
        ok = sum(1 for d in sent if d.last_status_code and 200 <= d.last_status_code < 300)
        messages.info(request, f"Resent {len(sent)} deliveries: {ok} answered 2xx.")
