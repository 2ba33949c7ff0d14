from django import template

from payments.money import exponent

register = template.Library()


@register.simple_tag
def money(amount: int, currency: str) -> str:
    """Format integer minor units, e.g. 1999 USD -> 'USD 19.99', 500 JPY -> 'JPY 500'."""
    currency = (currency or "").upper()
    places = exponent(currency)
    whole, fraction = divmod(abs(amount), 10**places)
    sign = "-" if amount < 0 else ""
    return f"{currency} {sign}{whole:,}" + (f".{fraction:0{places}d}" if places else "")
