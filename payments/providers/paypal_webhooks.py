"""Verifying PayPal webhooks, offline or by PayPal's own verify-webhook-signature call.

Offline (the default): PayPal signs `transmission_id|transmission_time|webhook_id|crc32(body)` with
RSA-SHA256 (PKCS#1 v1.5) and names its certificate in PAYPAL-CERT-URL, a header anyone can send. The URL
must be https on port 443 of one of PayPal's hosts (settings.PAYPAL_CERT_HOSTS), written plainly: no
userinfo, backslash, other port or look-alike spelling of the host. The shop fetches an address it rebuilds
from those checked parts (never the header's own text, which an HTTP client may read differently), follows
no redirect, and caches the key per rebuilt address. The chain served must lead to a trusted root
(settings.PAYPAL_CERT_TRUST, a PEM bundle; the certifi bundle by default) for the name PayPal signs with
(settings.PAYPAL_CERT_NAME). Tests point the hosts and the trust at a certificate of their own, and
settings.PAYPAL_CERT_ALLOW_HTTP lets the suite's certificate server speak plain http on its own port.

Online (settings.PAYPAL_WEBHOOK_VERIFY = "api"): PayPal answers SUCCESS or FAILURE for the same facts.
"""

import base64
import binascii
import logging
import re
import threading
import time
import warnings
import zlib
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests
import urllib3
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from django.conf import settings

from payments.providers.base import WebhookRejected
from payments.providers.webhook_input import load_event

logger = logging.getLogger(__name__)

MAX_CERT_BYTES = 64 * 1024
MAX_CERT_URL_LENGTH = 2048
CERT_CACHE_SECONDS = 24 * 3600
CERT_FETCH_TIMEOUT = 5  # seconds, to connect and for each read
_CERT_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")  # PayPal's: /v1/notifications/certs/CERT-360caa42-...
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
        event = load_event(payload)  # a body the shop cannot read is refused before PayPal is asked
        try:
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
    source = certificate_source(url)
    now = time.monotonic()
    with _cache_lock:
        cached = _cert_cache.get(source)
        if cached and cached[0] > now:
            return cached[1]
    chain = _download(source)
    key = _verified_key(chain)
    with _cache_lock:
        _cert_cache[source] = (now + CERT_CACHE_SECONDS, key)
    return key


def certificate_source(url: str) -> str:
    """The address to fetch the certificate from, rebuilt from the parts of `url` that were checked.

    Only https on port 443 of a host in settings.PAYPAL_CERT_HOSTS, spelled exactly (printable ASCII; no
    userinfo, backslash, query or other port; a trailing dot or an IDN look-alike is another host). With
    settings.PAYPAL_CERT_ALLOW_HTTP (the test suite's certificate server) plain http on any port also passes.
    Whatever an HTTP client would make of the raw header, it only ever sees the address returned here.
    """
    if (
        not isinstance(url, str)
        or len(url) > MAX_CERT_URL_LENGTH
        or not url.isascii()
        or not url.isprintable()
        or any(char in url for char in " \\@")
    ):
        raise WebhookRejected("certificate URL is not PayPal's")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port  # the host in lower case
    except ValueError:  # an unclosed [ or a port that is not a number
        raise WebhookRejected("certificate URL is not PayPal's") from None
    if (
        host not in {allowed.lower() for allowed in settings.PAYPAL_CERT_HOSTS}
        or parts.netloc.lower() not in (host, f"{host}:{port}")  # nothing else in the authority
        or parts.query
        or parts.fragment
        or not _CERT_PATH.fullmatch(parts.path)
    ):
        raise WebhookRejected("certificate URL is not PayPal's")
    if parts.scheme == "https" and port in (None, 443):
        return f"https://{host}{parts.path}"
    if parts.scheme == "http" and settings.PAYPAL_CERT_ALLOW_HTTP:
        return f"http://{host}{f':{port}' if port is not None else ''}{parts.path}"
    raise WebhookRejected("certificate URL is not PayPal's")


def _download(source: str) -> bytes:
    try:
        with requests.get(source, timeout=CERT_FETCH_TIMEOUT, stream=True, allow_redirects=False) as response:
            if response.status_code != 200:  # a redirect included: it is not followed
                raise WebhookRejected(f"the certificate server answered {response.status_code}")
            body = response.raw.read(MAX_CERT_BYTES + 1, decode_content=True)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
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
    except VerificationError as exc:  # the webhook view logs the reason, once
        raise WebhookRejected(f"certificate is not issued to PayPal by a trusted authority ({exc})") from None
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRejected("certificate key is not RSA")
    return key


def clear_certificate_cache() -> None:
    with _cache_lock:
        _cert_cache.clear()
