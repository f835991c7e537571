"""Random tokens and their hashes, password hashing, and encryption of stored secrets."""

from __future__ import annotations

import base64
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

from errands.errors import ConfigError, ErrandsError

_hasher = PasswordHasher()


def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def new_code() -> str:
    """A code a person types or clicks: short, but unguessable within its lifetime."""
    return secrets.token_urlsafe(18)


def digest(raw: str) -> str:
    """Tokens and codes are random and long, so a plain SHA-256 is enough to store them:
    the store never holds anything that signs someone in."""
    return hashlib.sha256(raw.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


class SecretBoxError(ErrandsError):
    code = "secret_unreadable"
    status = 500


class SecretBox:
    """Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from ERRANDS_SECRET_KEY."""

    def __init__(self, key: str | None) -> None:
        if not key:
            raise ConfigError(
                "Set ERRANDS_SECRET_KEY (a long random string) to store organization secrets."
            )
        derived = hashlib.sha256(b"errands-secrets:" + key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise SecretBoxError(
                "A stored secret cannot be decrypted: ERRANDS_SECRET_KEY changed since it was "
                "saved. Save the secret again."
            ) from exc
