"""Request bodies, each unique, and the check of each answer.

Every body carries an id made of the run's nonce, a counter and the time it was sent
(CLOCK_MONOTONIC, microseconds): unique per request (so no answer comes from a cache of
recent questions), and, when the answer echoes it (the E.SUN contract does), the
latency of that very request can be read back from the answer.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

PLACEHOLDER = "MLAMBDA_ID"
ESUN_PATH = "/inference"  # the E.SUN route: bodies from images unless a payload is given
ESUN_KEYS = {"esun_uuid", "server_uuid", "answer", "server_timestamp"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def default_images() -> Path:
    """tests/data/handwriting: of the working directory, else of this source tree."""
    here = Path("tests/data/handwriting")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "tests" / "data" / "handwriting"


@dataclass(frozen=True)
class Bodies:
    """Templates with `PLACEHOLDER` where the id goes; `kind` says how answers are checked:
    "esun" (status 200, exactly the four keys, the id echoed) or "status" (status 200 and,
    through the Invoke API, no function error)."""

    templates: tuple[str, ...]
    kind: str
    nonce: str

    def body(self, n: int, sent_us: int) -> bytes:
        return self.templates[n % len(self.templates)].replace(
            PLACEHOLDER, make_id(self.nonce, n, sent_us)).encode()


def make_id(nonce: str, n: int, sent_us: int) -> str:
    """64 hex digits: nonce (16), counter (16), send time in us (16), padding (16)."""
    return f"{nonce}{n & (2**64 - 1):016x}{sent_us:016x}{0:016x}"


def esun_bodies(folder: Path) -> Bodies:
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"--images {folder}: no image files (.jpg, .png...) there")
    templates = tuple(json.dumps({
        "esun_uuid": PLACEHOLDER, "esun_timestamp": 0,
        "image": base64.b64encode(p.read_bytes()).decode("ascii"), "retry": 2})
        for p in images)
    return Bodies(templates, "esun", secrets.token_hex(8))


def template_bodies(text: str) -> Bodies:
    """A JSON payload; `MLAMBDA_ID` in it (e.g. {"id": "MLAMBDA_ID"}) gets the id; without
    it, the id goes in an extra `loadtest_id` key of a JSON object."""
    if PLACEHOLDER not in text:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"--payload: not JSON: {exc}") from None
        if isinstance(value, dict):
            value["loadtest_id"] = PLACEHOLDER
            text = json.dumps(value)
    return Bodies((text,), "status", secrets.token_hex(8))


def check(bodies: Bodies, status: int, answer: bytes, sent_id: str | None,
          function_error: bool) -> bool:
    """Is this answer right (status and shape)?"""
    if status != 200 or function_error:
        return False
    if bodies.kind != "esun":
        return True
    try:
        value = json.loads(answer)
    except ValueError:
        return False
    return (isinstance(value, dict) and set(value) == ESUN_KEYS
            and isinstance(value["answer"], str) and isinstance(value["server_timestamp"], int)
            and (sent_id is None or value["esun_uuid"] == sent_id))
