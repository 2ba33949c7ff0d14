import uuid

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from fulfillment.crypto import decrypt_secret


class KeyStatus(models.TextChoices):
    AVAILABLE = "available", _("Available")
    RESERVED = "reserved", _("Reserved")
    LOCKED = "locked", _("Locked")
    SOLD = "sold", _("Sold")
    REVOKED = "revoked", _("Revoked")
    RETIRED = "retired", _("Retired")


class LicenseKey(models.Model):
    """One license key in a product's pool, encrypted at rest.

    A key is sold to exactly one order line unit: the claim only moves keys that are still
    available, and (order_line, unit_index) is unique, so a line never gets a second key
    for the same unit even if delivery runs twice.
    """

    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="license_keys")
    ciphertext = models.BinaryField()
    fingerprint = models.CharField(max_length=64)
    note = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=12, choices=KeyStatus.choices, default=KeyStatus.AVAILABLE)
    order_line = models.ForeignKey(
        "orders.OrderLine", null=True, blank=True, on_delete=models.PROTECT, related_name="license_keys"
    )
    unit_index = models.PositiveSmallIntegerField(null=True, blank=True)
    reserved_for = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="reserved_keys"
    )
    reserved_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sold_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("export_keys", "Can export unsold license keys")]
        constraints = [
            models.UniqueConstraint(fields=["product", "fingerprint"], name="licensekey_unique_per_product"),
            models.UniqueConstraint(fields=["order_line", "unit_index"], name="licensekey_one_per_line_unit"),
            models.CheckConstraint(
                condition=models.Q(status="available", order_line__isnull=True) | ~models.Q(status="available"),
                name="licensekey_available_is_unassigned",
            ),
        ]
        indexes = [
            models.Index(
                fields=["product", "id"],
                name="licensekey_available_pool",
                condition=models.Q(status="available"),
            ),
            models.Index(
                fields=["reserved_until"],
                name="licensekey_reservations",
                condition=models.Q(status="reserved"),
            ),
        ]

    def __str__(self) -> str:
        return f"Key #{self.pk} ({self.status})"

    def reveal(self) -> str:
        return decrypt_secret(self.ciphertext)


class KeyEventType(models.TextChoices):
    IMPORTED = "imported", _("Imported")
    RESERVED = "reserved", _("Reserved")
    RELEASED = "released", _("Released")
    SOLD = "sold", _("Sold")
    REVOKED = "revoked", _("Revoked")
    LOCKED = "locked", _("Locked")
    UNLOCKED = "unlocked", _("Unlocked")
    RETIRED = "retired", _("Retired")
    EXPORTED = "exported", _("Exported")
    GENERATED = "generated", _("Generated")


class KeyEvent(models.Model):
    """Audit trail of a key's life: imported, reserved, released, sold, revoked, locked, retired, exported."""

    key = models.ForeignKey(LicenseKey, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=20, choices=KeyEventType.choices)
    actor = models.CharField(max_length=100)
    order = models.ForeignKey("orders.Order", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.type} by {self.actor}"


class AccessKind(models.TextChoices):
    REVEAL = "reveal", _("Key revealed")
    DOWNLOAD = "download", _("File downloaded")


class DeliveryAccess(models.Model):
    """Every key reveal and file download, with when, from where and with what: dispute evidence."""

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="accesses")
    line = models.ForeignKey("orders.OrderLine", on_delete=models.CASCADE, related_name="accesses")
    kind = models.CharField(max_length=10, choices=AccessKind.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    channel = models.CharField(max_length=10, default="web")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["line", "kind"], name="deliveryaccess_line_kind")]

    def __str__(self) -> str:
        return f"{self.kind} {self.created_at:%Y-%m-%d %H:%M} {self.ip}"


class Membership(models.Model):
    """A buyer's time-limited membership in a group, granted by a membership product."""

    line = models.OneToOneField("orders.OrderLine", on_delete=models.CASCADE, related_name="membership")
    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="memberships")
    group = models.ForeignKey("auth.Group", on_delete=models.PROTECT)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    ended = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["ended", "ends_at"], name="membership_due")]

    def __str__(self) -> str:
        return f"{self.user} in {self.group} until {self.ends_at:%Y-%m-%d}"


