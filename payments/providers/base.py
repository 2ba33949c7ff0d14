"""What every payment provider offers the shop. No SDK object crosses this line.

Amounts are integer minor units with an ISO currency code; timestamps are aware datetimes.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class KeptCard:
    """A card kept for later charges: the provider's customer and card, and what the risk engine reads of it."""

    customer_ref: str
    method_ref: str
    fingerprint: str = ""
    country: str = ""


@dataclass(frozen=True)
class CardSetup:
    """A card being kept without a charge (Stripe's SetupIntent), which the shopper's browser confirms, with
    3-D Secure when the bank asks; `card` once it succeeded."""

    ref: str
    status: str  # the provider's: requires_payment_method, requires_action, succeeded, canceled, ...
    client_secret: str = ""
    order_number: str = ""
    card: KeptCard | None = None


class PaymentError(Exception):
    """The provider could not do what was asked (rejected request, configuration, an error on its side).

    `status` is the provider's HTTP status when it answered, `issue` its error code (never a message).
    """

    code = "error"
    status: int | None = None
    issue: str = ""


class ProviderUnavailable(PaymentError):
    """The provider did not answer: connection refused or reset, DNS, or a timeout (`timeout` is then true)."""

    code = "unavailable"

    def __init__(self, message: str, *, timeout: bool = False):
        super().__init__(message)
        self.timeout = timeout


class PaymentDeclined(PaymentError):
    """The shopper's payment method was declined; they can try another."""

    code = "declined"


class NotSupported(PaymentError):
    """This provider has no such operation (e.g. card tokens at PayPal, evidence submission by API at PayPal)."""

    code = "not_supported"


class WebhookRejected(Exception):
    """A notification failed verification or could not be parsed; nothing is changed."""


@dataclass(frozen=True)
class ShipTo:
    name: str
    line1: str
    line2: str
    city: str
    postal_code: str
    country: str


@dataclass(frozen=True)
class PaymentRequest:
    order_number: str
    amount: int
    currency: str
    email: str
    idempotency_key: str
    metadata: dict[str, str] = field(default_factory=dict)
    description: str = ""
    return_url: str = ""  # where a redirect method (PayPal) sends the shopper after approval
    cancel_url: str = ""
    ship_to: ShipTo | None = None  # physical goods only
    locale: str = ""


@dataclass(frozen=True)
class PaymentSnapshot:
    """A payment's state at the provider, normalised."""

    ref: str
    status: str  # one of payments.models.PaymentStatus
    amount: int
    amount_received: int
    currency: str
    client_secret: str = ""
    approval_url: str = ""  # PayPal: where the shopper approves the payment
    needs_capture: bool = False  # PayPal: approved by the buyer, not yet captured
    capture_ref: str = ""  # PayPal: the capture id; Stripe: the charge id
    failure_message: str = ""
    order_number: str = ""
    card_fingerprint: str = ""
    card_country: str = ""
    attempt_ref: str = ""  # the charge of this attempt, so one failed attempt is counted once
    billing_country: str = ""
    payer_country: str = ""
    fee: int | None = None  # what the provider kept, when it says
    refunded_amount: int = 0
    created_at: datetime | None = None
    # A card saved for later charges (subscriptions): the provider's customer and payment method
    customer_ref: str = ""
    method_ref: str = ""
    # Radar and 3-D Secure, as the provider reported them; empty when not assessed.
    radar: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RefundResult:
    ref: str
    amount: int
    status: str  # succeeded | pending | failed


@dataclass(frozen=True)
class RefundNotice:
    """A refund the provider tells us about (ours echoed back, or one made in its dashboard)."""

    ref: str
    payment_ref: str  # the payment (Stripe intent, PayPal order) if known
    capture_ref: str  # the capture (PayPal) or charge (Stripe) if known
    amount: int
    currency: str
    status: str  # succeeded | pending | failed
    payment_refunded_total: int | None = None  # everything refunded on the payment so far, when given


