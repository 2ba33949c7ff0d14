"""What connects the shop to the merchant's other systems: merchant API keys (and the audit of every call made
with one) and outbound webhook endpoints with their deliveries and attempts. Imported by storefront.models."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class MerchantApiScope(models.TextChoices):
    ORDERS_READ = "orders:read", _("Read orders")
    LICENSES_MANAGE = "licenses:manage", _("Manage licenses")


class MerchantApiKey(models.Model):
    """A key for the merchant REST API (/api/v1/merchant/). Shown once when created; only its SHA-256 is kept
    (the key is 256 random bits: a fast hash cannot be reversed), with its first characters to tell keys apart."""

    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(_("scopes"), default=list)
    created_by = models.CharField(max_length=100, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("merchant API key")
        verbose_name_plural = _("merchant API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class MerchantApiCall(models.Model):
    """Every call made with a merchant API key: who, what, from where, and how it was answered."""

    key = models.ForeignKey(MerchantApiKey, null=True, on_delete=models.SET_NULL, related_name="calls")
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=300)
    status = models.PositiveSmallIntegerField()
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["key", "created_at"], name="merchantapicall_key_time")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.status}"


class WebhookEvent(models.TextChoices):
    ORDER_PAID = "order.paid"
    ORDER_DELIVERED = "order.delivered"
    ORDER_HELD = "order.held"
    ORDER_REVIEW_DECIDED = "order.review_decided"
    ORDER_REFUNDED = "order.refunded"
    LICENSE_ACTIVATED = "license.activated"
    LICENSE_DEACTIVATED = "license.deactivated"
    STOCK_LOW = "stock.low"


class WebhookEndpoint(models.Model):
    """An address of the merchant's that is sent the events it chose, signed the Standard Webhooks way with its
    secret (kept encrypted). Disabled, with an email to the merchants, once a delivery failed for three days."""

    url = models.URLField(_("URL"), max_length=500)
    description = models.CharField(_("description"), max_length=200, blank=True)
    secret_ciphertext = models.BinaryField(editable=False)
    events = models.JSONField(_("events"), default=list)
    enabled = models.BooleanField(_("enabled"), default=True)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")

    def __str__(self) -> str:
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SUCCEEDED = "succeeded", _("Delivered")
    FAILED = "failed", _("Failed (gave up)")


class WebhookDelivery(models.Model):
    """One event for one endpoint: its signed message id and body, tried until answered 2xx or three days pass."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    msg_id = models.CharField(max_length=40, unique=True)
    event_type = models.CharField(max_length=40, choices=WebhookEvent.choices)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = _("webhook deliveries")
        indexes = [
            models.Index(fields=["next_attempt_at"], name="webhookdelivery_due", condition=models.Q(status="pending"))
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One try at a delivery: when, the answer's status code (or the error), how long it took, by whom."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    succeeded = models.BooleanField(default=False)
    actor = models.CharField(max_length=100, default="worker")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.attempted_at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error}"
