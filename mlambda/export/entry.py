"""The Lambda entry point of an exported function (`mlambda export aws` writes this file as
`mlambda_entry.py`, with the block below filled in). It imports the function's handler
module, unchanged, and adapts what differs between mlambda and Lambda:

- the event: mlambda gives an `event = "body"` function the request's JSON body, parsed;
  API Gateway's Lambda-proxy integration gives every function the proxy event. A direct
  `lambda invoke` passes its payload through, as mlambda's Invoke API does;
- the answer: a "body" function returns a value, sent as a JSON 200 (as mlambda's
  gateway does); a "proxy" function returns {statusCode, headers, body} itself;
- batches: Lambda calls with one event; a function with a `batch_handler` gets a batch of
  one, as an mlambda instance gives it when one request is queued.

A handler's exception is not caught: Lambda counts it in `Errors` (which the canary
deployment's alarm watches) and API Gateway answers 502.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

# -- the exported function (written by `mlambda export aws`) --
FUNCTION = "echo"
HANDLER = "echo.handler"
BATCH_HANDLER: str | None = None
EVENT = "body"
# -- end of the exported function --

# With `--packages-on-efs` the dependencies are on the volume, not in a layer.
if os.environ.get("MLAMBDA_PACKAGES"):
    sys.path.insert(0, os.environ["MLAMBDA_PACKAGES"])


def _resolve(dotted: str) -> Callable[..., Any]:
    module, _, name = dotted.rpartition(".")
    fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise LookupError(f"Handler '{name}' missing on module '{module}'")
    return fn  # type: ignore[no-any-return]


# Importing the handler module is the init phase, as on mlambda.
_batch = _resolve(BATCH_HANDLER) if BATCH_HANDLER else None
_single = None if _batch is not None else _resolve(HANDLER)


def _is_proxy_event(event: Any) -> bool:
    return isinstance(event, dict) and "httpMethod" in event and "requestContext" in event


def _json_response(status: int, value: Any) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps(value, ensure_ascii=False, separators=(",", ":")),
            "isBase64Encoded": False}


def _run(event: Any, context: Any) -> Any:
    if _batch is not None:
        results = _batch([event], context)
        if not isinstance(results, list) or len(results) != 1:
            raise TypeError(f"batch_handler must return a list of 1 result, "
                            f"got {type(results).__name__}")
        if isinstance(results[0], BaseException):
            raise results[0]
        return results[0]
    assert _single is not None
    return _single(event, context)


def handler(event: Any, context: Any) -> Any:
    if EVENT == "proxy" or not _is_proxy_event(event):
        return _run(event, context)
    body = event.get("body")
    if event.get("isBase64Encoded") and body:
        import base64

        body = base64.b64decode(body).decode("utf-8")
    try:
        parsed = json.loads(body) if body and body.strip() else {}
    except ValueError as exc:
        return _json_response(400, {"errorType": "InvalidRequestContentException",
                                    "errorMessage": f"Could not parse request body into json: "
                                                    f"{exc}"})
    return _json_response(200, _run(parsed, context))
