"""Rule evaluators: one function per rule type, each returning a Hit (with its reason) or None.

Parameters per type (RiskRule.params), with defaults:
- blocklist: {} (any identifier on the blocklist; decides alone)
- velocity: {"metric": "orders|failed_payments|distinct_cards|distinct_emails", "by": ["email", "ip", "device",
  "card"], "window_minutes": 60, "threshold": 3}  fires when a count exceeds the threshold
- disposable_email: {}
- country_mismatch: {"compare": ["card", "billing"]}
- amount_vs_history: {"multiple": 3, "first_purchase_max": 10000}  (minor units)
- high_risk_product: {}
- linked_fraud: {"hops": 2, "weights": {"email": 1, "device": 1, "card": 1, "ip": 0.3}, "second_hop": 0.6}
  (the rule's points times the strongest link's weight: an IP is shared by offices and carriers, so a link
  through it alone weighs little and never declines)
- radar: {"levels": ["elevated"]} or {"score_from": 25, "score_to": 90}: the rule's points when Radar's
  risk level is listed; with score_from (and no levels unless given), points rising with Radar's risk_score
  from score_from to score_to. Radar's manual_review holds and highest declines regardless (see services).
- email_pattern: {"skip_disposable": true}  a made-up mailbox name (see looks_made_up)
- amount_vs_product: {"days": 60}  more units of a product than its orders of those days usually take
- trusted_customer: {"min_days": 1}  takes the rule's points off: same email and card delivered that long
  ago, no order of either marked as fraud (riskengine.history)
- coupon_abuse: {"threshold": 1, "days": 30}  the order's coupon redeemed from its device or card under more
  than `threshold` other mailboxes in those days (coupon farmers, 羊毛党: many emails, one browser or card)
IP addresses behind which several good customers bought (riskengine.history.ip_good_customers) count for
neither velocity nor links to fraud.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from django.db.models import Q

from riskengine.asof import as_of_now
from riskengine.config import RiskConfig, list_entries_known, risk_config, risk_config_as_of
from riskengine.coupons import coupon_other_mailboxes
from riskengine.history import customer_trusted_since, ip_good_customers, product_usual_units
from riskengine.models import ListKind, RiskRule, RuleType
from riskengine.selectors import customer_average_paid, fraud_links
from riskengine.signals import Signals, email_key, identifiers
from riskengine.velocity import velocity_counts


@dataclass(frozen=True)
class Hit:
    rule: str
    type: str
    points: int
    reason: str
    values: dict = field(default_factory=dict)
    hard: bool = False  # decides alone (blocklist)

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "type": self.type,
            "points": self.points,
            "reason": self.reason,
            "values": self.values,
            "hard": self.hard,
        }


@lru_cache(maxsize=1)
def _disposable_domains() -> frozenset[str]:
    from disposable_email_domains import blocklist

    return frozenset(blocklist)


def memoized(s: Signals, key, compute):
    """Compute once per evaluation (risk_evaluate marks the memo); outside one, always fresh."""
    if not s.memo.get("evaluating"):
        return compute()
    if key not in s.memo:
        s.memo[key] = compute()
    return s.memo[key]


def current_config(s: Signals) -> RiskConfig:
    """The rules' view of lists and fraud identifiers: fetched once per evaluation (or given to it).

    Inside riskengine.asof.as_of(moment), the lists and fraud identifiers as they stood then."""
    moment = as_of_now()
    return memoized(s, "config", risk_config if moment is None else lambda: risk_config_as_of(moment))


def list_matches(signals: Signals, *, allow: bool) -> list[str]:
    """Which of the order's identifiers are on the block (or allow) list, as 'kind value'."""
    return memoized(signals, "lists", lambda: _list_matches_both(signals, current_config(signals)))[allow]


def _list_matches_both(signals: Signals, config: RiskConfig) -> dict[bool, list[str]]:
    """Block and allow matches from the cached lists (or one query when they are too long to hold)."""
    wanted = {
        ListKind.EMAIL: signals.email,
        ListKind.EMAIL_DOMAIN: signals.email_domain,
        ListKind.DEVICE: signals.device_id,
        ListKind.CARD: signals.card_fingerprint,
    }
    matches: dict[bool, list[str]] = {True: [], False: []}
    if config.exact_lists is None:
        query = Q()
        for kind, value in wanted.items():
            if value:
                query |= Q(kind=kind, value__iexact=value)
        if query:
            for allow, kind, value in list_entries_known().filter(query).values_list("allow", "kind", "value"):
                matches[allow].append(f"{kind} {value}")
    else:
        for kind, value in wanted.items():
            for allow, listed in config.exact_lists.get((kind, value.casefold()), []) if value else []:
                matches[allow].append(f"{kind} {listed}")
    if signals.ip:
        for allow, networks in config.ip_lists.items():
            matches[allow] += [f"ip {text}" for text in networks.matches(signals.ip)]
    return matches


