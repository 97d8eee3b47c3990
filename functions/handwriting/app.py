"""The E.SUN handwriting API (see ESUN.md): request {esun_uuid, esun_timestamp, image
(base64), retry}, response exactly {esun_uuid, server_uuid, answer, server_timestamp}.

One model call per batch. The model is read from the volume (`mlambda.volume.Model`): a
new version pushed there is picked up at the next batch without a restart. Retries of a
question (same esun_uuid and image) are answered once by the gateway (the route's
idempotency option), not here: every event this handler gets is computed from its image.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import decision
import numpy as np
import onnxruntime as ort
import preprocess

from mlambda.volume import Model

NULL = "isnull"


@dataclass(frozen=True)
class Classifier:
    session: ort.InferenceSession
    labels: list[str]
    null_threshold: float = 0.0  # below this top-class probability the answer is isnull

    def __call__(self, images: np.ndarray) -> list[str]:
        best, confidence = decision.top_class(self.session.run(None, {"image": images})[0])
        answers = decision.decide(best, confidence, len(self.labels) - 1, self.null_threshold)
        return [self.labels[i] for i in answers]


def load(path: Path) -> Classifier:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one thread per instance: instances share the cores
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    labels = json.loads(meta["labels"])
    if len(labels) != session.get_outputs()[0].shape[1] or labels[-1] != NULL:
        raise ValueError(f"{path.name}: labels in its metadata do not match its output")
    return Classifier(session, labels, decision.threshold_of(meta, path.name))


MODEL = Model(os.environ.get("HANDWRITING_MODEL", "handwriting"), load)
try:
    MODEL.get()  # load at init, as a Lambda function would, so the first call is not slower
except Exception as exc:  # no usable model in the volume yet: each call will report it
    print(f"handwriting: no model loaded at init: {type(exc).__name__}: {exc}")
SERVER_UUID = hashlib.sha256(
    (os.environ["ESUN_CAPTAIN_EMAIL"] + os.environ["ESUN_SALT"]).encode()).hexdigest()


class BadField(ValueError):
    pass


def response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps(body, ensure_ascii=False)}


def bad(message: str) -> dict[str, Any]:
    return response(400, {"errorType": "InvalidRequestContentException", "errorMessage": message})


def parse(event: dict[str, Any]) -> tuple[str, np.ndarray]:
    """(esun_uuid, the image ready for the model); raises BadField naming the field."""
    try:
        body = json.loads(event.get("body") or "")
    except ValueError:
        raise BadField("body: expected a JSON object") from None
    if not isinstance(body, dict):
        raise BadField("body: expected a JSON object")
    uuid = body.get("esun_uuid")
    if not isinstance(uuid, str) or not uuid:
        raise BadField("field `esun_uuid`: missing; expected a non-empty string")
    ts = body.get("esun_timestamp")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)):
        raise BadField("field `esun_timestamp`: expected a number (Unix time)")
    retry = body.get("retry")
    if retry is not None and not (
            (isinstance(retry, int) and not isinstance(retry, bool))
            or (isinstance(retry, str) and retry.isdigit())):
        raise BadField("field `retry`: expected an integer or a string of digits")
    image = body.get("image")
    if not isinstance(image, str):
        raise BadField("field `image`: missing; expected the image file as a base64 string")
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise BadField("field `image`: not valid base64") from None
    try:
        return uuid, preprocess.prepare(data)
    except preprocess.ImageError as exc:
        raise BadField(f"field `image`: {exc}") from None


def batch_handler(events: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any] | None] = [None] * len(events)
    uuids: dict[int, str] = {}  # event index -> its esun_uuid, for the good events
    images: list[np.ndarray] = []  # their images, in the same order
    for i, event in enumerate(events):
        try:
            uuid, image = parse(event)
        except BadField as exc:
            out[i] = bad(str(exc))
            continue
        uuids[i] = uuid
        images.append(image)
    if images:
        answers = MODEL.get()(preprocess.batch(images))
        now = int(time.time())
        for (i, uuid), answer in zip(uuids.items(), answers, strict=True):
            out[i] = response(200, {"esun_uuid": uuid, "server_uuid": SERVER_UUID,
                                    "answer": answer, "server_timestamp": now})
    return [r for r in out if r is not None]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return batch_handler([event], context)[0]
