"""Checkout, order status and payment for a headless front end (the cart: storefront.api.cart; keys:
storefront.api.reveal)."""

import hashlib
import re

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.http import HttpResponseNotModified
from django.urls import reverse
from django.utils.http import parse_etags
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.models import Product
from fulfillment.models import KeyStatus, LicenseKey
from orders.cart import CartLine, cart_clear, cart_coupon_read, cart_lines
from orders.errors import MESSAGES, CheckoutError
from orders.models import Order, OrderStatus
from orders.selectors import order_get_by_token
from orders.services import ShippingAddress
from payments.health import ACCOUNT_TROUBLE
from payments.models import PaymentChannel, PaymentStatus
from payments.providers.base import PaymentDeclined, PaymentError
from payments.routing import channel_refusal, channels_for_order, shopper_country
from payments.services import OrderNotPayable, OrderOutOfStock, PaymentBlocked
from storefront.api.order_payloads import (
    CheckoutResultSerializer,
    CheckoutSerializer,
    OrderStatusSerializer,
    PaymentMethodSerializer,
    PaymentSessionSerializer,
    order_status_payload,
    payment_payload,
)
from storefront.api_errors import ApiError, error_responses
from storefront.device import device_fingerprint
from storefront.flow.checkout import checkout_create_order, payment_confirm_card, payment_start_for_order
from storefront.flow.trials import trial_card_setup, trial_start
from storefront.parsers import JSONParser
from storefront.ratelimit import RATE_LIMITED_MESSAGE, client_ip, client_rate_limited


def _products(slugs) -> dict[str, Product]:
    """The products by slug, with their price breaks (two queries for any number); 404 for an unknown slug."""
    slugs = set(slugs)
    products = Product.objects.prefetch_related("price_breaks").in_bulk(list(slugs), field_name="slug")
    if slugs - set(products):
        raise ApiError("product_not_found", _("No product with that slug."), status.HTTP_404_NOT_FOUND)
    return products


class CheckoutApi(APIView):
    """Create an order from the given lines (or the session cart) and open its payment."""

    # JSON only: the lines and the address are nested, which the form encodings do not carry as documented, and
    # a form checkout whose lines were not understood would buy the session cart instead of what was sent.
    parser_classes = [JSONParser]

    @extend_schema(
        request=CheckoutSerializer,
        responses={201: CheckoutResultSerializer, **error_responses(400, 403, 404, 409, 415, 429)},
        tags=["checkout"],
    )
    def post(self, request):
        if client_rate_limited(request, scope="checkout", limit=settings.CHECKOUT_RATE):  # shared with the web form
            raise ApiError("rate_limited", str(RATE_LIMITED_MESSAGE), status.HTTP_429_TOO_MANY_REQUESTS)
        data = CheckoutSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data.get("lines")
        if given is not None:
            products = _products(item["product"] for item in given)
            lines = [CartLine(product=products[item["product"]], quantity=item["quantity"]) for item in given]
        else:
            lines = cart_lines(request.session)
        coupon = data.validated_data.get("coupon", "" if given is not None else cart_coupon_read(request.session))
        address = data.validated_data.get("shipping_address")
        order = checkout_create_order(
            lines=lines,
            email=data.validated_data["email"],
            shipping=ShippingAddress(**address) if address else None,
            locale=get_language() or settings.LANGUAGE_CODE,
            purchase_ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            device_id=getattr(request, "device_id", ""),
            device_fingerprint=device_fingerprint(data.validated_data.get("device_fingerprint", "")),
            coupon=coupon,
        )
        if given is None:
            cart_clear(request.session)
        try:
            # free (flow.free_orders): released already, nothing to pay
            payment = payment_start_for_order(order=order) if order.total_amount else None
        except OrderOutOfStock:
            raise ApiError("out_of_stock", str(MESSAGES["order_sold_out"]), status.HTTP_409_CONFLICT) from None
        except PaymentBlocked:
            raise ApiError("payment_blocked", str(MESSAGES["payment_blocked"]), status.HTTP_403_FORBIDDEN) from None
        except PaymentError:
            payment = None  # the order stands; the shopper retries payment from its page
        body = {"order_token": order.token, "order": order_status_payload(order), "payment": payment_payload(payment)}
        return Response(body, status=status.HTTP_201_CREATED)


ORDER_TOKEN = OpenApiParameter(
    "token", str, OpenApiParameter.PATH, pattern=r"^[A-Za-z0-9_-]+$", description="The order's secret token."
)


