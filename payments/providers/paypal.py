"""PayPal through its official `paypal-server-sdk` (Orders v2): create, buyer approval by redirect, capture,
refund. Responses are read as plain JSON (`ApiResponse.text`), so no SDK object leaves this module.

Webhooks are not in the SDK. They are verified offline (RSA-SHA256 over transmission id, time, webhook
id and the CRC32 of the body, with the certificate from the PAYPAL-CERT-URL header, whose host must be
PayPal's and whose chain must lead to a trusted root) or, with PAYPAL_WEBHOOK_VERIFY=api, by PayPal's
verify-webhook-signature call. See payments.providers.paypal_webhooks.
"""

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime

import requests
import urllib3
from apimatic_core.exceptions.auth_validation_exception import AuthValidationException
from paypalserversdk.configuration import Configuration, Environment, Server
from paypalserversdk.exceptions.api_exception import ApiException
from paypalserversdk.http.auth.o_auth_2 import ClientCredentialsAuthCredentials
from paypalserversdk.models.address import Address
from paypalserversdk.models.amount_with_breakdown import AmountWithBreakdown
from paypalserversdk.models.checkout_payment_intent import CheckoutPaymentIntent
from paypalserversdk.models.money import Money
from paypalserversdk.models.order_request import OrderRequest
from paypalserversdk.models.payment_source import PaymentSource
from paypalserversdk.models.paypal_wallet import PaypalWallet
from paypalserversdk.models.paypal_wallet_experience_context import PaypalWalletExperienceContext
from paypalserversdk.models.purchase_unit_request import PurchaseUnitRequest
from paypalserversdk.models.refund_request import RefundRequest
from paypalserversdk.models.shipping_details import ShippingDetails
from paypalserversdk.models.shipping_name import ShippingName
from paypalserversdk.paypal_serversdk_client import PaypalServersdkClient

from payments.money import MoneyError, from_decimal_string, to_decimal_string
from payments.providers.base import (
    DisputeEvidence,
    FraudSignal,
    KeptCard,
    NotSupported,
    PaymentDeclined,
    PaymentError,
    PaymentRequest,
    PaymentSnapshot,
    ProviderUnavailable,
    RefundNotice,
    RefundResult,
    WebhookNotice,
    WebhookRejected,
)
from payments.providers.paypal_webhooks import WebhookVerifier
from payments.providers.webhook_input import checked_notice, load_event

logger = logging.getLogger(__name__)

LIVE_API = "https://api-m.paypal.com"
SANDBOX_API = "https://api-m.sandbox.paypal.com"
_DECLINE_ISSUES = {"INSTRUMENT_DECLINED", "PAYER_ACTION_REQUIRED", "TRANSACTION_REFUSED", "PAYER_CANNOT_PAY"}


class _Configuration(Configuration):
    """The SDK's configuration with our own API address (it has no option for one)."""

    def __init__(self, *, base_url: str, **kwargs):
        self._base_url = base_url.rstrip("/")
        super().__init__(**kwargs)

    def get_base_uri(self, server=Server.DEFAULT):
        return self._base_url


