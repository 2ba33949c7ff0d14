from django.db import models
from django.db.models.functions import Upper
from django.utils.translation import gettext_lazy as _


class RiskDecision(models.TextChoices):
    APPROVE = "approve", _("Approve")
    REVIEW = "review", _("Review")
    DECLINE = "decline", _("Decline")


class RuleType(models.TextChoices):
    BLOCKLIST = "blocklist", _("Blocklist hit (decides alone)")
    VELOCITY = "velocity", _("Velocity over a window")
    DISPOSABLE_EMAIL = "disposable_email", _("Disposable email domain")
    COUNTRY_MISMATCH = "country_mismatch", _("IP country differs from card or billing country")
    AMOUNT_VS_HISTORY = "amount_vs_history", _("Amount against the customer's history")
    HIGH_RISK_PRODUCT = "high_risk_product", _("High-risk product")
    LINKED_FRAUD = "linked_fraud", _("Linked to earlier fraud or disputes")
    RADAR = "radar", _("Stripe Radar outcome")
    EMAIL_PATTERN = "email_pattern", _("Made-up mailbox name")
    AMOUNT_VS_PRODUCT = "amount_vs_product", _("More units than the product usually sells")
    TRUSTED_CUSTOMER = "trusted_customer", _("Returning customer with a clean history (takes points off)")
    COUPON_ABUSE = "coupon_abuse", _("One device or card using a coupon under many emails")


class RuleMode(models.TextChoices):
    ACTIVE = "active", _("Active")
    SHADOW = "shadow", _("Shadow (recorded, never decides)")


class RiskRule(models.Model):
    """One rule, tuned by staff in admin without a deploy. `params` depend on the type (see riskengine.rules)."""

    name = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=30, choices=RuleType.choices)
    params = models.JSONField(default=dict, blank=True)
    points = models.PositiveSmallIntegerField(default=20)
    enabled = models.BooleanField(default=True)
    mode = models.CharField(max_length=10, choices=RuleMode.choices, default=RuleMode.ACTIVE)
    description = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.type}, {self.mode})"


class RiskSettings(models.Model):
    """Thresholds, one row (pk=1)."""

    review_threshold = models.PositiveSmallIntegerField(default=40, help_text=_("Score at or above: review."))
    decline_threshold = models.PositiveSmallIntegerField(default=80, help_text=_("Score at or above: decline."))
    review_deadline_hours = models.PositiveSmallIntegerField(
        default=24, help_text=_("Unreviewed held orders are refunded after this long.")
    )

    class Meta:
        verbose_name_plural = "risk settings"

    def __str__(self) -> str:
        return f"review ≥ {self.review_threshold}, decline ≥ {self.decline_threshold}"

    @classmethod
    def current(cls) -> "RiskSettings":
        return cls.objects.get_or_create(pk=1)[0]


class ListKind(models.TextChoices):
    EMAIL = "email", _("Email")
    EMAIL_DOMAIN = "email_domain", _("Email domain")
    IP = "ip", _("IP address or CIDR range")
    DEVICE = "device", _("Device id")
    CARD = "card", _("Card fingerprint")


class ListEntry(models.Model):
    """A blocklist or allowlist entry."""

    allow = models.BooleanField(default=False, help_text=_("Allowlist instead of blocklist."))
    kind = models.CharField(max_length=20, choices=ListKind.choices)
    value = models.CharField(max_length=200)
    reason = models.CharField(max_length=300, blank=True)
    created_by = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["allow", "kind", "value"], name="listentry_unique")]
        indexes = [models.Index("kind", Upper("value"), name="listentry_kind_value_ci")]
        verbose_name_plural = "list entries"

    def __str__(self) -> str:
        return f"{'allow' if self.allow else 'block'} {self.kind} {self.value}"


