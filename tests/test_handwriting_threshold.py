"""The handwriting function's `isnull` threshold: read from the model's metadata (so a
model swap swaps it too), applied to the real model's answers, refused when out of range."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.conftest import ROOT
from training.calibrate import write_threshold

BUNDLE = ROOT / "functions" / "handwriting"
MODEL = ROOT / "models" / "handwriting.onnx"
CASES = ROOT / "tests" / "data" / "handwriting"


@pytest.fixture(scope="module")
def app() -> Iterator[ModuleType]:
    mp = pytest.MonkeyPatch()
    mp.setenv("ESUN_CAPTAIN_EMAIL", "test@example.com")
    mp.setenv("ESUN_SALT", "test")
    mp.syspath_prepend(str(BUNDLE))
    module = importlib.import_module("app")
    yield module
    sys.modules.pop("app", None)
    mp.undo()


def with_threshold(tmp_path: Path, value: str) -> Path:
    path = tmp_path / f"model-{value}.onnx"
    write_threshold(MODEL, value, path)
    return path


def images(app: ModuleType) -> tuple[np.ndarray, list[str]]:
    cases = [c for c in json.loads((CASES / "cases.json").read_text()) if c["answer"] != "isnull"]
    import preprocess
    batch = np.stack([preprocess.prepare((CASES / c["file"]).read_bytes()) for c in cases])
    return batch[:, None].astype(np.float32) / 255.0, [c["answer"] for c in cases]


def test_shipped_model_carries_a_calibrated_threshold(app: ModuleType) -> None:
    classifier = app.load(MODEL)
    assert 0.0 < classifier.null_threshold < 1.0


def test_threshold_turns_unsure_answers_into_isnull(app: ModuleType, tmp_path: Path) -> None:
    x, answers = images(app)
    plain = app.load(with_threshold(tmp_path, "0.0"))(x)
    # without a threshold the model reads these held-out scans (the model fine-tuned for
    # real scans, issue 9, misses 2 of 40 whose images plainly show the expected
    # character: 菁 read as 青, 技 as 枝; v2 missed none)
    assert sum(a == b for a, b in zip(plain, answers, strict=True)) >= 0.9 * len(answers)
    # no softmax probability reaches 0.99999 (label smoothing; the model fine-tuned on real
    # crops reaches 0.9995 on one of these scans)
    assert app.load(with_threshold(tmp_path, "0.99999"))(x) == ["isnull"] * len(answers)


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_threshold_out_of_range_is_refused(app: ModuleType, tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match="null_threshold"):
        app.load(with_threshold(tmp_path, value))