class PayPalProvider:
    name = "paypal"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        webhook_id: str,
        api_base: str = "",
        live: bool = False,
        timeout: float = 10.0,
        verifier: WebhookVerifier | None = None,
    ):
        self.api_base = (api_base or (LIVE_API if live else SANDBOX_API)).rstrip("/")
        self._client = PaypalServersdkClient(
            config=_Configuration(
                base_url=self.api_base,
                timeout=timeout,
                max_retries=0,
                environment=Environment.PRODUCTION if live else Environment.SANDBOX,
                client_credentials_auth_credentials=ClientCredentialsAuthCredentials(
                    o_auth_client_id=client_id, o_auth_client_secret=client_secret
                ),
            )
        )
        self._verifier = verifier or WebhookVerifier(
            webhook_id=webhook_id, api_base=self.api_base, client_id=client_id, client_secret=client_secret
        )

    # --- payments -----------------------------------------------------------------------------------------

    def create_payment(self, request: PaymentRequest) -> PaymentSnapshot:
        unit = PurchaseUnitRequest(
            amount=AmountWithBreakdown(
                currency_code=request.currency.upper(), value=to_decimal_string(request.amount, request.currency)
            ),
            reference_id=request.order_number,
            custom_id=request.order_number,
            **_given(description=request.description[:127]),
        )
        shipping = "NO_SHIPPING"
        if request.ship_to is not None:
            to = request.ship_to
            unit.shipping = ShippingDetails(
                name=ShippingName(full_name=to.name[:300]),
                address=Address(
                    country_code=to.country,
                    address_line_1=to.line1[:300],
                    admin_area_2=to.city[:120],
                    postal_code=to.postal_code[:60],
                    **_given(address_line_2=to.line2[:300]),
                ),
            )
            shipping = "SET_PROVIDED_ADDRESS"
        context = PaypalWalletExperienceContext(
            return_url=request.return_url,
            cancel_url=request.cancel_url,
            shipping_preference=shipping,
            user_action="PAY_NOW",
            **_given(locale=_paypal_locale(request.locale)),
        )
        body = OrderRequest(
            intent=CheckoutPaymentIntent.CAPTURE,
            purchase_units=[unit],
            payment_source=PaymentSource(paypal=PaypalWallet(experience_context=context)),
        )
        data = self._call(
            lambda: self._client.orders.create_order(
                {"body": body, "paypal_request_id": request.idempotency_key, "prefer": "return=representation"}
            )
        )
        return _order_snapshot(data)

    def capture(
        self, *, ref: str, idempotency_key: str, card_token: str = "", save_card_for: str = ""
    ) -> PaymentSnapshot:
        """Capture the order the buyer approved. Already captured: its current state, not an error. Nothing is
        saved for later (`save_card_for`): a PayPal subscriber pays each period from a link."""
        if card_token:
            raise NotSupported("PayPal takes no card tokens here.")
        try:
            data = self._call(
                lambda: self._client.orders.capture_order(
                    {"id": ref, "paypal_request_id": idempotency_key, "prefer": "return=representation"}
                )
            )
        except PaymentError as exc:
            if getattr(exc, "issue", "") == "ORDER_ALREADY_CAPTURED":
                return self.fetch_payment(ref=ref)
            raise
        return _order_snapshot(data)

    def save_card(self, *, email: str, card_token: str, idempotency_key: str) -> KeptCard:
        raise NotSupported("PayPal keeps no cards for the shop; renewals are paid from a link.")

    def open_card_setup(self, *, email: str, order_number: str, idempotency_key: str):
        raise NotSupported("PayPal keeps no cards for the shop; renewals are paid from a link.")

    def fetch_card_setup(self, *, ref: str):
        raise NotSupported("PayPal keeps no cards for the shop; renewals are paid from a link.")

    def create_saved_card_payment(self, request: PaymentRequest, *, customer_ref: str, method_ref: str):
        raise NotSupported("PayPal keeps no cards for the shop; renewals are paid from a link.")

    def confirm_off_session(self, *, ref: str, idempotency_key: str) -> PaymentSnapshot:
        raise NotSupported("PayPal keeps no cards for the shop; renewals are paid from a link.")

    def fetch_payment(self, *, ref: str) -> PaymentSnapshot:
        return _order_snapshot(self._call(lambda: self._client.orders.get_order({"id": ref})))

    def refund(self, *, ref: str, capture_ref: str, amount: int, currency: str, idempotency_key: str) -> RefundResult:
        if not capture_ref:
            raise PaymentError("This PayPal payment has no capture to refund.")
        body = RefundRequest(amount=Money(currency_code=currency.upper(), value=to_decimal_string(amount, currency)))
        data = self._call(
            lambda: self._client.payments.refund_captured_payment(
                {
                    "capture_id": capture_ref,
                    "body": body,
                    "paypal_request_id": idempotency_key,
                    "prefer": "return=representation",
                }
            )
        )
        status = {"COMPLETED": "succeeded", "PENDING": "pending"}.get(data.get("status", ""), "failed")
        return RefundResult(ref=data["id"], amount=_money(data.get("amount")) or amount, status=status)

    def recent_payments(self, *, since: datetime) -> list[PaymentSnapshot]:
        """Completed captures since then, from transaction search (ref unknown there: matched by order number)."""
        found: list[PaymentSnapshot] = []
        page, pages = 1, 1
        while page <= pages and page <= 20:
            data = self._call(
                lambda page=page: self._client.transaction_search.search_transactions(
                    {
                        "start_date": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "end_date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "fields": "transaction_info",
                        "page_size": 100,
                        "page": page,
                    }
                )
            )
            pages = int(data.get("total_pages") or 1)
            for item in data.get("transaction_details") or []:
                info = item.get("transaction_info") or {}
                if info.get("transaction_status") != "S" or not info.get("transaction_id"):
                    continue
                amount = _money(info.get("transaction_amount"))
                if amount <= 0:  # refunds and fees are negative
                    continue
                fee = _money(info.get("fee_amount"))
                found.append(
                    PaymentSnapshot(
                        ref="",
                        status="succeeded",
                        amount=amount,
                        amount_received=amount,
                        currency=((info.get("transaction_amount") or {}).get("currency_code") or "").upper(),
                        capture_ref=info["transaction_id"],
                        order_number=info.get("custom_field") or "",
                        fee=abs(fee) if fee else None,
                    )
                )
            page += 1
        return found

    def submit_dispute_evidence(self, *, dispute_ref: str, evidence: DisputeEvidence) -> None:
        raise NotSupported("Answer PayPal disputes in the PayPal Resolution Center; the evidence is shown in admin.")

    # --- webhooks -----------------------------------------------------------------------------------------

    def parse_webhook(self, *, payload: bytes, headers: dict[str, str]) -> WebhookNotice:
        self._verifier.verify(payload=payload, headers=headers)
        event = load_event(payload)
        event_id, event_type = event.get("id"), event.get("event_type")
        resource = event.get("resource")
        if not isinstance(event_id, str) or not isinstance(event_type, str) or not isinstance(resource, dict):
            raise WebhookRejected("event without id, type or resource")
        try:
            notice = _notice(event_id, event_type, resource)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, MoneyError) as exc:
            raise WebhookRejected(f"{event_type[:100]} could not be read") from exc
        return checked_notice(replace(notice, sent_at=_event_time(event.get("create_time"))))

    # --- plumbing -----------------------------------------------------------------------------------------

    def _call(self, fn) -> dict:
        try:
            response = fn()
        except ApiException as exc:  # ErrorException, SearchErrorException: PayPal answered with an error
            details = getattr(exc, "details", None) or []
            issue = (getattr(details[0], "issue", "") if details else "") or ""
            logger.warning("paypal call failed: %s %s %s", exc.response_code, getattr(exc, "name", "") or "", issue)
            error_class = PaymentDeclined if issue in _DECLINE_ISSUES else PaymentError
            error = error_class("PayPal could not do this; please try again or choose another way to pay.")
            error.issue = issue
            error.status = exc.response_code
            raise error from exc
        except AuthValidationException as exc:  # the token could not be had: wrong or revoked credentials
            logger.warning("paypal refused the channel's credentials")
            error = PaymentError("PayPal refused this shop's credentials.")
            error.status, error.issue = 401, "AUTHENTICATION_FAILURE"
            raise error from exc
        except requests.exceptions.RequestException as exc:
            if _timed_out(exc):
                logger.warning("paypal timed out")
                raise ProviderUnavailable("PayPal did not answer in time.", timeout=True) from exc
            logger.warning("paypal unreachable (%s)", type(exc).__name__)
            raise ProviderUnavailable("PayPal could not be reached.") from exc
        if response.status_code >= 500:
            raise PaymentError("PayPal had an error; please try again.")
        try:
            return json.loads(response.text or "{}")
        except ValueError as exc:
            raise PaymentError("PayPal answered something unreadable.") from exc


