import secrets

from django.db import models
from django.db.models.fields.json import KeyTextTransform
from django.utils.translation import gettext_lazy as _

from catalog.models import FulfilmentKind


class OrderStatus(models.TextChoices):
    PENDING_PAYMENT = "pending_payment", _("Awaiting payment")
    PAID = "paid", _("Paid, delivering")
    ON_HOLD = "on_hold", _("Being checked")
    AWAITING_STOCK = "awaiting_stock", _("Awaiting stock")
    AWAITING_SHIPMENT = "awaiting_shipment", _("Awaiting shipment")
    FULFILLED = "fulfilled", _("Delivered")
    SHIPPED = "shipped", _("Shipped")
    CANCELLED = "cancelled", _("Cancelled")
    REFUNDED = "refunded", _("Refunded")


class PaymentState(models.TextChoices):
    UNPAID = "unpaid", _("Unpaid")
    PAID = "paid", _("Paid")
    MISMATCH = "mismatch", _("Paid amount does not match")
    PARTIALLY_REFUNDED = "partially_refunded", _("Partly refunded")
    REFUNDED = "refunded", _("Refunded")


class OrderEventType(models.TextChoices):
    """Every kind of OrderEvent. `order_event_record` refuses any other."""

    ORDER_CREATED = "order_created", _("Order placed")
    STATUS_CHANGED = "status_changed", _("Status changed")
    PAYMENT_STATE_CHANGED = "payment_state_changed", _("Payment state changed")
    PAYMENT_FAILED = "payment_failed", _("Payment failed")
    DUPLICATE_PAYMENT = "duplicate_payment", _("Second payment received")
    DUPLICATE_PAYMENT_REFUNDED = "duplicate_payment_refunded", _("Second payment refunded")
    PARTIAL_REFUND = "partial_refund", _("Lines refunded")
    PARTIAL_REFUND_AT_PROVIDER = "partial_refund_at_provider", _("Partly refunded at the provider")
    EMAIL_SENT = "email_sent", _("Email sent")
    EMAIL_RESEND_REQUESTED = "email_resend_requested", _("Email resend asked for")
    REVIEW_CLAIMED = "review_claimed", _("Review claimed")
    REVIEW_REJECTED = "review_rejected", _("Rejected in review")
    RADAR_REVIEW_OPENED = "radar_review_opened", _("Stripe Radar review opened")
    DISPUTE = "dispute", _("Dispute opened")
    DISPUTE_NOT_FRAUD = "dispute_not_fraud", _("Dispute: not fraud")
    DISPUTE_CLOSED_NOT_FRAUD = "dispute_closed_not_fraud", _("Dispute closed: not fraud")
    DISPUTE_LOST = "dispute_lost", _("Dispute lost")
    DISPUTE_EVIDENCE_SUBMITTED = "dispute_evidence_submitted", _("Dispute evidence submitted")
    REVERSAL = "reversal", _("Payment reversed")
    REVERSAL_NOT_FRAUD = "reversal_not_fraud", _("Reversal: not fraud")
    EARLY_FRAUD_WARNING = "early_fraud_warning", _("Early fraud warning")
    EARLY_FRAUD_WARNING_NOT_FRAUD = "early_fraud_warning_not_fraud", _("Early fraud warning: not fraud")
    REVIEW_CLOSED_NOT_FRAUD = "review_closed_not_fraud", _("Radar review closed: not fraud")
    REVIEW_CLOSED = "review_closed", _("Radar review closed")


def new_order_token() -> str:
    return secrets.token_urlsafe(32)


def new_order_number() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "SF-" + "".join(secrets.choice(alphabet) for _ in range(8))


class Order(models.Model):
    """A shopper's order. Its status moves only through orders.status.order_transition."""

    number = models.CharField(max_length=16, unique=True, default=new_order_number)
    token = models.CharField(max_length=64, unique=True, default=new_order_token, editable=False)
    email = models.EmailField()
    locale = models.CharField(max_length=10, default="en")
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.PENDING_PAYMENT)
    payment_state = models.CharField(max_length=20, choices=PaymentState.choices, default=PaymentState.UNPAID)
    currency = models.CharField(max_length=3)
    subtotal_amount = models.PositiveIntegerField()
    shipping_amount = models.PositiveIntegerField(default=0)
    total_amount = models.PositiveIntegerField()
    ship_name = models.CharField(max_length=200, blank=True)
    ship_line1 = models.CharField(max_length=200, blank=True)
    ship_line2 = models.CharField(max_length=200, blank=True)
    ship_city = models.CharField(max_length=100, blank=True)
    ship_postal_code = models.CharField(max_length=20, blank=True)
    ship_country = models.CharField(max_length=2, blank=True)
    purchase_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    # Risk signals: the storefront's device id, and what the payment told us about the card.
    device_id = models.CharField(max_length=64, blank=True, db_index=True)
    card_fingerprint = models.CharField(max_length=64, blank=True, db_index=True)
    card_country = models.CharField(max_length=2, blank=True)
    billing_country = models.CharField(max_length=2, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("refund_order", "Can refund orders")]
        indexes = [
            models.Index(fields=["status", "paid_at"], name="order_status_paid_at"),
            # risk engine: history, velocity fallback and fraud links by email and IP
            models.Index(fields=["email", "created_at"], name="order_email_created"),
            models.Index(fields=["purchase_ip", "created_at"], name="order_ip_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(total_amount=models.F("subtotal_amount") + models.F("shipping_amount")),
                name="order_total_is_sum",
            ),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def requires_shipping(self) -> bool:
        return any(line.requires_shipping for line in self.lines.all())


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="order_lines")
    product_name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=FulfilmentKind.choices)
    unit_price = models.PositiveIntegerField()
    quantity = models.PositiveSmallIntegerField()
    line_total = models.PositiveIntegerField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    booking_reference = models.CharField(max_length=20, blank=True)
    download_count = models.PositiveIntegerField(default=0)
    refunded_at = models.DateTimeField(null=True, blank=True)  # its keys are revoked and its link is dead

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="orderline_quantity_min_1"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_name}"

    @property
    def requires_shipping(self) -> bool:
        return self.kind == FulfilmentKind.PHYSICAL

    @property
    def is_done(self) -> bool:
        """Delivered (digital) or shipped (physical)."""
        return bool(self.shipped_at if self.requires_shipping else self.delivered_at)


class OrderEvent(models.Model):
    """Append-only history: every status change and every notable thing that happened."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=40, choices=OrderEventType.choices)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    actor = models.CharField(max_length=100)
    note = models.CharField(max_length=300, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # velocity fallback: failed payments per order and per declined card
            models.Index(
                fields=["order", "created_at"],
                name="orderevent_failed",
                condition=models.Q(type="payment_failed"),
            ),
            models.Index(
                KeyTextTransform("card", "data"),
                "created_at",
                name="orderevent_failed_card",
                condition=models.Q(type="payment_failed"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.from_status}->{self.to_status}"
