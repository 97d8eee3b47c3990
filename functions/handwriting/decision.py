"""Logits -> answers: the top class, and `isnull` when the model is unsure. The one
definition, used by the function (app.py) and by training/evaluate.py and
training/calibrate.py, so that what is measured is what is served."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

THRESHOLD_KEY = "null_threshold"  # in the model's metadata: set by training/calibrate.py


def top_class(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top class and its softmax probability."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return np.argmax(logits, axis=1), 1.0 / np.exp(shifted).sum(axis=1)


def decide(best: np.ndarray, confidence: np.ndarray, null: int, threshold: float) -> np.ndarray:
    """`null` (the isnull class) where the top class's probability is below the threshold."""
    return np.where(confidence < threshold, null, best) if threshold > 0 else best


def threshold_of(metadata: Mapping[str, str], name: str) -> float:
    """The model's isnull threshold (0: none), refused unless in [0, 1)."""
    threshold = float(metadata.get(THRESHOLD_KEY, 0.0))
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"{name}: {THRESHOLD_KEY} {threshold} is not in [0, 1)")
    return threshold