def rule_blocklist(rule: RiskRule, s: Signals) -> Hit | None:
    matches = list_matches(s, allow=False)
    if not matches:
        return None
    return Hit(rule.name, rule.type, rule.points, f"On the blocklist: {', '.join(matches)}", {"matches": matches}, True)


def velocity_requests(rules: list[RiskRule], s: Signals) -> list[tuple[str, str, str, int]]:
    """Every count the velocity rules will ask for, so they can be fetched in one round trip."""
    wanted = []
    for rule in rules:
        if rule.type != RuleType.VELOCITY:
            continue
        p = rule.params
        window = int(p.get("window_minutes", 60)) * 60
        for kind, value in identifiers(s).items():
            if kind in p.get("by", ["email", "ip", "device", "card"]):
                wanted.append((p.get("metric", "orders"), kind, value, window))
    return wanted


def rule_velocity(rule: RiskRule, s: Signals) -> Hit | None:
    p = rule.params
    metric = p.get("metric", "orders")
    window = int(p.get("window_minutes", 60))
    threshold = int(p.get("threshold", 3))
    ids = {k: v for k, v in identifiers(s).items() if k in p.get("by", ["email", "ip", "device", "card"])}
    if not ids:
        return None
    batch = s.memo.get("velocity") if s.memo.get("evaluating") else None
    if batch is not None and all((metric, k, v, window * 60) in batch[0] for k, v in ids.items()):
        counts = {k: batch[0][(metric, k, v, window * 60)] for k, v in ids.items()}
        source = batch[1]
    else:
        counts, source = velocity_counts(metric=metric, ids=ids, window_seconds=window * 60)
    over = {k: n for k, n in counts.items() if n > threshold}
    shared_ip = "ip" in over and ip_is_shared(s)
    if shared_ip:  # an office's or a carrier's address: its crowd is not one shopper's velocity
        over.pop("ip")
    if not over:
        return None
    worst = max(over, key=over.get)
    reason = f"{over[worst]} {metric.replace('_', ' ')} by this {worst} in {window} min (limit {threshold})"
    return Hit(rule.name, rule.type, rule.points, reason, {"counts": counts, "source": source})


def rule_disposable_email(rule: RiskRule, s: Signals) -> Hit | None:
    if s.email_domain not in _disposable_domains():
        return None
    return Hit(
        rule.name, rule.type, rule.points, f"Disposable email domain {s.email_domain}", {"domain": s.email_domain}
    )


def rule_country_mismatch(rule: RiskRule, s: Signals) -> Hit | None:
    if not s.ip_country:
        return None
    compare = rule.params.get("compare", ["card", "billing"])
    others = {"card": s.card_country, "billing": s.billing_country}
    differs = {k: v for k, v in others.items() if k in compare and v and v != s.ip_country}
    if not differs:
        return None
    what = ", ".join(f"{k} country {v}" for k, v in differs.items())
    return Hit(
        rule.name,
        rule.type,
        rule.points,
        f"IP country {s.ip_country} differs from {what}",
        {"ip_country": s.ip_country, **differs},
    )


def history_average(s: Signals) -> float | None:
    """The customer's average paid order in this currency (None: never paid before), once per evaluation."""

    return memoized(
        s,
        "history_average",
        lambda: customer_average_paid(email=s.email, currency=s.currency, excluding_order_id=s.order_id),
    )


def paid_before(s: Signals) -> bool:
    return history_average(s) is not None


def rule_amount_vs_history(rule: RiskRule, s: Signals) -> Hit | None:
    multiple = float(rule.params.get("multiple", 3))
    first_max = int(rule.params.get("first_purchase_max", 10000))
    average = history_average(s)
    if average is None:
        if s.amount > first_max:
            return Hit(
                rule.name,
                rule.type,
                rule.points,
                f"First purchase of {s.amount} is over {first_max} ({s.currency})",
                {"amount": s.amount, "first_purchase_max": first_max},
            )
        return None
    if s.amount > average * multiple:
        return Hit(
            rule.name,
            rule.type,
            rule.points,
            f"Amount {s.amount} is over {multiple:g}x this customer's average {average:.0f}",
            {"amount": s.amount, "average": round(average), "multiple": multiple},
        )
    return None


