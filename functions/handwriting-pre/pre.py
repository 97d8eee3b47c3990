"""The E.SUN handwriting API as the first of two chained functions: the contract and the
image's decoding and preprocessing here; the model in `handwriting-infer`, called once
per batch through `context.invoke_many` so that it gets the whole batch at once.

Same answers as the one-function `handwriting` (the same modules do the same steps);
switch between them by moving the route (README: `mlambda routes add POST /inference
handwriting-pre:live`, with the route's idempotency option)
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

import esun
import numpy as np
from esun import response

INFER = os.environ.get("HANDWRITING_INFER", "handwriting-infer:live")
SERVER_UUID = esun.server_uuid()


def pixels(image: np.ndarray) -> dict[str, Any]:
    """The preprocessed image as handwriting-infer's event: uint8 SIZE x SIZE, base64."""
    return {"pixels": base64.b64encode(image.tobytes()).decode("ascii")}


def batch_handler(events: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
    out, uuids, images = esun.questions(events)
    if images:
        answers = context.invoke_many(
            INFER, [pixels(image) for image in images],
            trace_ids=[context.trace_ids[i] for i in uuids], return_exceptions=True)
        now = int(time.time())
        for (i, uuid), answer in zip(uuids.items(), answers, strict=True):
            if isinstance(answer, Exception):  # the model call failed: this question alone
                out[i] = response(502, {"errorType": getattr(answer, "error_type", "Error"),
                                        "errorMessage": str(answer)})
            else:
                out[i] = response(200, {"esun_uuid": uuid, "server_uuid": SERVER_UUID,
                                        "answer": answer["answer"], "server_timestamp": now})
    return [r for r in out if r is not None]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return batch_handler([event], context)[0]
