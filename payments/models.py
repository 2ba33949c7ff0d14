import os
import re
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from payments.money import percent_of

ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,99}$")


class Provider(models.TextChoices):
    STRIPE = "stripe", "Stripe"
    PAYPAL = "paypal", "PayPal"


def _codes(text: str) -> list[str]:
    return [part.strip().upper() for part in text.split(",") if part.strip()]


def validate_env_name(value: str) -> None:
    if value and not ENV_NAME.match(value):
        raise ValidationError(_("Give the name of an environment variable (A-Z, 0-9, _), not its value."))


class PaymentChannel(models.Model):
    """One way to take money: a provider account, where it may be used, what it costs.

    Credentials are never stored: the channel names the environment variables that hold them.
    The router (payments.routing) offers enabled, eligible, healthy channels by priority, then fee.
    """

    code = models.SlugField(_("code"), max_length=40, unique=True, help_text=_("Used in its webhook URL."))
    provider = models.CharField(_("provider"), max_length=20, choices=Provider.choices)
    display_name = models.CharField(_("name shown to shoppers"), max_length=100)
    display_name_zh_hans = models.CharField(
        _("name shown to shoppers (Simplified Chinese)"), max_length=100, blank=True
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    priority = models.PositiveSmallIntegerField(_("priority"), default=10, help_text=_("Lower is offered first."))
    currencies = models.CharField(
        _("currencies"), max_length=200, blank=True, help_text=_("Comma-separated ISO codes; empty: any.")
    )
    countries = models.CharField(
        _("shopper countries"), max_length=600, blank=True, help_text=_("Comma-separated ISO codes; empty: any.")
    )
    min_amount = models.PositiveIntegerField(_("minimum amount (minor units)"), null=True, blank=True)
    max_amount = models.PositiveIntegerField(_("maximum amount (minor units)"), null=True, blank=True)
    fee_percent = models.DecimalField(_("fee (percent)"), max_digits=5, decimal_places=3, default=Decimal("0"))
    fee_fixed = models.PositiveIntegerField(
        _("fixed fee per payment (minor units)"), default=0, help_text=_("In the payment's currency.")
    )
    public_key_env = models.CharField(
        _("public key variable"),
        max_length=100,
        blank=True,
        validators=[validate_env_name],
        help_text=_("Stripe publishable key or PayPal client id: the NAME of the environment variable."),
    )
    secret_env = models.CharField(
        _("secret variable"),
        max_length=100,
        blank=True,
        validators=[validate_env_name],
        help_text=_("Stripe secret key or PayPal client secret: the NAME of the environment variable."),
    )
    webhook_env = models.CharField(
        _("webhook variable"),
        max_length=100,
        blank=True,
        validators=[validate_env_name],
        help_text=_("Stripe webhook signing secret or PayPal webhook id: the NAME of the environment variable."),
    )
    api_base = models.URLField(
        _("API address"), blank=True, help_text=_("Empty: the provider's own (PayPal: sandbox unless 'live').")
    )
    live = models.BooleanField(_("live account"), default=False, help_text=_("PayPal: live instead of sandbox."))
    breaker_threshold = models.PositiveSmallIntegerField(
        _("errors in a row that open the breaker"), default=3, help_text=_("Timeouts and provider errors count.")
    )
    breaker_cooldown_seconds = models.PositiveIntegerField(_("breaker cool-down (seconds)"), default=120)
    # Breaker state, written by payments.health only.
    failures_in_row = models.PositiveIntegerField(default=0, editable=False)
    breaker_open_until = models.DateTimeField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "code"]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.code})"

    def clean(self) -> None:
        if self.min_amount is not None and self.max_amount is not None and self.min_amount > self.max_amount:
            raise ValidationError(_("The minimum amount is above the maximum."))
        if not 0 <= self.fee_percent < 100:
            raise ValidationError(_("The fee percent must be between 0 and 100."))
        for field in ("currencies", "countries"):
            bad = [code for code in _codes(getattr(self, field)) if not re.match(r"^[A-Z]{2,3}$", code)]
            if bad:
                raise ValidationError({field: _("Not ISO codes: %(codes)s") % {"codes": ", ".join(bad)}})

    @property
    def currency_list(self) -> list[str]:
        return _codes(self.currencies)

    @property
    def country_list(self) -> list[str]:
        return _codes(self.countries)

    @property
    def localized_name(self) -> str:
        if (get_language() or "").lower().startswith("zh") and self.display_name_zh_hans:
            return self.display_name_zh_hans
        return self.display_name

    def expected_fee(self, amount: int) -> int:
        return percent_of(amount, self.fee_percent) + self.fee_fixed

    def credential(self, which: str) -> str:
        """The value of the variable this channel names for `which` (public_key, secret, webhook).

        Read from the environment; the STRIPE_* and PAYPAL_* names also fall back to the settings of
        that name (storefront.settings reads them from the environment, with local defaults for the demo).
        """
        name = getattr(self, f"{which}_env")
        if not name:
            return ""
        value = os.environ.get(name, "")
        if not value and name.startswith(("STRIPE_", "PAYPAL_")):
            value = str(getattr(settings, name, "") or "")
        return value

    def missing_credentials(self, *, including_webhook: bool = False) -> list[str]:
        """What this channel needs and does not have (variable names, never values)."""
        needed = ["public_key", "secret"] + (["webhook"] if including_webhook else [])
        return [getattr(self, f"{which}_env") or f"{which}_env" for which in needed if not self.credential(which)]

    def breaker_open(self, now=None) -> bool:
        return bool(self.breaker_open_until and self.breaker_open_until > (now or timezone.now()))


