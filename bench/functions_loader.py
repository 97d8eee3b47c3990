"""Load the handwriting function's own classifier (its `load`), outside the platform."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def load_classifier(model: Path) -> Callable[[Any], list[str]]:
    sys.path.insert(0, str(ROOT / "functions" / "handwriting"))
    os.environ.setdefault("ESUN_CAPTAIN_EMAIL", "bench@example.com")
    os.environ.setdefault("ESUN_SALT", "bench")
    import app

    classifier: Callable[[Any], list[str]] = app.load(model)
    return classifier
