"""The risk seam: every paid order is assessed here before anything is released."""

from dataclasses import dataclass

from orders.models import Order
from riskengine.models import RiskAssessment, RiskDecision


@dataclass(frozen=True)
class RiskReason:
    rule: str
    points: int
    detail: str


def risk_assess_order(*, order: Order) -> RiskAssessment:
    """Decide approve / review / decline for a paid order and store the assessment.

    The rule engine arrives with its own issue; until then every order is approved with
    score 0 and no reasons, through the same seam the rules will use.
    """
    reasons: list[RiskReason] = []
    score = min(100, sum(r.points for r in reasons))
    return RiskAssessment.objects.create(
        order=order,
        decision=RiskDecision.APPROVE,
        score=score,
        reasons=[r.__dict__ for r in reasons],
    )
