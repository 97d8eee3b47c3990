"""The label set: the organiser's 800 characters in their original order, then `isnull`."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_CHARS = ROOT.parent / "shared" / "esun_800_chars.txt"
SHIPPED = ROOT / "models" / "handwriting.labels.txt"
NULL = "isnull"


def load_labels() -> list[str]:
    """From shared/ when it is there (the source), else the list shipped with the model."""
    source = SHARED_CHARS if SHARED_CHARS.exists() else SHIPPED
    chars = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()
             if line.strip()]
    chars = [c for c in chars if c != NULL]
    if len(chars) != 800 or len(set(chars)) != 800:
        raise ValueError(f"{source}: expected 800 distinct characters, got {len(chars)}")
    return [*chars, NULL]
