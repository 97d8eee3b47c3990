"""Dashboard sessions, kept on the server: the browser holds only a random token (in an
HttpOnly, SameSite=Strict cookie); we keep its hash, the key it was opened with, its
CSRF token and its deadlines. A session ends at sign-out, after `idle_s` without a
request, after `max_s` in all, or when its key may no longer be used (revoked, disabled,
expired, no longer admin); a rotation keeps it. Sessions live in memory:
a restart of the server signs everyone out.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

TOKEN_BYTES = 32


@dataclass
class Session:
    key_id: str
    csrf: str
    created: float
    last_seen: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, idle_s: float, max_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.max_s = max_s
        self.clock = clock
        self.sessions: dict[str, Session] = {}  # by the token's SHA-256

    def open(self, key_id: str) -> tuple[str, Session]:
        """A new session; returns the token for the cookie (shown once, never stored)."""
        self.sweep()
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self.clock()
        session = Session(key_id, secrets.token_urlsafe(TOKEN_BYTES), now, now)
        self.sessions[_digest(token)] = session
        return token, session

    def get(self, token: str | None, key_alive: Callable[[str], bool]) -> Session | None:
        """The live session for `token` (and it counts as activity), or None."""
        if not token:
            return None
        digest = _digest(token)  # a dict lookup by a hash: no timing leak of the token
        session = self.sessions.get(digest)
        if session is None:
            return None
        now = self.clock()
        if (now - session.last_seen > self.idle_s or now - session.created > self.max_s
                or not key_alive(session.key_id)):
            del self.sessions[digest]
            return None
        session.last_seen = now
        return session

    def close(self, token: str | None) -> None:
        if token:
            self.sessions.pop(_digest(token), None)

    def sweep(self) -> None:
        now = self.clock()
        for digest, s in list(self.sessions.items()):
            if now - s.last_seen > self.idle_s or now - s.created > self.max_s:
                del self.sessions[digest]
