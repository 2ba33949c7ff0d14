"""Money as integer minor units plus an ISO 4217 code, and the decimal strings some providers speak."""

from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

# Currencies whose minor unit is not the cent. Everything else has two decimals.
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "HUF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "TWD", "UGX",
                          "VND", "VUV", "XAF", "XOF", "XPF"})  # fmt: skip
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


class MoneyError(ValueError):
    """An amount that is not a valid sum of money in its currency."""


def exponent(currency: str) -> int:
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def to_decimal_string(amount: int, currency: str) -> str:
    """1999 USD -> '19.99'; 500 JPY -> '500'."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise MoneyError(f"amount must be an integer of minor units, not {amount!r}")
    places = exponent(currency)
    value = Decimal(amount).scaleb(-places)
    return f"{value:.{places}f}"


# Far beyond any payment (PostgreSQL's bigint), and within exact Decimal arithmetic at _EXACT's precision.
MAX_MINOR_UNITS = 2**63 - 1
_EXACT = Context(prec=60)


def from_decimal_string(value: str, currency: str) -> int:
    """'19.99' USD -> 1999. Refuses more decimals than the currency has, sums too large to be a payment,
    and anything not a number. Exact: nothing is rounded on the way."""
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise MoneyError(f"{value!r} is not an amount") from None
    if not number.is_finite():
        raise MoneyError(f"{value!r} is not an amount")
    if number != 0 and number.adjusted() > 20:  # checked before any arithmetic: 1e999999999 never overflows
        raise MoneyError(f"{value!r} is too large to be an amount")
    digits, exp = number.as_tuple().digits, number.as_tuple().exponent
    if number != 0 and -exp > exponent(currency) and any(digits[len(digits) + exp + exponent(currency) :]):
        raise MoneyError(f"{value!r} has more decimals than {currency.upper()} allows")
    minor = number.scaleb(exponent(currency), context=_EXACT)
    if minor != minor.to_integral_value(context=_EXACT) or abs(minor) > MAX_MINOR_UNITS:
        raise MoneyError(f"{value!r} is not an amount in {currency.upper()}")
    return int(minor)


def percent_of(amount: int, percent: Decimal) -> int:
    """`percent` % of `amount` minor units, rounded half up to a whole minor unit."""
    return int((Decimal(amount) * Decimal(percent) / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
