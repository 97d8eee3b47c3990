"""What a load test hits: a gateway route (`POST /inference`) or a function through the
Invoke API (`FUNC[:ALIAS]`), on a local or remote mlambda or any HTTP endpoint."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from mlambda.errors import InvalidParameter

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_FUNCTION = re.compile(r"^[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9_$-]+)?$")


@dataclass(frozen=True)
class Target:
    base_url: str  # scheme://host:port
    method: str
    path: str  # with the query string
    function: str | None  # FUNC[:QUALIFIER] for the Invoke API; None for a route
    label: str

    @property
    def url(self) -> str:
        return self.base_url + self.path

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def is_route(self) -> bool:
        return self.function is None


def parse_target(text: str, base_url: str) -> Target:
    """`POST /inference` (a route), or `echo`, `echo:live` (the Invoke API)."""
    base = base_url.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidParameter(f"--url: expected http://HOST:PORT, got {base_url!r}")
    words = text.split()
    if len(words) == 2:
        method, path = words[0].upper(), words[1]
        if method not in METHODS:
            raise InvalidParameter(f"TARGET: method {words[0]!r}; expected one of {METHODS}")
        if not path.startswith("/"):
            raise InvalidParameter(f"TARGET: path {path!r} must start with '/'")
        return Target(base, method, path, None, f"{method} {path}")
    if len(words) == 1 and _FUNCTION.match(words[0]):
        name, _, qualifier = words[0].partition(":")
        path = f"/2015-03-31/functions/{quote(name)}/invocations"
        if qualifier:
            path += f"?Qualifier={quote(qualifier)}"
        return Target(base, "POST", path, words[0], words[0])
    raise InvalidParameter(
        f"TARGET {text!r}: expected a route such as 'POST /inference' or a function "
        f"such as 'echo:live'")
