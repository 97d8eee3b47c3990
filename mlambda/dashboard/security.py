"""What every /dashboard response carries, and the CSRF checks of the forms that change
state (sign-in, sign-out)."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from mlambda.gateway.http import SECURITY_HEADERS

HEADERS = SECURITY_HEADERS


def tokens_match(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def origin_matches(origin: str | None, host: str | None) -> bool:
    """The Origin header names this host; a missing Origin (an old client) is left to the
    CSRF token alone."""
    if origin is None:
        return True
    if origin == "null" or host is None:
        return False
    return urlsplit(origin).netloc == host