def _timed_out(exc: BaseException) -> bool:
    """requests reports a read timeout under retries as a ConnectionError wrapping urllib3's timeout."""
    if isinstance(exc, requests.exceptions.Timeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.TimeoutError)


def _given(**fields) -> dict:
    """Only the fields that have a value: the SDK sends None as null, which PayPal refuses."""
    return {name: value for name, value in fields.items() if value}


def _paypal_locale(locale: str) -> str:
    return {"zh-hans": "zh-CN", "zh_hans": "zh-CN", "en": "en-US"}.get((locale or "").lower(), "")


def _money(value) -> int:
    if not isinstance(value, dict) or "value" not in value:
        return 0
    return from_decimal_string(value["value"], value.get("currency_code") or "USD")


def _link(resource: dict, rel: str) -> str:
    for link in resource.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == rel:
            return str(link.get("href") or "")
    return ""


def _last_segment(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1] if url else ""


def _when(text) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


_CAPTURE_STATUS = {
    "COMPLETED": "succeeded",
    "PARTIALLY_REFUNDED": "succeeded",
    "REFUNDED": "succeeded",  # the money came in; the refunds are recorded apart
    "PENDING": "requires_action",
    "DECLINED": "failed",
    "FAILED": "failed",
}


def _order_snapshot(order: dict) -> PaymentSnapshot:
    unit = (order.get("purchase_units") or [{}])[0]
    amount = _money(unit.get("amount"))
    currency = ((unit.get("amount") or {}).get("currency_code") or "").upper()
    captures = ((unit.get("payments") or {}).get("captures")) or []
    capture = captures[0] if captures else {}
    refunds = ((unit.get("payments") or {}).get("refunds")) or []
    status, received, fee = "requires_action", 0, None
    order_status = order.get("status") or ""
    if order_status in ("VOIDED",):
        status = "failed"
    elif capture:
        status = _CAPTURE_STATUS.get(capture.get("status") or "", "requires_action")
        if status == "succeeded":
            received = _money(capture.get("amount"))
        fee = _money((capture.get("seller_receivable_breakdown") or {}).get("paypal_fee")) or None
    elif order_status == "CREATED":
        status = "created"
    payer = order.get("payer") or {}
    return PaymentSnapshot(
        ref=order["id"],
        status=status,
        amount=amount,
        amount_received=received,
        currency=currency,
        approval_url=_link(order, "payer-action") or _link(order, "approve"),
        needs_capture=order_status == "APPROVED" and not capture,
        capture_ref=str(capture.get("id") or ""),
        order_number=str(unit.get("custom_id") or unit.get("reference_id") or ""),
        payer_country=str((payer.get("address") or {}).get("country_code") or "")[:2],
        fee=fee,
        refunded_amount=sum(_money(r.get("amount")) for r in refunds if r.get("status") == "COMPLETED"),
        created_at=_when(order.get("create_time")),
        failure_message="" if status != "failed" else f"PayPal {capture.get('status') or order_status}".lower(),
    )


