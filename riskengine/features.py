"""The risk model's view of an order: plain numbers, named in FEATURES (the model's schema, in order).

Computed at the paid-stage decision and stored with it (RiskAssessment.features), so a model is trained on
what was known when each order was decided and never on what was learnt since. Nothing is read twice: the
velocity counts come in the rules' one batched round trip (services merges feature_requests into theirs),
and the fraud links and the customer's history are those the rules already fetched in this evaluation
(the signals' memo). Values are stored as they are (an amount, a count, a share); the model scales them.
"""

from disposable_email_domains import blocklist as disposable_domains

from riskengine.models import RiskRule, RuleType
from riskengine.rules import current_config, history_average, link_nodes, link_weight, memoized
from riskengine.selectors import fraud_links
from riskengine.signals import Signals, identifiers
from riskengine.velocity import Request, velocity_counts_many

HOUR, DAY = 3600, 24 * 3600
# (metric, counted by, window seconds, window as named): fixed, so every stored vector means the same thing.
VELOCITY = (
    ("orders", "email", HOUR, "1h"),
    ("orders", "email", DAY, "24h"),
    ("orders", "device", HOUR, "1h"),
    ("orders", "device", DAY, "24h"),
    ("orders", "card", HOUR, "1h"),
    ("orders", "card", DAY, "24h"),
    ("distinct_emails", "card", 30 * DAY, "30d"),
    ("distinct_emails", "device", 7 * DAY, "7d"),
    ("distinct_cards", "email", DAY, "24h"),
    ("distinct_cards", "device", DAY, "24h"),
    ("distinct_cards", "ip", DAY, "24h"),
    ("failed_payments", "email", HOUR, "1h"),
    ("failed_payments", "device", HOUR, "1h"),
    ("failed_payments", "ip", HOUR, "1h"),
    ("failed_payments", "card", HOUR, "1h"),
)
VELOCITY_NAMES = {(metric, kind, window): f"{metric}_per_{kind}_{label}" for metric, kind, window, label in VELOCITY}

# What staff read in a reason: "radar score 62 (+1.4)".
LABELS = {
    "amount": "amount",
    "units": "items",
    "lines": "order lines",
    "high_risk_product": "high-risk product",
    "disposable_email": "disposable email",
    "free_mail": "free-mail address",
    "email_local_length": "email name length",
    "email_digit_share": "share of digits in the email name",
    "email_no_separator": "email name without . _ -",
    "ip_card_country_differ": "IP country differs from card's",
    "ip_billing_country_differ": "IP country differs from billing",
    "card_billing_country_differ": "card country differs from billing",
    "radar_score": "radar score",
    "radar_level": "radar level",
    "radar_missing": "no radar assessment",
    "paid_before": "paid before",
    "amount_to_average": "amount to customer's average",
    **{name: name.replace("_per_", " per ").replace("_", " ") for name in VELOCITY_NAMES.values()},
    "linked_fraud_weight": "link to a fraud order",
    "linked_fraud_orders": "linked fraud orders",
}
FEATURES: tuple[str, ...] = tuple(LABELS)

# Large free mailbox providers: anyone can open any number of addresses there.
FREE_MAIL = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "ymail.com", "hotmail.com",
        "hotmail.co.uk", "hotmail.fr", "outlook.com", "live.com", "msn.com", "aol.com", "icloud.com", "me.com",
        "mail.com", "gmx.com", "gmx.de", "gmx.net", "web.de", "yandex.ru", "yandex.com", "mail.ru", "qq.com",
        "163.com", "126.com", "protonmail.com", "proton.me", "pm.me", "zoho.com", "tutanota.com",
    }
)  # fmt: skip
RADAR_LEVELS = {"normal": 0, "elevated": 1, "highest": 2}
SEPARATORS = frozenset("._-")


def feature_requests(signals: Signals) -> list[Request]:
    """The velocity counts the features need, to be fetched with the rules' in one round trip."""
    ids = identifiers(signals)
    return [(metric, kind, ids[kind], window) for metric, kind, window, _ in VELOCITY if kind in ids]


def _velocity(signals: Signals) -> dict[str, float]:
    wanted = feature_requests(signals)
    batch = signals.memo.get("velocity") if signals.memo.get("evaluating") else None
    counts = batch[0] if batch is not None and all(r in batch[0] for r in wanted) else velocity_counts_many(wanted)[0]
    found = {
        VELOCITY_NAMES[(m, kind, window)]: float(counts[(m, kind, value, window)]) for m, kind, value, window in wanted
    }
    return {name: found.get(name, 0.0) for name in VELOCITY_NAMES.values()}


def _email(signals: Signals) -> dict[str, float]:
    local = signals.email.rpartition("@")[0]
    digits = sum(ch.isdigit() for ch in local)
    return {
        "disposable_email": float(signals.email_domain in disposable_domains),
        "free_mail": float(signals.email_domain in FREE_MAIL),
        "email_local_length": float(len(local)),
        "email_digit_share": round(digits / len(local), 4) if local else 0.0,
        "email_no_separator": float(bool(local) and not SEPARATORS & set(local)),
    }


def _differ(a: str, b: str) -> float:
    return float(bool(a and b and a != b))


def _linked_fraud(signals: Signals) -> dict[str, float]:
    """The strongest link to a fraud-labelled order, weighed as the linked_fraud rule's defaults weigh it (an IP
    counts 0.3, a second hop 0.6 of the first) and not as staff tuned the rule: a feature must keep its meaning.
    The walk is the one the rule memoizes (one walk up to two hops), so it runs once per evaluation."""
    fraud = current_config(signals).fraud_identifiers
    links = memoized(
        signals, "fraud_links", lambda: fraud_links(order_id=signals.order_id, ids=link_nodes(signals), fraud=fraud)
    )
    flagged = [link for link in links if link.fraud]
    if not flagged:
        return {"linked_fraud_weight": 0.0, "linked_fraud_orders": 0.0}
    defaults = RiskRule(type=RuleType.LINKED_FRAUD, params={})
    weight = max(link_weight(defaults, link.path) for link in flagged)
    return {"linked_fraud_weight": round(weight, 4), "linked_fraud_orders": float(len(flagged))}


def features_for(signals: Signals) -> dict[str, float]:
    """The order's features, every name of FEATURES, as numbers."""
    radar = signals.radar or {}
    score = radar.get("risk_score")
    has_score = isinstance(score, int | float) and not isinstance(score, bool)
    average = history_average(signals)
    values = {
        "amount": float(signals.amount),
        "units": float(signals.units),
        "lines": float(len(signals.product_ids)),
        "high_risk_product": float(bool(signals.high_risk_products)),
        **_email(signals),
        "ip_card_country_differ": _differ(signals.ip_country, signals.card_country),
        "ip_billing_country_differ": _differ(signals.ip_country, signals.billing_country),
        "card_billing_country_differ": _differ(signals.card_country, signals.billing_country),
        "radar_score": float(score) if has_score else 0.0,
        "radar_level": float(RADAR_LEVELS.get(radar.get("risk_level") or "", 0)),
        "radar_missing": float(not has_score and not radar.get("risk_level")),
        "paid_before": float(average is not None),
        "amount_to_average": round(min(100.0, signals.amount / average), 4) if average else 0.0,
        **_velocity(signals),
        **_linked_fraud(signals),
    }
    return {name: values[name] for name in FEATURES}