def rule_high_risk_product(rule: RiskRule, s: Signals) -> Hit | None:
    if not s.high_risk_products:
        return None
    return Hit(
        rule.name,
        rule.type,
        rule.points,
        f"High-risk product: {', '.join(s.high_risk_products)}",
        {"products": list(s.high_risk_products)},
    )


def rule_linked_fraud(rule: RiskRule, s: Signals) -> Hit | None:

    hops = int(rule.params.get("hops", 2))
    fraud = current_config(s).fraud_identifiers
    if hops <= 2:  # one walk answers both depths: its hop-1 links are what a one-hop rule sees
        links = memoized(s, "fraud_links", lambda: fraud_links(order_id=s.order_id, ids=link_nodes(s), fraud=fraud))
        links = [link for link in links if link.hops <= hops]
    else:
        links = memoized(
            s, ("fraud_links", hops), lambda: fraud_links(order_id=s.order_id, ids={}, fraud=fraud, hops=hops)
        )
    flagged = [link for link in links if link.fraud]
    if any(link.path.startswith("ip") for link in flagged) and ip_is_shared(s):
        flagged = [link for link in flagged if not link.path.startswith("ip")]  # many good customers share it
    if not flagged:
        return None
    strongest = max(flagged, key=lambda link: link_weight(rule, link.path))
    points = round(rule.points * link_weight(rule, strongest.path))
    if points <= 0:
        return None
    reason = f"Linked to {len(flagged)} fraud/disputed order(s), e.g. {strongest.number} via {strongest.path}"
    return Hit(rule.name, rule.type, points, reason, {"orders": [link.number for link in flagged[:10]]})


LINK_WEIGHTS = {"email": 1.0, "mailbox": 1.0, "device": 1.0, "card": 1.0, "ip": 0.3}


def link_nodes(s: Signals) -> dict[str, str]:
    """The order's nodes in the fraud graph: its identifiers and its mailbox (see riskengine.config.fraud_nodes)."""
    return {**identifiers(s), "mailbox": email_key(s.email)} if s.email else identifiers(s)


def link_weight(rule: RiskRule, path: str) -> float:
    """How much a link along `path` ("ip", "card -> email") counts: its weakest step, less for each hop."""
    weights = {**LINK_WEIGHTS, **rule.params.get("weights", {})}
    steps = [step.strip() for step in path.split("->")]
    factor = float(rule.params.get("second_hop", 0.6)) ** (len(steps) - 1)
    return min(float(weights.get(step, 1.0)) for step in steps) * factor


def rule_radar(rule: RiskRule, s: Signals) -> Hit | None:
    radar = s.radar or {}
    level, score = radar.get("risk_level") or "", radar.get("risk_score")
    points, reason = 0, ""
    levels = rule.params.get("levels", [] if "score_from" in rule.params else ["elevated"])
    if level and level in levels:
        points, reason = rule.points, f"Stripe Radar risk level {level}"
    if "score_from" in rule.params and isinstance(score, int | float) and not isinstance(score, bool):
        low, high = int(rule.params["score_from"]), int(rule.params.get("score_to", 100))
        share = min(1.0, max(0.0, (score - low) / max(1, high - low)))
        if round(rule.points * share) > points:
            points = round(rule.points * share)
            reason = f"Stripe Radar risk score {score:g} (counts from {low}, in full at {high})"
    if points <= 0:
        return None
    return Hit(rule.name, rule.type, points, reason, {"risk_level": level, "risk_score": score})


_VOWELS = set("aeiouy")


def looks_made_up(local: str) -> bool:
    """Whether a mailbox name looks made by a machine, not a person: digits inside letters ("x7kq2m"), or a
    long name with hardly a vowel. A name with a year or a number at its end ("anna.lee84") does not, nor
    an initial and a surname ("jschmidt")."""
    name = "".join(ch for ch in local.split("+", 1)[0].casefold() if ch not in "._-")
    if any(a.isdigit() and b.isalpha() for a, b in zip(name, name[1:], strict=False)):
        return True
    letters = [ch for ch in name if ch.isalpha()]
    return len(letters) >= 9 and sum(ch in _VOWELS for ch in letters) / len(letters) < 0.15