class RiskAssessment(models.Model):
    """The risk engine's verdict on an order, with every reason that led to it."""

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="risk_assessments")
    stage = models.CharField(max_length=12, default="paid")  # pre_payment | paid
    decision = models.CharField(max_length=10, choices=RiskDecision.choices)
    score = models.PositiveSmallIntegerField(default=0)
    reasons = models.JSONField(default=list, blank=True)
    shadow_reasons = models.JSONField(default=list, blank=True)
    radar = models.JSONField(default=dict, blank=True)
    # The order's model features as they were when it was decided (paid stage; riskengine.features): what
    # the model is trained on, so training never sees what was learnt after the decision.
    features = models.JSONField(default=dict, blank=True)
    duration_ms = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.decision} ({self.score})"


class ReviewStatus(models.TextChoices):
    OPEN = "open", _("Waiting for a reviewer")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")
    EXPIRED = "expired", _("Refunded: not reviewed in time")
    CLOSED = "closed", _("Closed: the order was refunded meanwhile")


class ReviewCase(models.Model):
    """A held order in the ops queue."""

    order = models.OneToOneField("orders.Order", on_delete=models.CASCADE, related_name="review_case")
    assessment = models.ForeignKey(RiskAssessment, on_delete=models.PROTECT)
    status = models.CharField(max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.OPEN)
    claimed_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    claimed_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        permissions = [("review_orders", "Can work the risk review queue")]
        indexes = [models.Index(fields=["status", "created_at"], name="reviewcase_queue")]

    def __str__(self) -> str:
        return f"Review of {self.order} ({self.status})"


class FraudLabel(models.Model):
    """Ground truth for precision: what later became of an order (review, early fraud warning, dispute)."""

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="fraud_labels")
    source = models.CharField(max_length=20)  # review | early_fraud_warning | dispute | chargeback
    is_fraud = models.BooleanField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.order}: {'fraud' if self.is_fraud else 'legitimate'} ({self.source})"


class RiskConfigVersion(models.Model):
    """Change stamps for the engine's per-process snapshot (riskengine.config): one row per part.

    Database triggers (migration 0006) give a part a new stamp on every write to its tables (rules,
    list entries, fraud labels), whoever writes, so no writer can forget to; an assessment compares
    the stamps with those of what it holds.
    """

    part = models.CharField(max_length=10, primary_key=True)
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.part}: {self.version}"


class ModelMode(models.TextChoices):
    SHADOW = "shadow", _("Shadow (recorded, never decides)")
    ACTIVE = "active", _("Active (adds its points)")
    RETIRED = "retired", _("Retired")


class RiskModel(models.Model):
    """One trained version of the model that learns from this shop's outcomes (riskengine.learning).

    A new version starts in shadow; staff promote it to active (at most one) in admin or with
    `manage.py risk_train --activate`. It scores from `parameters`, the numbers read off the fitted estimator
    (riskengine.scoring). `estimator` keeps the fitted scikit-learn estimator itself, pickled, to study or
    re-measure it: only ever written by riskengine.learning on this shop's own servers and never taken from
    anywhere else, because unpickling runs code.
    """

    version = models.AutoField(primary_key=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=100)
    algorithm = models.CharField(max_length=100)
    library = models.CharField(max_length=50, help_text=_("The scikit-learn version that fitted it."))
    feature_names = models.JSONField(default=list)
    parameters = models.JSONField(default=dict, help_text=_("What scoring reads: scaling, weights, calibration."))
    estimator = models.BinaryField()
    trained_from = models.DateTimeField(help_text=_("Oldest decision in the training set."))
    trained_to = models.DateTimeField(help_text=_("Newest decision in the training set."))
    fraud_count = models.PositiveIntegerField()
    good_count = models.PositiveIntegerField()
    metrics = models.JSONField(default=dict, blank=True)
    mode = models.CharField(max_length=10, choices=ModelMode.choices, default=ModelMode.SHADOW)
    points = models.PositiveSmallIntegerField(
        default=30, help_text=_("Risk points the model adds at probability 1.0 (rounded, in proportion below).")
    )
    mode_changed_at = models.DateTimeField(null=True, blank=True)
    mode_changed_by = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["mode"], condition=models.Q(mode="active"), name="riskmodel_one_active"),
            models.UniqueConstraint(fields=["mode"], condition=models.Q(mode="shadow"), name="riskmodel_one_shadow"),
        ]

    def __str__(self) -> str:
        return f"model v{self.version} ({self.mode})"