class CallOutcome(models.TextChoices):
    SUCCESS = "success", _("Success")
    DECLINE = "decline", _("Declined")
    ERROR = "error", _("Error")
    TIMEOUT = "timeout", _("Timeout")


class ProviderCall(models.Model):
    """Every call to a provider: what, how it went, how long it took (payments.health queues them; admin reads)."""

    channel = models.ForeignKey(PaymentChannel, on_delete=models.CASCADE, related_name="calls")
    operation = models.CharField(max_length=30)
    outcome = models.CharField(max_length=10, choices=CallOutcome.choices)
    latency_ms = models.FloatField()
    error = models.CharField(max_length=100, blank=True)  # an exception class or issue code, never a message
    order = models.ForeignKey("orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)  # when the call was made (rows are written in bulk)
    call_id = models.CharField(max_length=32, unique=True, null=True, editable=False)  # one row per call, flushed once

    class Meta:
        indexes = [models.Index(fields=["channel", "created_at"], name="providercall_channel_time")]

    def __str__(self) -> str:
        return f"{self.channel_id} {self.operation} {self.outcome} {self.latency_ms:.0f} ms"


class PaymentStatus(models.TextChoices):
    CREATED = "created", _("Created")
    REQUIRES_ACTION = "requires_action", _("Waiting for the shopper")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    REFUNDED = "refunded", _("Refunded")


class Payment(models.Model):
    """One attempt to take money for an order through a channel (a Stripe PaymentIntent, a PayPal order)."""

    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="payments")
    channel = models.ForeignKey(PaymentChannel, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    provider = models.CharField(max_length=20)
    provider_ref = models.CharField(max_length=100)
    capture_ref = models.CharField(max_length=100, blank=True, db_index=True)  # PayPal capture id, Stripe charge
    amount = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.CREATED)
    client_secret = models.CharField(max_length=200, blank=True)
    approval_url = models.URLField(max_length=500, blank=True)
    failure_message = models.CharField(max_length=300, blank=True)
    amount_received = models.PositiveIntegerField(null=True, blank=True)
    refunded_amount = models.PositiveIntegerField(default=0)
    expected_fee = models.PositiveIntegerField(null=True, blank=True)  # from the channel's fee settings
    actual_fee = models.PositiveIntegerField(null=True, blank=True)  # what the provider reports it kept
    duplicate = models.BooleanField(default=False)  # a second payment for an order already paid: refunded
    succeeded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_ref"], name="payment_unique_provider_ref"),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="payment_status_created"),
            # the merchant dashboard's sales and fees of today and this month, and the monthly dispute ratio
            models.Index(fields=["succeeded_at"], name="payment_succeeded_at"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.provider_ref}"

    @property
    def refundable_amount(self) -> int:
        if self.status not in (PaymentStatus.SUCCEEDED,):
            return 0
        return max(0, (self.amount_received or self.amount) - self.refunded_amount)


class RefundStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")


class Refund(models.Model):
    """Money sent back for a payment, whole or in part. Made here (admin, shopper, risk) or at the provider."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="refunds")
    amount = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=RefundStatus.choices, default=RefundStatus.PENDING)
    provider_ref = models.CharField(max_length=100, blank=True)
    idempotency_key = models.CharField(max_length=100, unique=True)
    line_ids = models.JSONField(default=list, blank=True)  # the order lines this refund takes back
    whole_order = models.BooleanField(default=False)
    money_only = models.BooleanField(default=False)  # a duplicate payment given back: the goods stay
    reason = models.CharField(max_length=300, blank=True)
    actor = models.CharField(max_length=100)
    failure = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["payment", "provider_ref"], condition=~models.Q(provider_ref=""), name="refund_unique_ref"
            ),
        ]

    def __str__(self) -> str:
        return f"refund {self.amount} {self.currency} of {self.payment}"


class DisputeStatus(models.TextChoices):
    NEEDS_RESPONSE = "needs_response", _("Needs a response")
    SUBMITTED = "submitted", _("Evidence submitted")
    UNDER_REVIEW = "under_review", _("Under review")
    WON = "won", _("Won")
    LOST = "lost", _("Lost")
    CLOSED = "closed", _("Closed")


class Dispute(models.Model):
    """A chargeback or buyer dispute, with the evidence a digital-goods merchant answers it with."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="disputes")
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="disputes")
    provider = models.CharField(max_length=20)
    provider_ref = models.CharField(max_length=100)
    kind = models.CharField(max_length=30, default="dispute")  # dispute | reversal
    amount = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3, blank=True)
    reason = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=20, choices=DisputeStatus.choices, default=DisputeStatus.NEEDS_RESPONSE)
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    evidence_submitted_at = models.DateTimeField(null=True, blank=True)
    evidence_submitted_by = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["provider", "provider_ref"], name="dispute_unique_ref")]

    def __str__(self) -> str:
        return f"{self.provider} dispute {self.provider_ref} on {self.order_id}"


class WebhookEvent(models.Model):
    """Each provider notification, recorded once by its event id (idempotency key)."""

    provider = models.CharField(max_length=20)
    channel = models.ForeignKey(PaymentChannel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
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


class ReconciliationRun(models.Model):
    """One pass of payments.reconcile over a channel: what it found and what it put right."""

    channel = models.ForeignKey(PaymentChannel, on_delete=models.CASCADE, related_name="reconciliations")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    checked = models.PositiveIntegerField(default=0)
    applied = models.PositiveIntegerField(default=0)  # payments whose notification never arrived, applied now
    mismatches = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    notes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"reconciliation of {self.channel_id} at {self.started_at:%Y-%m-%d %H:%M}"
