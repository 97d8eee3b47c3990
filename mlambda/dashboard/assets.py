"""The dashboard's static files (its script and style, uPlot): read once, each with a
fingerprint of its content and a gzipped copy.

A page links `/dashboard/static/NAME?v=FINGERPRINT`; that URL's bytes never change, so
the browser may keep them a year without asking again (`immutable`). A request without
the current fingerprint (an old page, a hand-typed URL) gets the file with `no-cache`
and an ETag, so it is revalidated instead of kept stale.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREFIX = "/dashboard/static"
GZIP_LEVEL = 6  # compressed once per process: the smaller file is worth the millisecond
MIN_GZIP = 1024  # bytes: below this gzip saves nothing worth a header


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None  # None when it would not be smaller
    content_type: str
    fingerprint: str  # the first 16 hex digits of the body's sha256

    @property
    def etag(self) -> str:
        return f'"{self.fingerprint}"'


@cache
def assets() -> dict[str, Asset]:
    """Every file under static/, by its path there ("vendor/uPlot.min.css"): read once."""
    return {path.relative_to(STATIC_DIR).as_posix(): load(path)
            for path in sorted(STATIC_DIR.rglob("*")) if path.is_file()}


def asset(name: str) -> Asset | None:
    return assets().get(name)


def load(path: Path) -> Asset:
    body = path.read_bytes()
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind.endswith("javascript"):
        kind += "; charset=utf-8"
    packed = gzip.compress(body, GZIP_LEVEL, mtime=0) if len(body) >= MIN_GZIP else None
    return Asset(body, packed if packed and len(packed) < len(body) else None, kind,
                 hashlib.sha256(body).hexdigest()[:16])


def url(name: str) -> str:
    """The URL a page links: fingerprinted, so a new version is a new URL."""
    found = asset(name)
    return f"{PREFIX}/{name}" + (f"?v={found.fingerprint}" if found else "")
