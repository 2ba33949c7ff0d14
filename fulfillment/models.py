from django.db import models
from django.utils.translation import gettext_lazy as _

from fulfillment.crypto import decrypt_secret


class KeyStatus(models.TextChoices):
    AVAILABLE = "available", _("Available")
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
    created_at = models.DateTimeField(auto_now_add=True)
    sold_at = models.DateTimeField(null=True, blank=True)

    class Meta:
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
        ]

    def __str__(self) -> str:
        return f"Key #{self.pk} ({self.status})"

    def reveal(self) -> str:
        return decrypt_secret(self.ciphertext)
