"""The raw material of simulated shoppers: names, mailboxes, IP addresses in a given country, devices, cards.

Everything is drawn from one random.Random, so a seed gives the same people every time. IP addresses are
real public addresses whose country (by the same iptocc lookup the engine uses) is the one asked for.
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import iptocc


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST = _words(
    "james mary john patricia robert jennifer michael linda david elizabeth william barbara richard "
    "susan joseph jessica thomas sarah chris karen daniel lisa matthew nancy anthony sandra mark ashley "
    "paul emily steven laura andrew kim wei li hiroshi yuki lukas anna lea pierre camille lucas sofia "
    "ravi priya ahmed fatima"
)
LAST = _words(
    "smith johnson williams brown jones garcia miller davis rodriguez martinez wilson anderson taylor "
    "thomas moore jackson martin lee thompson white harris clark lewis walker hall young allen king "
    "wright scott green baker adams nelson hill campbell mueller schmidt dubois bernard wang zhang "
    "tanaka sato kumar singh silva santos"
)
WORDS = _words("acme nova blue river stone pixel north bright apex delta orbit maple summit cedar harbor vertex")

FREEMAIL = {
    "": (("gmail.com", 40), ("outlook.com", 15), ("yahoo.com", 12), ("icloud.com", 10), ("hotmail.com", 8)),
    "DE": (("gmx.de", 30), ("web.de", 25), ("gmail.com", 45)),
    "FR": (("orange.fr", 30), ("gmail.com", 50), ("free.fr", 20)),
    "CN": (("qq.com", 50), ("163.com", 30), ("gmail.com", 20)),
    "JP": (("yahoo.co.jp", 40), ("gmail.com", 60)),
    "GB": (("gmail.com", 50), ("hotmail.co.uk", 25), ("outlook.com", 25)),
}
DISPOSABLE = (
    "mailinator.com",
    "guerrillamail.com",
    "yopmail.com",
    "10minutemail.com",
    "sharklasers.com",
    "maildrop.cc",
)

# Where honest shoppers live, and where the attackers of this shop sit (their proxies aside).
HOME_COUNTRIES = (
    ("US", 40),
    ("GB", 12),
    ("DE", 10),
    ("CA", 7),
    ("FR", 6),
    ("AU", 5),
    ("NL", 4),
    ("JP", 4),
    ("CN", 4),
    ("BR", 3),
    ("IN", 3),
    ("ES", 2),
)
VICTIM_COUNTRIES = (("US", 55), ("GB", 15), ("CA", 10), ("DE", 8), ("FR", 6), ("AU", 6))
ATTACKER_COUNTRIES = (("NG", 12), ("VN", 12), ("ID", 10), ("BR", 10), ("RU", 12), ("UA", 8), ("PH", 8), ("RO", 8))

_NOT_PUBLIC_FIRST_OCTETS = {0, 10, 100, 127, 169, 172, 192, 198, 203}
HOUR_WEIGHTS = (2, 1, 1, 1, 1, 2, 3, 5, 6, 7, 8, 8, 9, 9, 8, 8, 8, 9, 10, 11, 11, 10, 7, 4)


def pick(rng: random.Random, weighted) -> str:
    """One value of ((value, weight), ...)."""
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights=weights)[0]


@dataclass(frozen=True)
class Mailbox:
    local: str
    domain: str
    first: str
    last: str

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"


class Identities:
    """Draws identifiers; one per simulation, fed by the simulation's random generator."""

    def __init__(self, rng: random.Random, *, start: datetime, days: int):
        self.rng = rng
        self.start = start
        self.days = days
        self._serial = 0
        self.shared: dict[str, object] = {}  # structures several shoppers share (offices, carriers)
        self._mailboxes: set[str] = set()  # one mailbox, one person: no two shoppers draw the same one

    def serial(self) -> int:
        self._serial += 1
        return self._serial

    # --- time ------------------------------------------------------------------------------------------

    def when(self) -> datetime:
        """A moment of the month, busier in the evening than at night."""
        day = self.rng.randrange(self.days)
        hour = self.rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
        return self.start + timedelta(days=day, hours=hour, seconds=self.rng.randrange(3600))

    def work_hours(self, day: int) -> datetime:
        return self.start + timedelta(days=day, hours=self.rng.randint(9, 17), seconds=self.rng.randrange(3600))

    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    # --- people ----------------------------------------------------------------------------------------

    def country(self, weighted=HOME_COUNTRIES) -> str:
        return pick(self.rng, weighted)

    def mailbox(self, country: str = "", *, domain: str = "") -> Mailbox:
        """A person's own mailbox, first.last style, at a free mail provider of their country (or `domain`)."""
        rng = self.rng
        while True:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            at = domain or pick(rng, FREEMAIL.get(country, FREEMAIL[""]))
            local = (
                f"{first}.{last}",
                f"{first}{last}",
                f"{first}_{last}",
                f"{first[0]}{last}",
                f"{first}.{last}{rng.randint(1, 99)}",
                f"{first}{last}{rng.randint(60, 99)}",
            )[rng.randrange(6)]
            if self._claim(local, at):
                return Mailbox(local=local, domain=at, first=first, last=last)

    def throwaway_mailbox(self, *, disposable: bool) -> Mailbox:
        """A mailbox made up for one use: random letters, at a disposable domain or a free mail one."""
        rng = self.rng
        while True:
            local = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(6, 11)))
            domain = rng.choice(DISPOSABLE) if disposable else pick(rng, FREEMAIL[""])
            if self._claim(local, domain):
                return Mailbox(local=local, domain=domain, first="", last="")

    def _claim(self, local: str, domain: str) -> bool:
        """Whether the mailbox was free (Gmail ignores dots: j.smith and jsmith are one box); now taken."""
        canonical = f"{local.replace('.', '') if domain == 'gmail.com' else local}@{domain}"
        if canonical in self._mailboxes:
            return False
        self._mailboxes.add(canonical)
        return True

    def email(self, box: Mailbox, *, case: float = 0.0, plus: float = 0.0, dots: float = 0.0, tag: str = "") -> str:
        """The mailbox as typed this time: as usual, or with capitals, a +tag, or Gmail's ignored dots."""
        rng = self.rng
        local, domain = box.local, box.domain
        roll = rng.random()
        if roll < plus or tag:
            local = f"{local}+{tag or rng.choice(('shop', 'games', 'deals', 'keys', str(rng.randint(1, 99))))}"
        elif roll < plus + dots and domain == "gmail.com":
            bare = local.replace(".", "")
            cut = sorted(rng.sample(range(1, len(bare)), k=min(len(bare) - 1, rng.randint(1, 3))))
            local = ".".join(bare[i:j] for i, j in zip([0, *cut], [*cut, len(bare)], strict=True))
        elif roll < plus + dots + case:
            local = ".".join(part.capitalize() for part in local.split("."))
            domain = domain.capitalize()
        return f"{local}@{domain}"

    def company_domain(self) -> str:
        return f"{self.rng.choice(WORDS)}{self.rng.choice(WORDS)}-{self.rng.randint(2, 99)}.com"

    # --- devices, cards, addresses -----------------------------------------------------------------------

    def device(self) -> str:
        return f"dev_{self.rng.getrandbits(80):020x}"

    def card(self) -> str:
        """A Stripe-like card fingerprint: 16 letters and digits, the same card always the same."""
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(self.rng.choice(alphabet) for _ in range(16))

    def ip_in(self, country: str) -> str:
        """A public IPv4 address that the engine's country lookup places in `country`."""
        rng = self.rng
        for _ in range(200_000):
            first = rng.randint(1, 223)
            if first in _NOT_PUBLIC_FIRST_OCTETS:
                continue
            ip = f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randint(1, 254)}"
            if iptocc.country_code(ip) == country:
                return ip
        raise ValueError(f"no IPv4 address found for country {country}")

    def ip_elsewhere(self, home: str, weighted=HOME_COUNTRIES) -> tuple[str, str]:
        """An address in another country than `home` (a trip, a proxy): (ip, country)."""
        while True:
            country = pick(self.rng, weighted)
            if country != home:
                return self.ip_in(country), country
