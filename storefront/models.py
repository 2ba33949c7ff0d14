"""The project's own records: what the merchant sets in admin to make the shop theirs (name, logo, colour,
announcement, footer pages), the staff jobs that run long admin actions as tasks, and the staff sign-in record."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _

from catalog.models import public_storage

COLOUR = RegexValidator(r"^#[0-9a-fA-F]{6}$", _("Write the colour as #rrggbb, for example #0b5cad."))


def _in_chinese() -> bool:
    return (get_language() or "").lower().startswith("zh")


DEFAULT_SHOP_NAME = "Digital Goods Shop"


class ShopSettings(models.Model):
    """The shop's brand. One row (pk 1); read through storefront.branding, which caches it."""

    name = models.CharField(_("shop name"), max_length=80, default=DEFAULT_SHOP_NAME)
    name_zh_hans = models.CharField(_("shop name (Simplified Chinese)"), max_length=80, blank=True)
    tagline = models.CharField(
        _("tagline"), max_length=200, blank=True, help_text=_("Also the search engines' description.")
    )
    tagline_zh_hans = models.CharField(_("tagline (Simplified Chinese)"), max_length=200, blank=True)
    logo = models.ImageField(_("logo"), storage=public_storage, upload_to="brand/", blank=True)
    logo_webp = models.ImageField(storage=public_storage, upload_to="brand/", blank=True, editable=False)
    logo_width = models.PositiveIntegerField(default=0, editable=False)
    logo_height = models.PositiveIntegerField(default=0, editable=False)
    primary_colour = models.CharField(_("primary colour"), max_length=7, default="#0b5cad", validators=[COLOUR])
    announcement = models.CharField(_("announcement banner"), max_length=300, blank=True)
    announcement_zh_hans = models.CharField(_("announcement (Simplified Chinese)"), max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("shop settings")
        verbose_name_plural = _("shop settings")

    def __str__(self) -> str:
        return self.name

    @property
    def localized_name(self) -> str:
        if self.name == DEFAULT_SHOP_NAME and not self.name_zh_hans:  # a shop not named yet: in the reader's language
            return gettext("Digital Goods Shop")
        return (self.name_zh_hans if _in_chinese() else "") or self.name

    @property
    def localized_tagline(self) -> str:
        return (self.tagline_zh_hans if _in_chinese() else "") or self.tagline

    @property
    def localized_announcement(self) -> str:
        return (self.announcement_zh_hans if _in_chinese() else "") or self.announcement


class ShopPage(models.Model):
    """A page linked from every page's footer, written as Markdown (sanitised when shown)."""

    slug = models.SlugField(_("address"), unique=True, help_text=_("The page lives at /pages/<address>/."))
    title = models.CharField(_("title"), max_length=100)
    title_zh_hans = models.CharField(_("title (Simplified Chinese)"), max_length=100, blank=True)
    body = models.TextField(_("text (Markdown)"))
    body_zh_hans = models.TextField(_("text in Simplified Chinese (Markdown)"), blank=True)
    position = models.PositiveSmallIntegerField(_("position in the footer"), default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "title"]
        verbose_name = _("footer page")
        verbose_name_plural = _("footer pages")

    def __str__(self) -> str:
        return self.title

    @property
    def localized_title(self) -> str:
        return (self.title_zh_hans if _in_chinese() else "") or self.title

    @property
    def localized_body(self) -> str:
        return (self.body_zh_hans if _in_chinese() else "") or self.body


# Staff: long actions run as tasks, and the sign-in record ------------------------------------------------------


class StaffJobKind(models.TextChoices):
    REFUND_ORDERS = "refund_orders", _("Refund orders in full")
    EXPORT_KEYS = "export_keys", _("Export unsold keys")
    LOCK_KEYS = "lock_keys", _("Lock keys")
    UNLOCK_KEYS = "unlock_keys", _("Unlock keys")
    RETIRE_KEYS = "retire_keys", _("Retire keys")
    BACKTEST = "backtest", _("Backtest the risk rules")


class StaffJobStatus(models.TextChoices):
    PENDING = "pending", _("Waiting")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class StaffJob(models.Model):
    """A long staff action (refunds of many orders, a key export, a bulk key change) run as a task, with progress.

    Works like a key import (fulfillment.KeyImport): the run commits its progress item by item (or batch by
    batch) with a heartbeat, a run that died is resumed after its last committed item, and the admin page of the
    job refreshes itself until it is done. storefront.flow.staff_jobs runs it.
    """

    kind = models.CharField(max_length=20, choices=StaffJobKind.choices)
    status = models.CharField(max_length=10, choices=StaffJobStatus.choices, default=StaffJobStatus.PENDING)
    created_by = models.CharField(max_length=100)
    # What the job works through, in order (order or key ids), and what it was asked (a reason, a product).
    targets = models.JSONField(default=list, blank=True)
    params = models.JSONField(default=dict, blank=True)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)  # left as they were (already refunded, sold keys, ...)
    failed = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=list, blank=True)  # one line per item that did not simply succeed
    error = models.CharField(max_length=300, blank=True)
    # An export's CSV, encrypted with the key-encryption keys; deleted once downloaded.
    result = models.FileField(upload_to="staff-jobs/", blank=True)
    result_downloaded_at = models.DateTimeField(null=True, blank=True)
    # What a job that computes something found, as JSON: a backtest's comparison (storefront.flow.backtest_job).
    outcome = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("staff job")
        verbose_name_plural = _("staff jobs")
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="staffjob_status_heartbeat")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        if not self.total:  # an export knows its size only once it ran
            return 100 if self.status == StaffJobStatus.DONE else 0
        return int(100 * self.processed / self.total)

    @property
    def running(self) -> bool:
        return self.status in (StaffJobStatus.PENDING, StaffJobStatus.RUNNING)


