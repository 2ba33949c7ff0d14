from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from fulfillment.imports import key_import_resume
from fulfillment.models import ImportStatus, KeyEvent, KeyImport, LicenseKey
from storefront.admin.base import ReadOnlyAdmin
from storefront.admin.staff import start_job
from storefront.models import StaffJobKind


class KeyEventInline(admin.TabularInline):
    """The key's audit trail, oldest first; read-only."""

    model = KeyEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "type", "actor", "order")
    readonly_fields = fields
    verbose_name = "event"
    verbose_name_plural = "audit trail"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(LicenseKey)
class LicenseKeyAdmin(admin.ModelAdmin):
    """Keys are listed by status and owner only: neither the secret nor its ciphertext is ever shown here.

    Merchants lock, unlock or retire unsold keys (a staff job calling keys_set_state in batches); sold and
    reserved keys are left alone.
    Keys are never deleted (that would erase their audit trail): retire them instead.
    """

    list_display = ("id", "product", "status", "note", "order_line", "reserved_until", "sold_at", "created_at")
    list_filter = ("status", "product")
    list_select_related = ("product", "order_line")
    fields = (
        "product",
        "status",
        "note",
        "order_line",
        "unit_index",
        "reserved_for",
        "reserved_until",
        "sold_at",
        "created_at",
    )
    readonly_fields = fields
    inlines = [KeyEventInline]
    actions = ["lock_keys", "unlock_keys", "retire_keys"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _set_state(self, request, queryset, kind: str):
        """Started as a staff job: a selection of every key in the pool is changed batch by batch by a task."""
        key_ids = list(queryset.order_by("pk").values_list("pk", flat=True))
        job = start_job(request, kind=kind, targets=key_ids)
        return HttpResponseRedirect(reverse("admin:storefront_staffjob_progress", args=[job.pk]))

    @admin.action(description="Lock selected keys (hold back from sale)", permissions=["change"])
    def lock_keys(self, request, queryset):
        return self._set_state(request, queryset, StaffJobKind.LOCK_KEYS)

    @admin.action(description="Unlock selected keys (back on sale)", permissions=["change"])
    def unlock_keys(self, request, queryset):
        return self._set_state(request, queryset, StaffJobKind.UNLOCK_KEYS)

    @admin.action(description="Retire selected keys (never sell)", permissions=["change"])
    def retire_keys(self, request, queryset):
        return self._set_state(request, queryset, StaffJobKind.RETIRE_KEYS)


@admin.register(KeyImport)
class KeyImportAdmin(ReadOnlyAdmin):
    """Bulk imports and their reports, read-only. The uploaded file is never offered here (keys in clear)."""

    list_display = (
        "id",
        "product",
        "status",
        "progress",
        "total_lines",
        "added",
        "duplicates_in_file",
        "duplicates_existing",
        "blank",
        "too_long",
        "created_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "product")
    list_select_related = ("product",)
    fields = (
        "product",
        "status",
        "delimiter",
        "created_by",
        "total_lines",
        "processed_lines",
        "added",
        "duplicates_in_file",
        "duplicates_existing",
        "blank",
        "too_long",
        "error",
        "created_at",
        "heartbeat_at",
        "finished_at",
    )
    readonly_fields = fields
    actions = ["resume_imports"]

    @admin.action(description="Resume selected unfinished imports (failed or stalled)", permissions=["resume"])
    def resume_imports(self, request, queryset):
        """Failed imports, and ones whose run died (a killed worker) without waiting for the stalled-import job.
        Resuming carries on after the last committed batch; an import still running is not harmed."""
        unfinished = list(queryset.exclude(status=ImportStatus.DONE).values_list("pk", flat=True))
        for import_id in unfinished:
            key_import_resume(import_id=import_id)
        self.message_user(request, f"{len(unfinished)} import(s) resumed after their last committed batch.")
        if len(unfinished) < queryset.count():
            self.message_user(request, "Finished imports were left alone.", messages.WARNING)

    def has_resume_permission(self, request):
        return request.user.has_perm("fulfillment.add_licensekey")

    @admin.display(description="progress")
    def progress(self, obj):
        url = reverse("admin:catalog_product_key_import", args=[obj.pk])
        return format_html('<a href="{}">{}%</a>', url, obj.percent)
