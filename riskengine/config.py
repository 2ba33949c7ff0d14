"""What every assessment reads but staff change rarely, kept per process and checked with one query.

Rules, thresholds, the block and allow lists, and the identifiers of fraud-labelled orders are loaded once and
reused while one small query says nothing changed: it reads the thresholds themselves and a change stamp per
part (RiskConfigVersion), which database triggers renew on every write to the rules, list entries or fraud
labels, whoever writes them. A rule disabled or an entry added in admin is thus seen by every process, and the
check costs the same with a million list entries as with ten. The fraud identifiers also reload after a minute,
because they are read from the labelled orders, whose rows the triggers do not watch. The stamps themselves are
read at most once per RISK_CONFIG_RECHECK_SECONDS in a process (a second by default; 0 reads them for every
assessment): a change made in another process is seen within that second, one made in this process at once
(riskengine.apps). The risk models in use (riskengine.scoring) are a part too: a model trained, promoted or
retired is used, or dropped, from then on.
"""

import dataclasses
import ipaddress
import secrets
import time
from bisect import bisect_left
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from orders.models import Order
from riskengine.asof import as_of_cached, as_of_now
from riskengine.mailbox import email_key
from riskengine.models import FraudLabel, ListEntry, ListKind, RiskConfigVersion, RiskRule, RiskSettings
from riskengine.scoring import LoadedModel, models_in_use

FRAUD_RELOAD_SECONDS = 60.0
# Beyond this many exact-match entries the lists are queried per order instead of held in memory.
LIST_MEMORY_MAX = 200_000
LINK_FIELDS = {"email": "email", "ip": "purchase_ip", "device": "device_id", "card": "card_fingerprint"}


class IpIndex:
    """IP addresses and CIDR ranges, looked up by prefix: one dict probe per distinct prefix length."""

    def __init__(self) -> None:
        self._by_prefix: dict[tuple[int, int], dict[int, list[str]]] = {}  # (ip version, length) -> network -> texts

    def add(self, text: str) -> None:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return  # not an address: it can match nothing
        bits = network.max_prefixlen - network.prefixlen
        slot = self._by_prefix.setdefault((network.version, network.prefixlen), {})
        slot.setdefault(int(network.network_address) >> bits, []).append(text)

    def matches(self, ip: str) -> list[str]:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return []
        found: list[str] = []
        for (version, length), networks in self._by_prefix.items():
            if version == address.version:
                found += networks.get(int(address) >> (address.max_prefixlen - length), [])
        return found


@dataclass(frozen=True)
class RiskConfig:
    rules: tuple[RiskRule, ...]  # enabled rules only
    thresholds: RiskSettings
    # (kind, casefolded value) -> [(allow, value as listed)]; None when there are too many to hold
    exact_lists: dict[tuple[str, str], list[tuple[bool, str]]] | None
    ip_lists: dict[bool, IpIndex]
    fraud_identifiers: dict[tuple[str, str], str]  # (identifier kind, value) -> number of a fraud order
    models: tuple[LoadedModel, ...] = ()  # the active risk model and the one in shadow, those loadable


PARTS = ("rules", "lists", "fraud", "model")
_parts: dict[str, tuple[int, float, object]] = {}


def _stamps_and_thresholds() -> tuple:
    quote = connection.ops.quote_name
    stamps, settings_table = quote(RiskConfigVersion._meta.db_table), quote(RiskSettings._meta.db_table)
    columns = [f"(SELECT version FROM {stamps} WHERE part = '{part}')" for part in PARTS]
    columns += [
        f"(SELECT {column} FROM {settings_table} WHERE id = 1)"
        for column in ("review_threshold", "decline_threshold", "review_deadline_hours")
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)}")
        return tuple(cursor.fetchone())


def _part(name: str, stamp: int | None, load, now: float, *, max_age: float = float("inf")):
    cached = _parts.get(name)
    if stamp is not None and cached and cached[0] == stamp and cached[1] > now:
        return cached[2]
    value = load()
    if stamp is not None:
        _parts[name] = (stamp, now + max_age, value)
    return value


