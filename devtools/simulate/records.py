"""What the simulation is made of: the catalog, the patterns, the parameters, and one simulated order."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class SimProduct:
    slug: str
    name: str
    price: int  # minor units, USD
    high_risk: bool


CATALOG = (
    SimProduct("sim-game-key", "Game key (standard edition)", 1999, False),
    SimProduct("sim-office-license", "Office suite license", 4999, False),
    SimProduct("sim-antivirus", "Antivirus, one year", 2999, False),
    SimProduct("sim-design-suite", "Pro design suite", 19900, False),
    SimProduct("sim-gift-25", "Gift card 25", 2500, True),
    SimProduct("sim-gift-100", "Gift card 100", 10000, True),
    SimProduct("sim-credits-5", "Game credits 5", 499, True),
)
PRICES = {p.slug: p for p in CATALOG}
GOOD_BASKET = (
    ("sim-game-key", 35),
    ("sim-office-license", 20),
    ("sim-antivirus", 15),
    ("sim-design-suite", 5),
    ("sim-gift-25", 12),
    ("sim-gift-100", 5),
    ("sim-credits-5", 8),
)
FRAUD_BASKET = (("sim-gift-100", 35), ("sim-gift-25", 25), ("sim-design-suite", 15), ("sim-game-key", 15))
TESTING_BASKET = (("sim-credits-5", 80), ("sim-game-key", 20))

GOOD_PATTERNS = (
    "good_oneoff",
    "good_repeat",
    "good_shared_ip",
    "good_traveller",
    "good_disposable",
    "good_radar_elevated",
)
FRAUD_PATTERNS = ("card_testing", "stolen_card", "fraud_ring", "card_many_emails", "slow_rotator", "friendly_fraud")
PATTERNS = GOOD_PATTERNS + FRAUD_PATTERNS


@dataclass(frozen=True)
class PopulationParams:
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC)
    days: int = 30
    fraud_share: float = 0.03  # of all orders, by count
    # Shares of all orders; honest one-off buyers take whatever the others leave.
    good_mix: dict[str, float] = field(
        default_factory=lambda: {
            "good_repeat": 0.22,
            "good_shared_ip": 0.07,
            "good_traveller": 0.04,
            "good_disposable": 0.02,
            "good_radar_elevated": 0.012,
        }
    )
    # Shares of the fraudulent orders.
    fraud_mix: dict[str, float] = field(
        default_factory=lambda: {
            "card_testing": 0.34,
            "stolen_card": 0.20,
            "fraud_ring": 0.15,
            "card_many_emails": 0.10,
            "slow_rotator": 0.09,
            "friendly_fraud": 0.12,
        }
    )
    good_card_declined: float = 0.03  # an honest order whose first card is declined before one that works
    good_radar_score_mode: int = 8  # honest payments: Radar "normal", score mostly low
    repeat_burst_sizes: dict[int, float] = field(
        default_factory=lambda: {1: 50, 2: 22, 3: 12, 4: 6, 5: 4, 6: 3, 7: 2, 8: 1}
    )
    office_team_day_share: float = 0.2  # office workers buying on the day their team is told to
    card_testing_careful_share: float = 0.2  # testers who keep under the limits and rotate everything
    early_fraud_warning_rate: float = 0.6
    early_fraud_warning_days: tuple[float, float] = (1.0, 10.0)
    dispute_rate: float = 0.7
    dispute_days: tuple[float, float] = (10.0, 45.0)
    friendly_dispute_days: tuple[float, float] = (14.0, 60.0)
    reviewer_approves_fraud: float = 0.08
    reviewer_rejects_good: float = 0.03
    review_median_hours: float = 2.0

    def as_dict(self) -> dict:
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values["start"] = self.start.isoformat()
        values["repeat_burst_sizes"] = {str(k): v for k, v in self.repeat_burst_sizes.items()}
        return values


@dataclass(frozen=True)
class Attempt:
    """One try to pay: a card submitted at a moment, declined or not."""

    at: datetime
    card: str
    card_country: str
    succeeds: bool
    decline_code: str = ""


@dataclass(frozen=True)
class Feedback:
    """What the card network says later: an early fraud warning or a dispute."""

    kind: str  # early_fraud_warning | dispute
    at: datetime
    reason: str


@dataclass(frozen=True)
class ReviewPlan:
    """What a reviewer would decide about this order, and how long after it was held."""

    approve: bool
    delay: timedelta


@dataclass(frozen=True)
class SimOrder:
    index: int
    at: datetime  # checkout
    pattern: str
    fraud: bool
    actor: str
    email: str
    ip: str
    ip_country: str
    device_id: str
    card_fingerprint: str  # the card that pays (the last attempt's)
    card_country: str
    billing_country: str
    product: str
    quantity: int
    amount: int
    high_risk: bool
    radar_level: str  # normal | elevated | highest
    radar_score: int
    attempts: tuple[Attempt, ...]  # in time order; the last one succeeds
    feedback: tuple[Feedback, ...]
    review: ReviewPlan

    @property
    def paid_at(self) -> datetime:
        return self.attempts[-1].at