class StaffSignInKind(models.TextChoices):
    PASSWORD_ACCEPTED = "password_ok", _("Password accepted")
    PASSWORD_REFUSED = "password_failed", _("Password refused")
    VERIFIED = "verified", _("Second factor accepted")
    RECOVERY_CODE_USED = "recovery_code", _("Recovery code used")
    SECOND_FACTOR_REFUSED = "second_factor_failed", _("Second factor refused")
    ENROLLED = "enrolled", _("Second factor set up")
    RECOVERY_CODES_REPLACED = "codes_replaced", _("New recovery codes made")
    SIGNED_OUT = "signed_out", _("Signed out")


class StaffSignIn(models.Model):
    """One step of a staff or reviewer sign-in (password, second factor, set-up, sign-out), kept for audit.

    Written by storefront.twofactor.audit; never edited. `username` is what was typed, so refused attempts at
    accounts that do not exist are kept too.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True)
    kind = models.CharField(max_length=20, choices=StaffSignInKind.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    path = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("staff sign-in")
        verbose_name_plural = _("staff sign-ins")
        indexes = [
            models.Index(fields=["created_at"], name="staffsignin_created"),
            models.Index(fields=["username", "created_at"], name="staffsignin_username_created"),
        ]

    def __str__(self) -> str:
        return f"{self.username}: {self.kind} at {self.created_at:%Y-%m-%d %H:%M:%S}"


# Shopper accounts and privacy (storefront.accounts, storefront.privacy) -----------------------------------------


class ShopperSignInLink(models.Model):
    """One sign-in link mailed to a shopper. Only the token's SHA-256 is kept: the link works once, until
    `expires_at` (storefront.accounts). Rows past their expiry are deleted by the privacy job."""

    token_hash = models.CharField(max_length=64, unique=True)
    email = models.EmailField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["email", "created_at"], name="signinlink_email_created"),
            models.Index(fields=["expires_at"], name="signinlink_expires"),
        ]

    def __str__(self) -> str:
        return f"sign-in link #{self.pk}"


class PrivacyErasure(models.Model):
    """A shopper's request to erase their data (storefront.privacy). Orders still inside the dispute window keep
    what a dispute needs until `erase_after`, when storefront.flow.privacy_jobs erases them; then the address
    itself is blanked and only its digest stays, as the record that the request was carried out."""

    email = models.EmailField(blank=True)
    email_digest = models.CharField(max_length=64, db_index=True)
    requested_at = models.DateTimeField()
    erase_after = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        indexes = [models.Index(fields=["completed_at", "erase_after"], name="privacyerasure_due")]

    def __str__(self) -> str:
        return f"erasure #{self.pk} ({'done' if self.completed_at else 'pending'})"


from storefront.integration_models import (  # noqa: E402,F401  (merchant API keys and outbound webhooks)
    DeliveryStatus,
    MerchantApiCall,
    MerchantApiKey,
    MerchantApiScope,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
