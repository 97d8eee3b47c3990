"""The E.SUN handwriting API (see ESUN.md): request {esun_uuid, esun_timestamp, image
(base64), retry}, response exactly {esun_uuid, server_uuid, answer, server_timestamp}.

One model call per batch. The model is read from the volume (`mlambda.volume.Model`): a
new version pushed there is picked up at the next batch without a restart. Retries of a
question (same esun_uuid and image) are answered once by the gateway (the route's
idempotency option), not here: every event this handler gets is computed from its image.
"""

from __future__ import annotations

import os
import time
from typing import Any

import esun
import preprocess
from classifier import load
from esun import response

from mlambda.volume import Model

MODEL = Model(os.environ.get("HANDWRITING_MODEL", "handwriting"), load)
try:
    MODEL.get()  # load at init, as a Lambda function would, so the first call is not slower
except Exception as exc:  # no usable model in the volume yet: each call will report it
    print(f"handwriting: no model loaded at init: {type(exc).__name__}: {exc}")
SERVER_UUID = esun.server_uuid()


def batch_handler(events: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
    out, uuids, images = esun.questions(events)
    if images:
        answers = MODEL.get()(preprocess.batch(images))
        now = int(time.time())
        for (i, uuid), answer in zip(uuids.items(), answers, strict=True):
            out[i] = response(200, {"esun_uuid": uuid, "server_uuid": SERVER_UUID,
                                    "answer": answer, "server_timestamp": now})
    return [r for r in out if r is not None]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return batch_handler([event], context)[0]
