"""Merchant API keys: made and revoked in admin, shown once, kept as a SHA-256, scoped, and every call audited."""

import hashlib
import logging
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from storefront.models import MerchantApiCall, MerchantApiKey, MerchantApiScope

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "mk_"
LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def api_key_create(*, name: str, scopes: list[str], actor: str) -> tuple[MerchantApiKey, str]:
    """A new key with these scopes. Returns it and the token, the only time the token exists in clear."""
    unknown = set(scopes) - set(MerchantApiScope.values)
    if unknown or not scopes:
        raise ValueError(f"unknown or no scopes: {sorted(unknown)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = MerchantApiKey.objects.create(
        name=name, prefix=token[:10], key_hash=_hash(token), scopes=sorted(set(scopes)), created_by=actor[:100]
    )
    logger.info("%s created merchant API key %s (%s)", actor, key.pk, ", ".join(key.scopes))
    return key, token


def api_key_revoke(*, key_id: int, actor: str) -> bool:
    """Revoke a key for good; its calls stay in the audit. Returns whether it was live."""
    revoked = MerchantApiKey.objects.filter(pk=key_id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if revoked:
        logger.info("%s revoked merchant API key %s", actor, key_id)
    return bool(revoked)


def api_key_authenticate(token: str) -> MerchantApiKey | None:
    """The live key this token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    key = MerchantApiKey.objects.filter(key_hash=_hash(token), revoked_at__isnull=True).first()
    if key is not None:
        now = timezone.now()
        if key.last_used_at is None or key.last_used_at < now - LAST_USED_EVERY:
            MerchantApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
    return key


def api_call_record(*, key: MerchantApiKey | None, method: str, path: str, status: int, ip: str | None) -> None:
    """Audit one call (refused ones too), in its own transaction whatever the view did."""
    with transaction.atomic():
        MerchantApiCall.objects.create(
            key=key, method=method[:8], path=path[:300], status=status, ip=ip, created_at=timezone.now()
        )