def rule_email_pattern(rule: RiskRule, s: Signals) -> Hit | None:
    """A made-up mailbox name. A disposable address is made up by nature: the disposable rule counts it."""
    local = s.email.rpartition("@")[0]
    if rule.params.get("skip_disposable", True) and s.email_domain in _disposable_domains():
        return None
    if not looks_made_up(local):
        return None
    return Hit(rule.name, rule.type, rule.points, "The mailbox name looks made up", {"email": s.email})


def rule_amount_vs_product(rule: RiskRule, s: Signals) -> Hit | None:
    """More units of a product than one order of it usually takes (resold gift cards, a stolen card spent)."""

    days = int(rule.params.get("days", 60))
    units: dict[int, int] = {}
    for product_id, count in s.product_units:
        units[product_id] = units.get(product_id, 0) + count
    over = {}
    for product_id, count in units.items():
        usual = product_usual_units(product_id=product_id, excluding_order_id=s.order_id, days=days)
        if count > usual:
            over[product_id] = (count, usual)
    if not over:
        return None
    product_id, (count, usual) = max(over.items(), key=lambda item: item[1][0] - item[1][1])
    reason = f"{count} units of one product; its orders usually take {usual}"
    return Hit(rule.name, rule.type, rule.points, reason, {"product": product_id, "units": count, "usual": usual})


def rule_trusted_customer(rule: RiskRule, s: Signals) -> Hit | None:
    """A returning customer paying with the card of an earlier delivered order and a clean history: the rule's
    points come off the score (never below zero)."""

    days = int(rule.params.get("min_days", 1))
    trusted = memoized(
        s,
        ("trusted", days),
        lambda: customer_trusted_since(
            email=s.email, card_fingerprint=s.card_fingerprint, excluding_order_id=s.order_id, min_days=days
        ),
    )
    if not trusted:
        return None
    reason = f"Returning customer: paid with this card at least {days} day(s) ago, delivered, never disputed"
    return Hit(rule.name, rule.type, -rule.points, reason, {"min_days": days})


def rule_coupon_abuse(rule: RiskRule, s: Signals) -> Hit | None:
    if s.coupon_id is None:
        return None
    threshold, days = int(rule.params.get("threshold", 1)), int(rule.params.get("days", 30))
    ids = {"mailbox": email_key(s.email), "device_id": s.device_id, "card_fingerprint": s.card_fingerprint}
    others = coupon_other_mailboxes(coupon_id=s.coupon_id, order_id=s.order_id, days=days, **ids)
    if not (over := {kind: n for kind, n in others.items() if n > threshold}):
        return None
    worst = max(over, key=over.get)
    reason = f"This coupon was used from this {worst} under {over[worst]} other email(s) in {days} days"
    return Hit(rule.name, rule.type, rule.points, reason, {"other_mailboxes": others, "coupon": s.coupon_id})


def ip_is_shared(s: Signals, *, customers: int = 3) -> bool:
    """Whether the order's IP address is an office's or a carrier's: many good customers bought behind it."""

    if not s.ip:
        return False
    return memoized(s, "ip_good_customers", lambda: ip_good_customers(ip=s.ip)) >= customers


EVALUATORS: dict[str, Callable[[RiskRule, Signals], Hit | None]] = {
    RuleType.BLOCKLIST: rule_blocklist,
    RuleType.VELOCITY: rule_velocity,
    RuleType.DISPOSABLE_EMAIL: rule_disposable_email,
    RuleType.COUNTRY_MISMATCH: rule_country_mismatch,
    RuleType.AMOUNT_VS_HISTORY: rule_amount_vs_history,
    RuleType.HIGH_RISK_PRODUCT: rule_high_risk_product,
    RuleType.LINKED_FRAUD: rule_linked_fraud,
    RuleType.RADAR: rule_radar,
    RuleType.EMAIL_PATTERN: rule_email_pattern,
    RuleType.AMOUNT_VS_PRODUCT: rule_amount_vs_product,
    RuleType.TRUSTED_CUSTOMER: rule_trusted_customer,
    RuleType.COUPON_ABUSE: rule_coupon_abuse,
}
PRE_PAYMENT_TYPES = (RuleType.BLOCKLIST, RuleType.VELOCITY)