_last_read: tuple[float, RiskConfig] | None = None  # (when, what): this process's last check of the stamps


def risk_config_recheck() -> None:
    """Read the stamps at the next assessment (a rule, list entry or label was just written in this process)."""
    global _last_read
    _last_read = None


def risk_config() -> RiskConfig:
    """The current rules, thresholds, lists and fraud identifiers: one query when nothing changed, none when the
    stamps were read less than RISK_CONFIG_RECHECK_SECONDS ago in this process."""
    global _last_read
    now = time.monotonic()
    last = _last_read
    if last is not None and now - last[0] < settings.RISK_CONFIG_RECHECK_SECONDS:
        return last[1]
    config = _risk_config_read()
    _last_read = (now, config)
    return config


def _risk_config_read() -> RiskConfig:
    row = _stamps_and_thresholds()
    stamps = dict(zip(PARTS, row[: len(PARTS)], strict=True))
    if None in stamps.values():  # the rows were flushed (a test database): stamp afresh, cache from the next call
        for part in PARTS:
            RiskConfigVersion.objects.get_or_create(part=part, defaults={"version": secrets.randbits(62)})
        stamps = dict.fromkeys(PARTS)
    review, decline, deadline = row[len(PARTS) :]
    if review is None:  # no settings row (a migration creates it): the model's defaults
        thresholds = RiskSettings()
    else:
        thresholds = RiskSettings(
            pk=1, review_threshold=review, decline_threshold=decline, review_deadline_hours=deadline
        )
    now = time.monotonic()
    rules = _part("rules", stamps["rules"], lambda: tuple(RiskRule.objects.filter(enabled=True)), now)
    exact, networks = _part("lists", stamps["lists"], _load_lists, now)
    fraud = _part("fraud", stamps["fraud"], _load_fraud_identifiers, now, max_age=FRAUD_RELOAD_SECONDS)
    models = _part("model", stamps["model"], models_in_use, now)
    return RiskConfig(
        rules=rules, thresholds=thresholds, exact_lists=exact, ip_lists=networks, fraud_identifiers=fraud, models=models
    )


def _load_lists() -> tuple[dict | None, dict[bool, IpIndex]]:
    count = ListEntry.objects.exclude(kind=ListKind.IP).count()
    exact: dict[tuple[str, str], list[tuple[bool, str]]] | None = {} if count <= LIST_MEMORY_MAX else None
    networks = {True: IpIndex(), False: IpIndex()}
    entries = ListEntry.objects.all() if exact is not None else ListEntry.objects.filter(kind=ListKind.IP)
    for allow, kind, value in entries.order_by("pk").values_list("allow", "kind", "value").iterator(chunk_size=5000):
        if kind == ListKind.IP:
            networks[allow].add(value)
        elif exact is not None:
            exact.setdefault((kind, value.casefold()), []).append((allow, value))
    return exact, networks


def _load_fraud_identifiers() -> dict[tuple[str, str], str]:
    """(kind, value) -> order number for every identifier of an order labelled fraud (a small map)."""

    labelled = FraudLabel.objects.filter(is_fraud=True).values("order_id")
    found: dict[tuple[str, str], str] = {}
    for row in Order.objects.filter(pk__in=labelled).order_by("pk").values("number", *LINK_FIELDS.values()):
        for key in fraud_nodes(row):
            found.setdefault(key, row["number"])
    return found


def fraud_nodes(row: dict) -> list[tuple[str, str]]:
    """An order's nodes in the fraud graph: its email, IP, device and card, and its mailbox (the email as its
    provider delivers it: a ring's dotted Gmail spellings are one node)."""
    nodes = [(label, str(row[field])) for label, field in LINK_FIELDS.items() if row[field]]
    if row["email"]:
        nodes.append(("mailbox", email_key(row["email"])))
    return nodes


# As of an earlier moment (riskengine.asof: the backtest) ----------------------------------------------------


def list_entries_known():
    """The list entries the rules may see: all of them, or inside an as-of block those added before its moment."""
    moment = as_of_now()
    return ListEntry.objects.all() if moment is None else ListEntry.objects.filter(created_at__lt=moment)


