"""API keys: random secrets, stored as their SHA-256 only, checked in constant time.

A key is 32 random bytes (256 bits), so a fast hash is enough: there is nothing to
brute-force that a slow hash would protect. The secret is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "mlk_"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    role: str  # "admin" | "invoke"
    key_hash: str


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "k_" + secrets.token_hex(6)


def hash_secret(secret: str | bytes) -> str:
    raw = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(raw).hexdigest()


class KeyRing:
    """The keys in force, by hash: the request path does one hash and one lookup."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.by_hash = {k.key_hash: k for k in keys}

    def check(self, secret: bytes) -> ApiKey | None:
        digest = hash_secret(secret)
        key = self.by_hash.get(digest)
        if key is None or not hmac.compare_digest(key.key_hash, digest):
            return None
        return key
