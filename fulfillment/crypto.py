"""Encryption at rest for license keys.

Keys are Fernet-encrypted with the first of settings.KEY_ENCRYPTION_KEYS; every key in
the list can decrypt, so a new key is put first and `manage.py rotate_key_encryption`
re-encrypts the pool. Fingerprints are an HMAC under a separate secret, so duplicates
are found without decrypting anything.
"""

import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.KEY_ENCRYPTION_KEYS))


def encrypt_secret(plaintext: str) -> bytes:
    return _current().encrypt(plaintext.encode("utf-8"))


def decrypt_secret(ciphertext: bytes) -> str:
    return _current().decrypt(bytes(ciphertext)).decode("utf-8")


@lru_cache(maxsize=4)
def _fernets(keys: tuple[str, ...]) -> tuple[Fernet, ...]:
    return tuple(Fernet(k.encode()) for k in keys)


def decrypt_secret_naming_key(ciphertext: bytes) -> tuple[str, int]:
    """The plaintext and the position in KEY_ENCRYPTION_KEYS of the key that opens it (0: the current one).

    Raises cryptography.fernet.InvalidToken when none of the configured keys does (verify_integrity).
    """
    token = bytes(ciphertext)
    for position, fernet in enumerate(_fernets(tuple(settings.KEY_ENCRYPTION_KEYS))):
        try:
            return fernet.decrypt(token).decode("utf-8"), position
        except InvalidToken:
            continue
    raise InvalidToken


def reencrypt_secret(ciphertext: bytes) -> bytes:
    """Re-encrypt under the current primary key (no-op in meaning, new token)."""
    return _current().rotate(bytes(ciphertext))


def fingerprint_secret(plaintext: str) -> str:
    """Keyed fingerprint of a normalised key: equal keys give equal fingerprints."""
    normalised = plaintext.strip()
    return hmac.new(settings.KEY_FINGERPRINT_SECRET.encode(), normalised.encode("utf-8"), hashlib.sha256).hexdigest()
