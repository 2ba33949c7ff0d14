from django import template

register = template.Library()

ZERO_DECIMAL = {"JPY", "KRW", "VND", "CLP", "ISK", "HUF", "TWD", "UGX", "XAF", "XOF"}


@register.simple_tag
def money(amount: int, currency: str) -> str:
    """Format integer minor units, e.g. 1999 USD -> 'USD 19.99'."""
    currency = (currency or "").upper()
    if currency in ZERO_DECIMAL:
        return f"{currency} {amount:,}"
    return f"{currency} {amount // 100:,}.{amount % 100:02d}"
