"""The provider behind a channel, built from the credentials its environment variables hold."""

import threading

from django.conf import settings

from payments.models import PaymentChannel, Provider
from payments.providers.base import PaymentError, PaymentProvider
from payments.providers.paypal import PayPalProvider
from payments.providers.stripe import StripeProvider

_cache: dict[tuple, PaymentProvider] = {}
_lock = threading.Lock()


class ChannelNotConfigured(PaymentError):
    """The channel names credentials that are not set, or a provider this shop does not know."""


def provider_for_channel(channel: PaymentChannel) -> PaymentProvider:
    """One provider object per channel and credentials, kept per process (PayPal reuses its OAuth token)."""
    credentials = (channel.credential("public_key"), channel.credential("secret"), channel.credential("webhook"))
    timeouts = (settings.STRIPE_TIMEOUT_SECONDS, settings.PAYPAL_TIMEOUT_SECONDS)
    key = (channel.pk, channel.provider, _api_base(channel), channel.live, credentials, timeouts)
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    provider = _build(channel, *credentials)
    with _lock:
        _cache[key] = provider
    return provider


def provider_cache_clear() -> None:
    """Forget every provider object (their HTTP sessions too), e.g. after a provider's address changed."""
    with _lock:
        _cache.clear()


def _api_base(channel: PaymentChannel) -> str:
    if channel.provider == Provider.STRIPE:
        return channel.api_base or settings.STRIPE_API_BASE
    return channel.api_base


def _build(channel: PaymentChannel, public_key: str, secret: str, webhook: str) -> PaymentProvider:
    if channel.provider == Provider.STRIPE:
        if not secret:
            raise ChannelNotConfigured(f"channel {channel.code}: {channel.secret_env or 'secret_env'} is not set")
        return StripeProvider(
            secret_key=secret,
            webhook_secret=webhook,
            api_base=_api_base(channel),
            timeout=settings.STRIPE_TIMEOUT_SECONDS,
        )
    if channel.provider == Provider.PAYPAL:
        if not (public_key and secret):
            raise ChannelNotConfigured(f"channel {channel.code}: PayPal client id or secret is not set")
        return PayPalProvider(
            client_id=public_key,
            client_secret=secret,
            webhook_id=webhook,
            api_base=channel.api_base,
            live=channel.live,
            timeout=settings.PAYPAL_TIMEOUT_SECONDS,
        )
    raise ChannelNotConfigured(f"channel {channel.code}: unknown provider {channel.provider!r}")