class ImportStatus(models.TextChoices):
    PENDING = "pending", _("Waiting")
    RUNNING = "running", _("Importing")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class KeyImport(models.Model):
    """One bulk import of keys from a merchant's file, run as a task, with its report."""

    product = models.ForeignKey("catalog.Product", on_delete=models.CASCADE, related_name="key_imports")
    source = models.FileField(upload_to="key-imports/")
    delimiter = models.CharField(max_length=4, blank=True, help_text=_("Empty: one key per line."))
    created_by = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=ImportStatus.choices, default=ImportStatus.PENDING)
    total_lines = models.PositiveIntegerField(default=0)
    processed_lines = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    duplicates_in_file = models.PositiveIntegerField(default=0)
    duplicates_existing = models.PositiveIntegerField(default=0)
    blank = models.PositiveIntegerField(default=0)
    too_long = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when a run starts and at every committed batch: an unfinished import whose heartbeat is old lost its
    # run (a worker killed, a task lost with Redis) and is resumed by the beat job resume_stalled_key_imports.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Import #{self.pk} for {self.product} ({self.status})"

    @property
    def percent(self) -> int:
        return int(100 * self.processed_lines / self.total_lines) if self.total_lines else 0


class KeySource(models.TextChoices):
    POOL = "pool", _("Imported pool (or a shared key)")
    GENERATED = "generated", _("Generated at delivery")


# At least 12 random characters (60 bits from a 32-letter alphabet): a generated key cannot be guessed.
KEY_PATTERN = RegexValidator(
    r"^(?=(?:[^X]*X){12})[A-Z0-9X-]{12,64}$",
    _(
        "Use X for each random character (at least 12 of them), with dashes, digits or capitals between, "
        "for example XXXX-XXXX-XXXX-XXXX."
    ),
)


class LicensePolicy(models.Model):
    """How a license-key product's keys are made and tracked by the license API (none: an untracked pool).

    Generated keys are always tracked; imported pool keys opt in with `track_pool_keys`.
    """

    product = models.OneToOneField("catalog.Product", on_delete=models.CASCADE, related_name="license_policy")
    key_source = models.CharField(_("keys come from"), max_length=10, choices=KeySource.choices, default=KeySource.POOL)
    pattern = models.CharField(
        _("generated key pattern"), max_length=64, default="XXXX-XXXX-XXXX-XXXX", validators=[KEY_PATTERN]
    )
    track_pool_keys = models.BooleanField(
        _("track pool keys in the license API"), default=False, help_text=_("Generated keys are always tracked.")
    )
    activation_limit = models.PositiveIntegerField(
        _("activation limit"), null=True, blank=True, help_text=_("Machines per key; empty: unlimited.")
    )
    expires_after_days = models.PositiveIntegerField(
        _("expires after (days)"), null=True, blank=True, help_text=_("Counted from delivery; empty: never.")
    )

    class Meta:
        verbose_name = _("license policy")
        verbose_name_plural = _("license policy")

    def __str__(self) -> str:
        return f"{self.get_key_source_display()} keys of product {self.product_id}"

    @property
    def tracked(self) -> bool:
        return self.key_source == KeySource.GENERATED or self.track_pool_keys

    def clean(self) -> None:
        """A product that still has unsold pool keys cannot switch to generated keys: they would be stranded."""
        if self.key_source != KeySource.GENERATED or not self.product_id:
            return
        unsold = LicenseKey.objects.filter(
            product_id=self.product_id, status__in=[KeyStatus.AVAILABLE, KeyStatus.RESERVED]
        ).count()
        if unsold:
            raise ValidationError(
                _("This product still has %(count)s unsold key(s) in its pool. Retire them before generating keys."),
                params={"count": unsold},
            )


class License(models.Model):
    """A sold key the merchant's software can activate, validate and deactivate (the license API).

    Found by the key's HMAC fingerprint, never by decrypting. Its status is derived (fulfillment.licenses):
    revoked with its key (a refund, a dispute), disabled by the merchant, expired, else active or inactive.
    `activation_usage` is kept by every activation and deactivation under this row's lock.
    """

    key = models.OneToOneField(LicenseKey, on_delete=models.PROTECT, related_name="license")
    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="licenses")
    fingerprint = models.CharField(max_length=64, unique=True)
    activation_limit = models.PositiveIntegerField(null=True, blank=True)
    activation_usage = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    disabled = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(activation_limit__isnull=True)
                | models.Q(activation_usage__lte=models.F("activation_limit")),
                name="license_usage_within_limit",
            )
        ]

    def __str__(self) -> str:
        return f"License #{self.pk} of product {self.product_id}"


class LicenseActivation(models.Model):
    """One machine (instance) a license is activated on; kept after deactivation as a record."""

    license = models.ForeignKey(License, on_delete=models.CASCADE, related_name="activations")
    instance_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivated_by = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["license", "name"],
                condition=models.Q(deactivated_at__isnull=True),
                name="licenseactivation_one_live_per_name",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.instance_id})"
