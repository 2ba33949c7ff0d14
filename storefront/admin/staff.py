"""Staff jobs (long admin actions run as tasks, storefront.flow.staff_jobs) and the staff sign-in record.

The admin actions that start a job return at once with a message and a link to the job's page, which refreshes
itself until the job is done, like a key import's. A job's page is for whoever started it, and for staff who
may view staff jobs; an export's file is downloaded once, by whoever started it, while they may still export.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _

from storefront.admin.base import ReadOnlyAdmin
from storefront.flow.staff_jobs import ExportGone, staff_job_export_take, staff_job_resume, staff_job_start
from storefront.models import StaffJob, StaffJobKind, StaffJobStatus, StaffSignIn

EXPORT_PERMISSION = "fulfillment.export_keys"


def actor_of(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


def start_job(
    request: HttpRequest, *, kind: str, targets: list[int] | None = None, params: dict | None = None
) -> StaffJob:
    """Start a staff job for this request's user and tell them where to follow it."""
    job = staff_job_start(kind=kind, actor=actor_of(request), targets=targets, params=params)
    url = reverse("admin:storefront_staffjob_progress", args=[job.pk])
    messages.info(
        request,
        format_html(
            '{} <a href="{}">{}</a>',
            _("%(job)s started; it runs in the background.") % {"job": job.get_kind_display()},
            url,
            _("Follow its progress"),
        ),
    )
    return job


@admin.register(StaffJob)
class StaffJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "status", "progress", "succeeded", "skipped", "failed", "created_by", "created_at")
    list_filter = ("kind", "status")
    fields = (
        "kind",
        "status",
        "created_by",
        "total",
        "processed",
        "succeeded",
        "skipped",
        "failed",
        "error",
        "created_at",
        "heartbeat_at",
        "finished_at",
        "result_downloaded_at",
    )
    readonly_fields = fields
    actions = ["resume_jobs"]

    @admin.display(description="progress")
    def progress(self, job: StaffJob) -> str:
        url = reverse("admin:storefront_staffjob_progress", args=[job.pk])
        return format_html('<a href="{}">{}%</a>', url, job.percent)

    @admin.action(description="Resume selected unfinished jobs (failed or stalled)", permissions=["view"])
    def resume_jobs(self, request, queryset):
        """Carries on after the last committed item; a refund already made is never made again."""
        unfinished = list(queryset.exclude(status=StaffJobStatus.DONE).values_list("pk", flat=True))
        for job_id in unfinished:
            staff_job_resume(job_id=job_id)
        self.message_user(request, f"{len(unfinished)} job(s) resumed after their last committed item.")

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:job_id>/progress/", wrap(self.progress_view), name="storefront_staffjob_progress"),
            path("<int:job_id>/download/", wrap(self.download_view), name="storefront_staffjob_download"),
            *super().get_urls(),
        ]

    def _visible_job(self, request: HttpRequest, job_id: int) -> StaffJob:
        job = get_object_or_404(StaffJob, pk=job_id)
        if job.created_by != actor_of(request) and not self.has_view_permission(request):
            raise PermissionDenied
        return job

    @staticmethod
    def _may_download(request: HttpRequest, job: StaffJob) -> bool:
        return (
            job.kind == StaffJobKind.EXPORT_KEYS
            and job.created_by == actor_of(request)
            and request.user.has_perm(EXPORT_PERMISSION)
        )

    def progress_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        job = self._visible_job(request, job_id)
        downloadable = job.status == StaffJobStatus.DONE and bool(job.result) and self._may_download(request, job)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{job.get_kind_display()} #{job.pk}",
            "job": job,
            "can_list": self.has_view_permission(request),
            "download_url": reverse("admin:storefront_staffjob_download", args=[job.pk]) if downloadable else "",
            "back_url": _back_url(job),
        }
        return TemplateResponse(request, "admin/storefront/staff_job.html", context)

    def download_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        job = self._visible_job(request, job_id)
        if request.method != "POST" or not self._may_download(request, job):
            raise PermissionDenied
        try:
            body = staff_job_export_take(job_id=job.pk, actor=actor_of(request))
        except ExportGone:
            messages.error(request, _("This export was downloaded already, or is not finished."))
            return HttpResponseRedirect(reverse("admin:storefront_staffjob_progress", args=[job.pk]))
        response = HttpResponse(body, content_type="text/csv; charset=utf-8")
        slug = job.params.get("slug") or f"product-{job.params.get('product')}"
        filename = f"{slug}-unsold-keys-{timezone.localtime(job.finished_at or timezone.now()):%Y%m%d-%H%M}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "no-store"
        return response


def _back_url(job: StaffJob) -> str:
    if job.kind == StaffJobKind.REFUND_ORDERS:
        return reverse("admin:orders_order_changelist")
    if job.kind == StaffJobKind.EXPORT_KEYS:
        return reverse("admin:catalog_product_change", args=[job.params.get("product")])
    if job.kind == StaffJobKind.BACKTEST:
        return reverse("review:backtest_job", args=[job.pk])
    return reverse("admin:fulfillment_licensekey_changelist")


@admin.register(StaffSignIn)
class StaffSignInAdmin(ReadOnlyAdmin):
    """Every sign-in step of staff and reviewers: passwords accepted and refused, second factors, set-ups."""

    list_display = ("created_at", "username", "kind", "ip", "path")
    list_filter = ("kind",)
    search_fields = ("username", "ip")
    date_hierarchy = "created_at"
    fields = ("created_at", "username", "user", "kind", "ip", "user_agent", "path")
    readonly_fields = fields