def _order_or_404(token: str) -> Order:
    order = order_get_by_token(token=token)
    if order is None:
        raise ApiError("order_not_found", _("No order with that token."), status.HTTP_404_NOT_FOUND)
    return order


# What a token may look like (ORDER_TOKEN's pattern): anything else is not looked up (PostgreSQL refuses NUL).
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,128}")


def order_status_etag(*, token: str, variant: tuple) -> str | None:
    """A strong ETag of the order's status payload (order_status_payload), or None when no order has the token.

    A digest of every column the payload is drawn from (the order's, its lines', whether a line has sold keys),
    read in one query, and of `variant`: what else changes the bytes (language, media type). The order's
    `updated_at` alone would miss changes: delivery that leaves the status where it was (one backorder line of
    two filled) and a second partial refund change lines without saving the order.
    """
    if not _TOKEN_SHAPE.fullmatch(token):
        return None
    rows = (
        Order.objects.filter(token=token)
        .values(
            "number",
            "status",
            "currency",
            "total_amount",
            "lines__pk",
            "lines__product_name",
            "lines__kind",
            "lines__quantity",
            "lines__line_total",
            "lines__delivered_at",
            "lines__refunded_at",
            "lines__booking_reference",
            "subscription__status",
            "subscription__current_period_end",
            "subscription__cancel_at_period_end",
            keys_sold=Exists(LicenseKey.objects.filter(order_line=OuterRef("lines__pk"), status=KeyStatus.SOLD)),
        )
        .order_by("lines__pk")
    )
    drawn_from = [tuple(row.values()) for row in rows]
    if not drawn_from:
        return None
    return f'"{hashlib.blake2b(repr((variant, drawn_from)).encode(), digest_size=16).hexdigest()}"'


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match compares weakly (RFC 9110, 13.1.2): W/"x" matches "x"; "*" matches any order that exists."""
    etags = parse_etags(if_none_match)
    return "*" in etags or etag in {tag.removeprefix("W/") for tag in etags}


class OrderStatusApi(APIView):
    """An order's status and delivered goods, by its secret token.

    Cheap to poll: the answer carries a strong ETag; sent back in If-None-Match while nothing it shows changed,
    it gets 304 Not Modified, with no body, for one query. Still `no-store` (the payload stays out of browser
    caches), so a client keeps the ETag itself; a browser's fetch() does not send it on its own."""

    @extend_schema(
        parameters=[
            ORDER_TOKEN,
            OpenApiParameter(
                "If-None-Match",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="The ETag of the last answer: 304 with no body if nothing changed since.",
            ),
        ],
        responses={200: OrderStatusSerializer, 304: None, **error_responses(404)},
        tags=["orders"],
    )
    def get(self, request, token: str):
        etag = order_status_etag(token=token, variant=(get_language(), request.accepted_media_type))
        if etag is not None and _etag_matches(request.headers.get("If-None-Match", ""), etag):
            response = HttpResponseNotModified()
        else:
            # loaded after the ETag was read: a change in between makes the next poll a 200, never a stale 304
            response = Response(order_status_payload(_order_or_404(token)))
        if etag is not None:
            response["ETag"] = etag
        response["Cache-Control"] = "no-store"
        return response


class PayWithCardTokenSerializer(serializers.Serializer):
    card_token = serializers.RegexField(
        r"^tok_[A-Za-z0-9_]{1,96}$", required=False, help_text="Stripe.js card token; omit for PayPal."
    )
    channel = serializers.SlugField(required=False, help_text="A channel from payment-methods; default: the best.")
    setup_intent = serializers.RegexField(
        r"^seti_[A-Za-z0-9_]{1,96}$",
        required=False,
        help_text="A free trial: the card setup the browser confirmed (Stripe.js confirmCardSetup). Without it, a "
        "trial's order answers requires_setup with the setup's client_secret.",
    )


def _channel_or_404(code: str | None):
    if not code:
        return None
    channel = PaymentChannel.objects.filter(code=code).first()
    if channel is None:
        raise ApiError("channel_not_found", _("No such payment method."), status.HTTP_404_NOT_FOUND)
    return channel


class OrderPaymentMethodsApi(APIView):
    """The ways this order can be paid right now, best first."""

    @extend_schema(
        parameters=[ORDER_TOKEN],
        responses={200: PaymentMethodSerializer(many=True), **error_responses(404)},
        tags=["orders"],
    )
    def get(self, request, token: str):
        order = _order_or_404(token)
        offers = channels_for_order(order=order) if order.status == "pending_payment" else []
        return Response(
            [
                {"channel": o.channel.code, "provider": o.channel.provider, "name": o.channel.localized_name}
                for o in offers
            ]
        )


