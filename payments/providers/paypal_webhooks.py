"""Verifying PayPal webhooks, offline or by PayPal's own verify-webhook-signature call.

Offline (the default): PayPal signs `transmission_id|transmission_time|webhook_id|crc32(body)` with
RSA-SHA256 (PKCS#1 v1.5) and names its certificate in PAYPAL-CERT-URL. The URL must be https on one of
PayPal's hosts (settings.PAYPAL_CERT_HOSTS); the chain it serves must lead to a trusted root
(settings.PAYPAL_CERT_TRUST, a PEM bundle; the certifi bundle by default) for the name PayPal signs
with (settings.PAYPAL_CERT_NAME). Certificates are cached per URL. Tests point the hosts and the
trust at a certificate of their own; nothing else changes.

Online (settings.PAYPAL_WEBHOOK_VERIFY = "api"): PayPal answers SUCCESS or FAILURE for the same facts.
"""

import base64
import binascii
import json
import logging
import threading
import time
import warnings
import zlib
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from django.conf import settings

from payments.providers.base import WebhookRejected

logger = logging.getLogger(__name__)

MAX_CERT_BYTES = 64 * 1024
CERT_CACHE_SECONDS = 24 * 3600
_HEADERS = ("transmission-id", "transmission-time", "transmission-sig", "cert-url", "auth-algo")
_cert_cache: dict[str, tuple[float, rsa.RSAPublicKey]] = {}
_cache_lock = threading.Lock()


def _header(headers: dict[str, str], name: str) -> str:
    wanted = f"paypal-{name}"
    for key, value in headers.items():
        if key.lower() == wanted:
            return value or ""
    return ""


class WebhookVerifier:
    def __init__(self, *, webhook_id: str, api_base: str, client_id: str, client_secret: str):
        self.webhook_id = webhook_id
        self.api_base = api_base
        self._client_id = client_id
        self._client_secret = client_secret

    def verify(self, *, payload: bytes, headers: dict[str, str]) -> None:
        """Raise WebhookRejected unless PayPal signed exactly this body for this shop's webhook."""
        if not self.webhook_id:
            raise WebhookRejected("this channel has no PayPal webhook id configured")
        facts = {name: _header(headers, name) for name in _HEADERS}
        missing = [name for name, value in facts.items() if not value]
        if missing:
            raise WebhookRejected(f"missing PayPal headers: {', '.join(missing)}")
        if facts["auth-algo"] != "SHA256withRSA":
            raise WebhookRejected("unsupported signature algorithm")
        if settings.PAYPAL_WEBHOOK_VERIFY == "api":
            self._verify_by_api(payload, facts)
        else:
            self._verify_offline(payload, facts)

    def _verify_offline(self, payload: bytes, facts: dict[str, str]) -> None:
        key = certificate_key(facts["cert-url"])
        signed = f"{facts['transmission-id']}|{facts['transmission-time']}|{self.webhook_id}|{zlib.crc32(payload)}"
        try:
            signature = base64.b64decode(facts["transmission-sig"], validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRejected("signature is not base64") from None
        try:
            key.verify(signature, signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise WebhookRejected("signature verification failed") from None

    def _verify_by_api(self, payload: bytes, facts: dict[str, str]) -> None:
        try:
            event = json.loads(payload)
            token = requests.post(
                f"{self.api_base}/v1/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(self._client_id, self._client_secret),
                timeout=10,
            )
            token.raise_for_status()
            answer = requests.post(
                f"{self.api_base}/v1/notifications/verify-webhook-signature",
                json={
                    "auth_algo": facts["auth-algo"],
                    "cert_url": facts["cert-url"],
                    "transmission_id": facts["transmission-id"],
                    "transmission_sig": facts["transmission-sig"],
                    "transmission_time": facts["transmission-time"],
                    "webhook_id": self.webhook_id,
                    "webhook_event": event,
                },
                headers={"Authorization": f"Bearer {token.json()['access_token']}"},
                timeout=10,
            )
            answer.raise_for_status()
            status = answer.json().get("verification_status")
        except (ValueError, KeyError, requests.RequestException) as exc:
            # PayPal will deliver it again; a 400 tells it to.
            raise WebhookRejected(f"could not verify with PayPal ({type(exc).__name__})") from exc
        if status != "SUCCESS":
            raise WebhookRejected("PayPal says the signature is not valid")


def certificate_key(url: str) -> rsa.RSAPublicKey:
    """The public key of the certificate at `url`, after checking where it comes from and who issued it."""
    parts = urlsplit(url)
    hosts = set(settings.PAYPAL_CERT_HOSTS)
    allowed_scheme = parts.scheme == "https" or (parts.scheme == "http" and settings.PAYPAL_CERT_ALLOW_HTTP)
    if not allowed_scheme or parts.hostname not in hosts and parts.netloc not in hosts:
        raise WebhookRejected("certificate URL is not PayPal's")
    now = time.monotonic()
    with _cache_lock:
        cached = _cert_cache.get(url)
        if cached and cached[0] > now:
            return cached[1]
    chain = _download(url)
    key = _verified_key(chain)
    with _cache_lock:
        _cert_cache[url] = (now + CERT_CACHE_SECONDS, key)
    return key


def _download(url: str) -> bytes:
    try:
        response = requests.get(url, timeout=5, stream=True, allow_redirects=False)
        response.raise_for_status()
        body = response.raw.read(MAX_CERT_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise WebhookRejected(f"could not fetch the certificate ({type(exc).__name__})") from exc
    if len(body) > MAX_CERT_BYTES:
        raise WebhookRejected("certificate is too large")
    return body


def _trust_store() -> Store:
    path = settings.PAYPAL_CERT_TRUST
    if not path:
        import certifi

        path = certifi.where()
    with open(path, "rb") as handle, warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)  # old roots with odd serial numbers
        return Store(x509.load_pem_x509_certificates(handle.read()))


def _verified_key(chain_pem: bytes) -> rsa.RSAPublicKey:
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise WebhookRejected("certificate is not PEM") from None
    leaf, intermediates = certs[0], certs[1:]
    verifier = (
        PolicyBuilder()
        .store(_trust_store())
        .time(datetime.now(UTC))
        .build_server_verifier(x509.DNSName(settings.PAYPAL_CERT_NAME))
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        logger.warning("paypal webhook certificate refused: %s", exc)
        raise WebhookRejected("certificate is not issued to PayPal by a trusted authority") from None
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRejected("certificate key is not RSA")
    return key


def clear_certificate_cache() -> None:
    with _cache_lock:
        _cert_cache.clear()