@dataclass(frozen=True)
class FraudSignal:
    """A provider telling us a payment is disputed, reversed or suspected fraud."""

    kind: str  # dispute | dispute_closed | reversal | early_fraud_warning | review_opened | review_closed
    payment_ref: str = ""
    capture_ref: str = ""
    reason: str = ""
    fraud: bool = True  # review_closed as approved, or a dispute won, is False
    dispute_ref: str = ""
    amount: int = 0
    currency: str = ""
    status: str = ""  # the provider's dispute status
    due_by: datetime | None = None


@dataclass(frozen=True)
class WebhookNotice:
    event_id: str
    event_type: str
    payment: PaymentSnapshot | None = None
    fraud: FraudSignal | None = None
    refund: RefundNotice | None = None
    approved_ref: str = ""  # PayPal: an order the buyer approved, to capture now
    sent_at: datetime | None = None  # when the provider made the event (its lag until it reached us is a metric)


@dataclass(frozen=True)
class DisputeEvidence:
    """What a digital-goods merchant answers a dispute with; providers map it to their fields."""

    product_description: str
    customer_email: str
    customer_name: str
    customer_purchase_ip: str
    service_date: str  # YYYY-MM-DD of delivery
    access_activity_log: str  # every reveal and download, with time and IP
    uncategorized_text: str  # order number, times, refund policy, what was delivered


class PaymentProvider(Protocol):
    name: str

    def create_payment(self, request: PaymentRequest) -> PaymentSnapshot:
        """Open a payment for the exact amount (Stripe: an intent; PayPal: an order to approve)."""
        ...

    def capture(
        self, *, ref: str, idempotency_key: str, card_token: str = "", save_card_for: str = ""
    ) -> PaymentSnapshot:
        """Take the money: Stripe confirms the intent with the card behind `card_token`; PayPal captures
        the order its buyer approved. A retry with the same idempotency key never takes it twice.
        `save_card_for` (an email) keeps the card on a customer for later charges, where the provider can."""
        ...

    def save_card(self, *, email: str, card_token: str, idempotency_key: str) -> KeptCard:
        """Keep the card behind `card_token` for later charges. NotSupported where
        the provider has no saved cards (PayPal buyers pay each period from a link)."""
        ...

    def open_card_setup(self, *, email: str, order_number: str, idempotency_key: str) -> CardSetup:
        """Begin keeping a card without charging it (a free trial): a customer and a setup the browser confirms."""
        ...

    def fetch_card_setup(self, *, ref: str) -> CardSetup:
        """Where a card setup stands, with the kept card once it succeeded."""
        ...

    def create_saved_card_payment(
        self, request: PaymentRequest, *, customer_ref: str, method_ref: str
    ) -> PaymentSnapshot:
        """Open a payment on a saved card, not yet confirmed (recorded before any money moves)."""
        ...

    def confirm_off_session(self, *, ref: str, idempotency_key: str) -> PaymentSnapshot:
        """Charge an opened saved-card payment with the shopper away. PaymentDeclined on a decline; a bank that
        asks for the shopper (3-D Secure) leaves it requires_action."""
        ...

    def fetch_payment(self, *, ref: str) -> PaymentSnapshot:
        """The payment as the provider sees it now, with card, Radar and fee facts where known."""
        ...

    def refund(
        self, *, ref: str, capture_ref: str, amount: int, currency: str, idempotency_key: str
    ) -> RefundResult: ...

    def parse_webhook(self, *, payload: bytes, headers: dict[str, str]) -> WebhookNotice:
        """Verify and normalise a notification, or raise WebhookRejected."""
        ...

    def recent_payments(self, *, since: datetime) -> list[PaymentSnapshot]:
        """Payments that succeeded since then (reconciliation catches those whose notification was lost)."""
        ...

    def submit_dispute_evidence(self, *, dispute_ref: str, evidence: DisputeEvidence) -> None: ...