PAY_REFUSALS = (OrderOutOfStock, PaymentBlocked, OrderNotPayable, CheckoutError, PaymentError)


def _refused(exc: Exception, order: Order) -> ApiError:
    """What the shopper is told when paying (or starting a trial) was refused, by the shop or the provider."""
    if isinstance(exc, OrderOutOfStock):
        return ApiError("out_of_stock", str(MESSAGES["order_sold_out"]), status.HTTP_409_CONFLICT)
    if isinstance(exc, PaymentBlocked):
        return ApiError("payment_blocked", str(MESSAGES["payment_blocked"]), status.HTTP_403_FORBIDDEN)
    if isinstance(exc, OrderNotPayable):
        return ApiError(
            "order_not_payable",
            _("This order can no longer be paid."),
            status.HTTP_409_CONFLICT,
            order_url=reverse("order-detail", kwargs={"token": order.token}),
        )
    if isinstance(exc, CheckoutError):  # a free trial: its daily limit, or one already had
        if exc.code == "free_order_limit":
            return ApiError("rate_limited", exc.message, status.HTTP_429_TOO_MANY_REQUESTS)
        return ApiError(exc.code, exc.message, status.HTTP_409_CONFLICT)
    if isinstance(exc, PaymentDeclined):
        return ApiError("payment_declined", str(exc), status.HTTP_402_PAYMENT_REQUIRED)
    if exc.status is not None and 400 <= exc.status < 500 and exc.status not in ACCOUNT_TROUBLE:
        # The provider refused this request (an unknown or spent card token): trying again will not help,
        # entering the card again will. payments.health does not count it against the channel either.
        return ApiError(
            "payment_declined",
            _("The card could not be read; please enter it again."),
            status.HTTP_402_PAYMENT_REQUIRED,
        )
    return ApiError("payment_unavailable", str(exc), status.HTTP_503_SERVICE_UNAVAILABLE)


class OrderPayApi(APIView):
    """Pay the order: with a Stripe.js card token (confirmed on the server), or open a PayPal payment and
    get its approval URL. `channel` picks the way to pay; by default the best one that answers."""

    @extend_schema(
        request=PayWithCardTokenSerializer,
        parameters=[ORDER_TOKEN],
        responses={200: PaymentSessionSerializer, **error_responses(400, 402, 403, 404, 409, 415, 503)},
        tags=["orders"],
    )
    def post(self, request, token: str):
        order = _order_or_404(token)
        data = PayWithCardTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        channel = _channel_or_404(data.validated_data.get("channel"))
        if channel is not None and order.status == OrderStatus.PENDING_PAYMENT:
            refusal = channel_refusal(channel, order=order, country=shopper_country(order))
            if refusal and refusal != "breaker open":  # an outage is a 503 below; the rest is the client's choice
                raise ApiError(
                    "channel_unavailable",
                    _("%(name)s is unavailable right now.") % {"name": channel.localized_name},  # as the pay page
                    status.HTTP_409_CONFLICT,
                )
        card_token = data.validated_data.get("card_token", "")
        if order.trial_days:
            return self._start_trial(order, data.validated_data.get("setup_intent", ""), channel)
        try:
            payment = payment_start_for_order(order=order, channel=channel)
            if payment.provider == "stripe":
                if not card_token:
                    raise ApiError("card_token_required", _("A card token is required."), status.HTTP_400_BAD_REQUEST)
                payment = payment_confirm_card(payment=payment, card_token=card_token)
        except PAY_REFUSALS as exc:
            raise _refused(exc, order) from None
        if payment.status == PaymentStatus.FAILED:
            raise ApiError(
                "payment_declined",
                payment.failure_message or _("Your card was declined."),
                status.HTTP_402_PAYMENT_REQUIRED,
            )
        return Response(payment_payload(payment))

    def _start_trial(self, order: Order, setup_ref: str, channel: PaymentChannel | None) -> Response:
        """A free trial (storefront.flow.trials): without `setup_ref`, open the card's setup for the browser to
        confirm; with it, keep the card and start the trial. Nothing is charged."""
        try:
            if not setup_ref:
                setup = trial_card_setup(order=order, channel=channel)
                opened = {"provider": "stripe", "status": "requires_setup", "client_secret": setup.client_secret}
                return Response(opened)
            order = trial_start(order=order, setup_ref=setup_ref, channel=channel)
        except PAY_REFUSALS as exc:
            raise _refused(exc, order) from None
        return Response({"provider": "stripe", "status": "trial_started", "order_status": order.status})