def risk_config_as_of(moment, *, base: RiskConfig | None = None) -> RiskConfig:
    """`base` (the current snapshot) with the lists and fraud identifiers as they stood at `moment`.

    Each is read once per backtest run (the as-of block's shared cache) and cut at the moment, growing as a
    replay in time order moves on: a snapshot is for its own moment only. Exact-match lists too long to hold
    are left to one query per order (rules.list_matches reads list_entries_known).
    """
    base = base or risk_config()
    return dataclasses.replace(
        base,
        exact_lists=exact_lists_as_of(moment),
        ip_lists=ip_lists_as_of(moment),
        fraud_identifiers=fraud_identifiers_as_of(moment),
    )


def _timeline(name: str, load) -> tuple[list, list[tuple]]:
    """(times, rows) of `load()`'s (time, ...) rows sorted by time, once per run."""

    def times_and_rows() -> tuple[list, list[tuple]]:
        rows = list(load())
        return [row[0] for row in rows], rows

    return as_of_cached(("timeline", name), times_and_rows, shared=True)


def _grown(name: str, moment, load, empty, add):
    """What `add` makes of `empty()` with the rows of `load()` written before `moment`: grown in place while
    the moments advance (a replay in time order), built afresh when one goes back."""
    times, rows = _timeline(name, load)
    count = bisect_left(times, moment)
    state = as_of_cached(("grown", name), lambda: [0, empty()], shared=True)
    if count < state[0]:
        state[:] = [0, empty()]
    for row in rows[state[0] : count]:
        add(state[1], row)
    state[0] = count
    return state[1]


def exact_lists_as_of(moment) -> dict[tuple[str, str], list[tuple[bool, str]]] | None:
    """_load_lists' exact entries as they stood at `moment` (None: too many to hold; query per order)."""

    def load():
        ordered = ListEntry.objects.exclude(kind=ListKind.IP).order_by("created_at", "pk")
        return ordered.values_list("created_at", "allow", "kind", "value").iterator(chunk_size=5000)

    def too_long() -> bool:
        return ListEntry.objects.exclude(kind=ListKind.IP).count() > LIST_MEMORY_MAX

    def add(found: dict, row: tuple) -> None:
        _, allow, kind, value = row
        found.setdefault((kind, value.casefold()), []).append((allow, value))

    too_many = as_of_cached(("lists_too_long",), too_long, shared=True)
    return None if too_many else _grown("exact_lists", moment, load, dict, add)


def ip_lists_as_of(moment) -> dict[bool, IpIndex]:
    """The IP and CIDR entries added before `moment`, block and allow."""

    def load():
        entries = ListEntry.objects.filter(kind=ListKind.IP).order_by("created_at", "pk")
        return entries.values_list("created_at", "allow", "value")

    def add(networks: dict[bool, IpIndex], row: tuple) -> None:
        networks[row[1]].add(row[2])

    return _grown("ip_lists", moment, load, lambda: {True: IpIndex(), False: IpIndex()}, add)


def fraud_identifiers_as_of(moment) -> dict[tuple[str, str], str]:
    """_load_fraud_identifiers as it stood at `moment`: the orders labelled fraud before it."""

    def add(found: dict, row: tuple) -> None:
        for key in row[2]:
            found.setdefault(key, row[1])

    return _grown("fraud_identifiers", moment, _fraud_timeline, dict, add)


def _fraud_timeline() -> list[tuple]:
    """(label time, order number, the order's (kind, value) identifiers) per fraud label, oldest first."""

    labels = list(
        FraudLabel.objects.filter(is_fraud=True).order_by("created_at", "pk").values_list("created_at", "order_id")
    )
    orders = {
        row["pk"]: row
        for row in Order.objects.filter(pk__in={order_id for _, order_id in labels}).values(
            "pk", "number", *LINK_FIELDS.values()
        )
    }
    return [
        (
            when,
            orders[order_id]["number"],
            fraud_nodes(orders[order_id]),
        )
        for when, order_id in labels
    ]
