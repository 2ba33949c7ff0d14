from django.db import models
from django.utils.translation import gettext_lazy as _


class PaymentStatus(models.TextChoices):
    CREATED = "created", _("Created")
    REQUIRES_ACTION = "requires_action", _("Requires authentication")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    REFUNDED = "refunded", _("Refunded")


class Payment(models.Model):
    """One attempt to take money for an order at a provider (a Stripe PaymentIntent)."""

    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="payments")
    provider = models.CharField(max_length=20)
    provider_ref = models.CharField(max_length=100)
    amount = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.CREATED)
    client_secret = models.CharField(max_length=200, blank=True)
    failure_message = models.CharField(max_length=300, blank=True)
    amount_received = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_ref"], name="payment_unique_provider_ref"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.provider_ref}"


class WebhookEvent(models.Model):
    """Each provider notification, recorded once by its event id (idempotency key)."""

    provider = models.CharField(max_length=20)
    event_id = models.CharField(max_length=100)
    event_type = models.CharField(max_length=100)
    payment_ref = models.CharField(max_length=100, blank=True)
    outcome = models.CharField(max_length=40, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="webhookevent_unique_event"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.event_id} {self.event_type}"
