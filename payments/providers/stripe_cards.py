"""Stripe's saved cards, for subscriptions: keep a card on a Customer (from a Stripe.js token, or through a
SetupIntent that the shopper's browser confirms, with 3-D Secure when the bank asks), then charge it off-session.
A mixin of StripeProvider (payments.providers.stripe), which gives it `_client`, `_call` and `_snapshot`."""

from payments.providers.base import CardSetup, KeptCard, PaymentRequest, PaymentSnapshot

EXPAND = ["latest_charge", "latest_charge.balance_transaction"]  # what a payment is read back with: Radar, the fee


class StripeSavedCards:
    def save_card(self, *, email: str, card_token: str, idempotency_key: str) -> KeptCard:
        customer = self._call(
            lambda: self._client.v1.customers.create(
                params={"email": email, "source": card_token}, options={"idempotency_key": idempotency_key}
            )
        )
        source = customer.to_dict().get("default_source") or ""
        return KeptCard(customer.id, source if isinstance(source, str) else source.get("id", ""))

    def create_saved_card_payment(
        self, request: PaymentRequest, *, customer_ref: str, method_ref: str
    ) -> PaymentSnapshot:
        params = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "payment_method_types": ["card"],
            "customer": customer_ref,
            "payment_method": method_ref,
            "metadata": {"order_number": request.order_number, **request.metadata},
        }
        intent = self._call(
            lambda: self._client.v1.payment_intents.create(
                params=params, options={"idempotency_key": request.idempotency_key}
            )
        )
        return self._snapshot(intent)

    def confirm_off_session(self, *, ref: str, idempotency_key: str) -> PaymentSnapshot:
        intent = self._call(
            lambda: self._client.v1.payment_intents.confirm(
                ref, params={"off_session": True, "expand": EXPAND}, options={"idempotency_key": idempotency_key}
            )
        )
        return self._snapshot(intent)

    def open_card_setup(self, *, email: str, order_number: str, idempotency_key: str) -> CardSetup:
        customer = self._call(
            lambda: self._client.v1.customers.create(
                params={"email": email}, options={"idempotency_key": f"{idempotency_key}-customer"}
            )
        )
        params = {
            "customer": customer.id,
            "usage": "off_session",
            "payment_method_types": ["card"],
            "metadata": {"order_number": order_number},
        }
        setup = self._call(
            lambda: self._client.v1.setup_intents.create(params=params, options={"idempotency_key": idempotency_key})
        )
        return self._card_setup(setup.to_dict())

    def fetch_card_setup(self, *, ref: str) -> CardSetup:
        return self._card_setup(self._call(lambda: self._client.v1.setup_intents.retrieve(ref)).to_dict())

    def _card_setup(self, setup: dict) -> CardSetup:
        card = None
        method = setup.get("payment_method")
        if setup.get("status") == "succeeded" and method:
            if isinstance(method, str):
                method = self._call(lambda: self._client.v1.payment_methods.retrieve(method)).to_dict()
            details = method.get("card") or {}
            card = KeptCard(
                setup.get("customer") or "",
                method.get("id") or "",
                details.get("fingerprint") or "",
                details.get("country") or "",
            )
        return CardSetup(
            ref=setup.get("id") or "",
            status=setup.get("status") or "",
            client_secret=setup.get("client_secret") or "",
            order_number=(setup.get("metadata") or {}).get("order_number", ""),
            card=card,
        )
