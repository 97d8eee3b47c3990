"""API keys: random secrets, stored as their SHA-256 only, checked in constant time.

A key is 32 random bytes (256 bits), so a fast hash is enough: there is nothing to
brute-force that a slow hash would protect. The secret is shown once, at creation.

A key has a role (what it may do), an optional usage plan, an optional scope (the
functions it may invoke), an optional expiry, and a state (active, disabled, revoked).
During a rotation's grace period the previous secret works too.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from mlambda.errors import Forbidden
from mlambda.plans import Plan

PREFIX = "mlk_"
ROLES = ("invoke", "admin", "metrics")
# What each role may do: invoke functions, use the admin API, read /metrics.
GRANTS = {"invoke": frozenset({"invoke"}), "admin": frozenset(ROLES),
          "metrics": frozenset({"metrics"})}
ACTIVE, DISABLED, REVOKED = "active", "disabled", "revoked"
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    role: str  # "invoke" | "admin" | "metrics"
    key_hash: str
    weight: int = 1  # the plan's weight: the key's share of a contended queue
    plan: Plan | None = None
    functions: frozenset[str] | None = None  # the functions it may invoke; None: all
    state: str = ACTIVE
    created_at: float = 0.0
    expires_at: float | None = None
    old_hash: str | None = None  # the previous secret, during a rotation's grace period
    old_until: float | None = None
    last_used: float | None = None  # as last persisted

    def may(self, action: str) -> bool:
        return action in GRANTS.get(self.role, ())


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "k_" + secrets.token_hex(6)


def hash_secret(secret: str | bytes) -> str:
    raw = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(raw).hexdigest()


def _utc(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyRing:
    """The keys, by hash: the request path does one hash and one lookup. The control
    plane calls `replace` after every change; readers see the old or the new ring whole."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.by_hash: dict[str, ApiKey] = {}
        self.previous: dict[str, ApiKey] = {}
        self.replace(keys)

    def replace(self, keys: list[ApiKey]) -> None:
        by_hash = {k.key_hash: k for k in keys}
        previous = {k.old_hash: k for k in keys if k.old_hash is not None}
        self.by_hash, self.previous = by_hash, previous

    def check(self, secret: bytes, now: float) -> ApiKey:
        """The key whose secret this is, if it may be used at `now`; else Forbidden with
        the reason (invalid, disabled, revoked, expired, rotated)."""
        digest = hash_secret(secret)
        key = self.by_hash.get(digest)
        if key is not None and hmac.compare_digest(key.key_hash, digest):
            pass
        else:
            key = self.previous.get(digest)
            if key is None or key.old_hash is None or \
                    not hmac.compare_digest(key.old_hash, digest):
                raise Forbidden("invalid API key")
            if key.old_until is None or now >= key.old_until:
                raise Forbidden(f"API key {key.name} was rotated and its previous secret "
                                f"stopped working at {_utc(key.old_until or 0)}: "
                                "use the new secret")
        if key.state != ACTIVE:
            raise Forbidden(f"API key {key.name} is {key.state}")
        if key.expires_at is not None and now >= key.expires_at:
            raise Forbidden(f"API key {key.name} expired at {_utc(key.expires_at)}")
        return key
