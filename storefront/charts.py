"""Charts drawn by the server: the geometry of SVG bar charts, laid out by templates with no script.

The risk metrics page (/review/metrics/) and the merchant dashboard (/admin/dashboard/) share it: each bar has a
position, a size and a title (the tooltip), and a chart may carry dashed lines for levels such as the card
networks' dispute early-warning lines (riskengine.metrics.DISPUTE_THRESHOLDS).
"""

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    value: float
    title: str
    over: bool = False  # drawn in the warning colour


def bar_chart(
    bars: Sequence[Bar], *, width: int = 480, height: int = 160, lines: dict[str, float] | None = None, gap: int = 8
) -> dict:
    """Bars scaled to the tallest bar (or one and a half times the highest line), with the lines across."""
    lines = lines or {}
    peak = max([bar.value for bar in bars] + [max(lines.values(), default=0) * 1.5]) or 1
    slot = width / max(len(bars), 1)

    def y(value: float) -> float:
        return round(height - value / peak * height, 1)

    return {
        "width": width,
        "height": height,
        "bars": [
            {
                "x": round(index * slot + gap / 2, 1),
                "width": round(max(slot - gap, 1), 1),
                "y": y(bar.value),
                "height": round(height - y(bar.value), 1),
                "over": bar.over,
                "title": bar.title,
            }
            for index, bar in enumerate(bars)
        ],
        "lines": [{"network": name, "percent": value, "y": y(value)} for name, value in lines.items()],
    }


def dispute_chart(months, thresholds, *, width: int = 480, height: int = 160) -> dict:
    """Bars of each month's dispute ratio (riskengine.metrics.MonthDisputes) with the networks' warning lines."""
    levels = {network: float(level * 100) for network, level in thresholds.items()}
    bars = [
        Bar(
            value=month.percent or 0,
            title=f"{month.month:%Y-%m}: {month.disputes} disputes / {month.paid_orders} paid",
            over=bool(month.over),
        )
        for month in months
    ]
    return bar_chart(bars, width=width, height=height, lines=levels)
