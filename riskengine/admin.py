from django.contrib import admin

from riskengine.models import RiskAssessment


@admin.register(RiskAssessment)
class RiskAssessmentAdmin(admin.ModelAdmin):
    list_display = ("order", "decision", "score", "created_at")
    list_filter = ("decision",)
    readonly_fields = ("order", "decision", "score", "reasons", "created_at")

    def has_add_permission(self, request):
        return False
