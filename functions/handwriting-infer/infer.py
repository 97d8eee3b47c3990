"""The handwriting model as a function of preprocessed images: the second of the two
chained functions (handwriting-pre calls it). Event: {"pixels": base64 of the uint8
SIZE x SIZE array}; result: {"answer": one of the 800 characters or "isnull"}. One model
call per batch; the model comes from the volume, as in `handwriting`."""

from __future__ import annotations

import base64
import os
from typing import Any

import numpy as np
import preprocess
from classifier import load

from mlambda.volume import Model

MODEL = Model(os.environ.get("HANDWRITING_MODEL", "handwriting"), load)
try:
    MODEL.get()  # load at init, as a Lambda function would, so the first call is not slower
except Exception as exc:  # no usable model in the volume yet: each call will report it
    print(f"handwriting-infer: no model loaded at init: {type(exc).__name__}: {exc}")


def image_of(event: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(event["pixels"], validate=True)
    if len(raw) != preprocess.SIZE * preprocess.SIZE:
        raise ValueError(f"field `pixels`: expected {preprocess.SIZE}x{preprocess.SIZE} "
                         f"bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(preprocess.SIZE, preprocess.SIZE)


def batch_handler(events: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
    images = preprocess.batch([image_of(e) for e in events])
    return [{"answer": answer} for answer in MODEL.get()(images)]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return batch_handler([event], context)[0]
