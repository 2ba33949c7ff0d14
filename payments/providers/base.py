"""What every payment provider offers the shop. No SDK object crosses this line."""

from dataclasses import dataclass, field
from typing import Protocol


class PaymentError(Exception):
    """The provider could not do what was asked (network, configuration, rejected request)."""


class PaymentDeclined(PaymentError):
    """The shopper's payment method was declined; they can try another."""


class WebhookRejected(Exception):
    """A notification failed verification or could not be parsed; nothing is changed."""


@dataclass(frozen=True)
class PaymentRequest:
    order_number: str
    amount: int
    currency: str
    email: str
    idempotency_key: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentSnapshot:
    """A payment's state at the provider, normalised."""

    ref: str
    status: str  # one of payments.models.PaymentStatus
    amount: int
    amount_received: int
    currency: str
    client_secret: str = ""
    failure_message: str = ""
    order_number: str = ""
    card_fingerprint: str = ""
    card_country: str = ""
    attempt_ref: str = ""  # the charge of this attempt, so one failed attempt is counted once
    billing_country: str = ""
    # Radar and 3-D Secure, as the provider reported them; empty when not assessed.
    radar: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RefundResult:
    ref: str
    amount: int
    status: str  # succeeded | pending | failed


@dataclass(frozen=True)
class FraudSignal:
    """A provider telling us a payment is disputed or suspected fraud."""

    kind: str  # dispute | early_fraud_warning | review_opened | review_closed
    payment_ref: str
    reason: str = ""
    fraud: bool = True  # review_closed as approved/refunded-not-fraud is False


@dataclass(frozen=True)
class WebhookNotice:
    event_id: str
    event_type: str
    payment: PaymentSnapshot | None
    fraud: FraudSignal | None = None


class PaymentProvider(Protocol):
    name: str

    def create_payment(self, request: PaymentRequest) -> PaymentSnapshot: ...

    def confirm_with_card_token(self, *, ref: str, card_token: str) -> PaymentSnapshot: ...

    def fetch_payment(self, *, ref: str) -> PaymentSnapshot: ...

    def refund(self, *, ref: str, amount: int, idempotency_key: str) -> RefundResult: ...

    def parse_webhook(self, *, payload: bytes, headers: dict[str, str]) -> WebhookNotice: ...
