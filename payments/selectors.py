"""Reads for payments: the fee report, channel summaries for admin, Stripe.js per channel."""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce, TruncMonth
from django.utils import timezone

from payments.models import Dispute, Payment, PaymentChannel, PaymentStatus, Refund, RefundStatus


def stripe_js_url(channel: PaymentChannel) -> str:
    """Stripe.js for this channel: localstripe's stand-in when the channel talks to one, else Stripe's."""
    base = channel.api_base or settings.STRIPE_API_BASE  # an address means localstripe (demo, tests)
    return base.rstrip("/") + "/js.stripe.com/v3/" if base else settings.STRIPE_JS_URL


@dataclass(frozen=True)
class FeeRow:
    channel: str
    month: str  # YYYY-MM
    currency: str
    payments: int
    volume: int
    fees: int  # actual where the provider said, else expected
    fees_estimated: int  # how many of the payments' fees are expected, not reported
    refunds: int
    refunded: int
    disputes: int

    @property
    def effective_rate(self) -> Decimal | None:
        """Fees as a percent of volume, fixed per-payment fees included."""
        return None if not self.volume else (Decimal(self.fees) * 100 / self.volume).quantize(Decimal("0.01"))

    @property
    def dispute_rate(self) -> Decimal | None:
        return None if not self.payments else (Decimal(self.disputes) * 100 / self.payments).quantize(Decimal("0.01"))


def fee_report(*, months: int = 12) -> list[FeeRow]:
    """Per channel, month and currency over the last `months` months: payments, volume, fees, effective rate,
    refunds and disputes.

    Refunds and disputes are counted in the month of the payment they belong to, so the rates compare
    like with like (what share of one month's payments came back).
    """
    since = (timezone.now() - timedelta(days=31 * (months - 1))).replace(day=1, hour=0, minute=0, second=0)
    paid = Payment.objects.filter(
        status__in=[PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED], duplicate=False, succeeded_at__gte=since
    )
    rows = (
        paid.annotate(month=TruncMonth("succeeded_at"))
        .values("channel__code", "month", "currency")
        .annotate(
            payments=Count("pk"),
            volume=Sum(Coalesce("amount_received", "amount")),
            fees=Sum(Coalesce("actual_fee", "expected_fee", 0)),
            estimated=Count("pk", filter=Q(actual_fee__isnull=True)),
        )
        .order_by("-month", "channel__code", "currency")
    )
    refunds = {
        (r["payment__channel__code"], r["month"], r["currency"]): r
        for r in Refund.objects.filter(status=RefundStatus.SUCCEEDED, payment__duplicate=False)
        .annotate(month=TruncMonth("payment__succeeded_at"))
        .values("payment__channel__code", "month", "currency")
        .annotate(n=Count("pk"), total=Sum("amount"))
    }
    disputes = {
        (d["payment__channel__code"], d["month"], d["payment__currency"]): d["n"]
        for d in Dispute.objects.annotate(month=TruncMonth("payment__succeeded_at"))
        .values("payment__channel__code", "month", "payment__currency")
        .annotate(n=Count("pk"))
    }
    report = []
    for row in rows:
        key = (row["channel__code"], row["month"], row["currency"])
        refund = refunds.get(key, {})
        report.append(
            FeeRow(
                channel=row["channel__code"] or "(none)",
                month=row["month"].strftime("%Y-%m") if row["month"] else "",
                currency=row["currency"],
                payments=row["payments"],
                volume=row["volume"] or 0,
                fees=row["fees"] or 0,
                fees_estimated=row["estimated"],
                refunds=refund.get("n", 0),
                refunded=refund.get("total", 0) or 0,
                disputes=disputes.get(key, 0),
            )
        )
    return report
