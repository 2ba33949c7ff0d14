from django.db import models
from django.utils.translation import gettext_lazy as _


class RiskDecision(models.TextChoices):
    APPROVE = "approve", _("Approve")
    REVIEW = "review", _("Review")
    DECLINE = "decline", _("Decline")


class RiskAssessment(models.Model):
    """The risk engine's verdict on a paid order, with every reason that led to it."""

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="risk_assessments")
    decision = models.CharField(max_length=10, choices=RiskDecision.choices)
    score = models.PositiveSmallIntegerField(default=0)
    reasons = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.decision} ({self.score})"