def _capture_snapshot(capture: dict) -> PaymentSnapshot:
    related = ((capture.get("supplementary_data") or {}).get("related_ids")) or {}
    amount = _money(capture.get("amount"))
    status = _CAPTURE_STATUS.get(capture.get("status") or "", "requires_action")
    fee = _money((capture.get("seller_receivable_breakdown") or {}).get("paypal_fee"))
    return PaymentSnapshot(
        ref=str(related.get("order_id") or _last_segment(_link(capture, "up"))),
        status=status,
        amount=amount,
        amount_received=amount if status == "succeeded" else 0,
        currency=((capture.get("amount") or {}).get("currency_code") or "").upper(),
        capture_ref=capture["id"],
        order_number=str(capture.get("custom_id") or ""),
        fee=fee or None,
        failure_message="" if status != "failed" else "paypal capture declined",
    )


def _event_time(value) -> datetime | None:
    """When PayPal made the event (RFC 3339), for the lag metric; None when absent or unreadable."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) and len(value) <= 40 else None
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _notice(event_id: str, event_type: str, resource: dict) -> WebhookNotice:
    notice = WebhookNotice(event_id=event_id, event_type=event_type)
    if event_type == "CHECKOUT.ORDER.APPROVED":
        return WebhookNotice(event_id=event_id, event_type=event_type, approved_ref=resource["id"])
    if event_type in ("PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.DENIED", "PAYMENT.CAPTURE.DECLINED"):
        payment = _capture_snapshot(resource)
        if not payment.ref:
            raise WebhookRejected(f"{event_type} without its order")
        return WebhookNotice(event_id=event_id, event_type=event_type, payment=payment)
    if event_type == "PAYMENT.CAPTURE.REFUNDED":
        refund = RefundNotice(
            ref=resource["id"],
            payment_ref="",
            capture_ref=_last_segment(_link(resource, "up")),
            amount=_money(resource.get("amount")),
            currency=((resource.get("amount") or {}).get("currency_code") or "").upper(),
            status={"COMPLETED": "succeeded", "PENDING": "pending"}.get(resource.get("status") or "", "failed"),
        )
        if not refund.capture_ref:
            raise WebhookRejected("refund without its capture")
        return WebhookNotice(event_id=event_id, event_type=event_type, refund=refund)
    if event_type == "PAYMENT.CAPTURE.REVERSED":
        up = _link(resource, "up")  # a refund-shaped resource points up to its capture; a capture, to its order
        capture_ref = _last_segment(up) if "/captures/" in up else resource["id"]
        signal = FraudSignal(
            kind="reversal",
            capture_ref=capture_ref,
            reason=str(resource.get("status_details", {}).get("reason") or "reversed")[:100],
            dispute_ref=f"reversal:{resource['id']}",
            amount=_money(resource.get("amount")),
            currency=((resource.get("amount") or {}).get("currency_code") or "").upper(),
            status="lost",
        )
        return WebhookNotice(event_id=event_id, event_type=event_type, fraud=signal)
    if event_type in ("CUSTOMER.DISPUTE.CREATED", "CUSTOMER.DISPUTE.RESOLVED"):
        transactions = resource.get("disputed_transactions") or [{}]
        outcome = ((resource.get("dispute_outcome") or {}).get("outcome_code")) or ""
        created = event_type == "CUSTOMER.DISPUTE.CREATED"
        signal = FraudSignal(
            kind="dispute" if created else "dispute_closed",
            capture_ref=str(transactions[0].get("seller_transaction_id") or ""),
            reason=str(resource.get("reason") or "")[:100],
            fraud=created or outcome != "RESOLVED_SELLER_FAVOUR",
            dispute_ref=str(resource["dispute_id"]),
            amount=_money(resource.get("dispute_amount")),
            currency=((resource.get("dispute_amount") or {}).get("currency_code") or "").upper(),
            status=("won" if outcome == "RESOLVED_SELLER_FAVOUR" else "lost") if not created else "",
            due_by=_when(resource.get("seller_response_due_date")),
        )
        if not signal.capture_ref:
            raise WebhookRejected("dispute without its transaction")
        return WebhookNotice(event_id=event_id, event_type=event_type, fraud=signal)
    return notice
