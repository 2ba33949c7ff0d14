import secrets

from django.db import models
from django.db.models.fields.json import KeyTextTransform
from django.utils.translation import gettext_lazy as _

from catalog.models import FulfilmentKind
from orders.coupon_models import Coupon, CouponKind, CouponRedemption  # noqa: F401  (this app's models too)


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
    discount_amount = models.PositiveIntegerField(default=0)  # the coupon's, off the lines (never shipping)
    total_amount = models.PositiveIntegerField()
    coupon = models.ForeignKey("orders.Coupon", null=True, blank=True, on_delete=models.PROTECT, related_name="orders")
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
    # A subscription's first order (period 1, or 0: a free trial) or one renewal: one order per period (unique)
    subscription = models.ForeignKey("Subscription", models.PROTECT, null=True, blank=True, related_name="orders")
    subscription_period = models.PositiveIntegerField(null=True, blank=True)
    trial_days = models.PositiveSmallIntegerField(default=0)  # a free trial: nothing charged, the card kept

    class Meta:
        ordering = ["-created_at"]
        permissions = [("refund_order", "Can refund orders")]
        indexes = [
            models.Index(fields=["status", "paid_at"], name="order_status_paid_at"),
            # risk engine: history, velocity fallback and fraud links by email and IP
            models.Index(fields=["email", "created_at"], name="order_email_created"),
            models.Index(fields=["purchase_ip", "created_at"], name="order_ip_created"),
            # risk engine: good customers behind an IP (riskengine.history.ip_good_customers), read for every
            # order from a busy IP; without it the planner may walk every recent paid order by status instead
            models.Index(fields=["purchase_ip", "paid_at"], name="order_ip_paid"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    total_amount=models.F("subtotal_amount") + models.F("shipping_amount") - models.F("discount_amount")
                ),
                name="order_total_is_sum",
            ),
            models.CheckConstraint(
                condition=models.Q(discount_amount__lte=models.F("subtotal_amount")), name="order_discount_within_lines"
            ),
            models.UniqueConstraint(
                fields=["subscription", "subscription_period"], name="order_one_per_subscription_period"
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
    discount_amount = models.PositiveIntegerField(default=0)  # this line's share of the order's coupon
    delivered_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    booking_reference = models.CharField(max_length=20, blank=True)
    download_count = models.PositiveIntegerField(default=0)
    refunded_at = models.DateTimeField(null=True, blank=True)  # its keys are revoked and its link is dead

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="orderline_quantity_min_1"),
            models.CheckConstraint(
                condition=models.Q(discount_amount__lte=models.F("line_total")), name="orderline_discount_within_line"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_name}"

    @property
    def requires_shipping(self) -> bool:
        return self.kind == FulfilmentKind.PHYSICAL

    @property
    def paid_amount(self) -> int:
        """What the shopper paid for this line: its total less its share of the coupon (what a refund returns)."""
        return self.line_total - self.discount_amount

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


class SubscriptionStatus(models.TextChoices):
    TRIALING = "trialing", _("Free trial")
    ACTIVE = "active", _("Active")
    PAST_DUE = "past_due", _("Past due")
    CANCELLED = "cancelled", _("Cancelled")


class SubscriptionEventType(models.TextChoices):
    STARTED = "started", _("Started")
    RENEWED = "renewed", _("Renewed")
    RENEWAL_FAILED = "renewal_failed", _("Renewal failed")
    RECOVERED = "recovered", _("Recovered after a failed renewal")
    REMINDER_SENT = "reminder_sent", _("Renewal reminder sent")
    CANCEL_REQUESTED = "cancel_requested", _("Set to cancel at period end")
    RESUMED = "resumed", _("Resumed")
    CARD_UPDATED = "card_updated", _("Card updated")
    FREE_PERIOD = "free_period", _("Free period given")
    CANCELLED = "cancelled", _("Cancelled")


def new_subscription_token() -> str:
    return secrets.token_urlsafe(32)


class Subscription(models.Model):
    """A shopper's subscription to a product sold by period. The shop charges each period itself (a saved card,
    off-session) or, for PayPal, asks the shopper to pay each period from a link. Changes only through
    orders.subscriptions."""

    token = models.CharField(max_length=64, unique=True, default=new_subscription_token, editable=False)
    email = models.EmailField()
    mailbox = models.CharField(max_length=254, blank=True)  # orders.mailbox.email_key: one free trial per mailbox
    locale = models.CharField(max_length=10, default="en")
    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="subscriptions")
    interval = models.CharField(max_length=10)  # catalog.BillingInterval, as sold
    quantity = models.PositiveSmallIntegerField(default=1)
    unit_price = models.PositiveIntegerField()  # minor units, the price the shopper agreed to
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE)
    # How renewals are paid: the channel of the first payment and, for a saved card, the provider's references
    provider = models.CharField(max_length=20)
    channel_code = models.CharField(max_length=50, blank=True)
    customer_ref = models.CharField(max_length=100, blank=True)
    method_ref = models.CharField(max_length=100, blank=True)
    periods_paid = models.PositiveIntegerField(default=1)
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)  # when the sweeper next tries to renew
    failed_attempts = models.PositiveSmallIntegerField(default=0)  # for the period now due
    reminded_period = models.PositiveIntegerField(default=0)  # the last period whose reminder went out
    cancel_at_period_end = models.BooleanField(default=False)
    cancel_reason = models.CharField(max_length=300, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="subscription_due"),
            models.Index(fields=["email"], name="subscription_email"),
            models.Index(fields=["product", "mailbox"], name="subscription_product_mailbox"),
        ]

    def __str__(self) -> str:
        return f"{self.product} / {self.email}"

    @property
    def amount(self) -> int:
        return self.unit_price * self.quantity

    @property
    def saved_card(self) -> bool:
        return bool(self.customer_ref and self.method_ref)


class SubscriptionEvent(models.Model):
    """What happened to a subscription, in order: its history for the shopper, staff and the dashboard."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=30, choices=SubscriptionEventType.choices)
    period = models.PositiveIntegerField(null=True, blank=True)
    actor = models.CharField(max_length=100)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["type", "created_at"], name="subscription_event_type")]

    def __str__(self) -> str:
        return f"{self.type} ({self.period or '-'})"
