"""The E.SUN contract (ESUN.md), shared by the one-function API (app.py) and the
two-function pipeline (handwriting-pre): a request's fields checked, naming the bad one,
and the answer's exact four keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from typing import Any

import numpy as np
import preprocess


class BadField(ValueError):
    pass


def server_uuid() -> str:
    """sha256(captain e-mail + salt), from the function's configuration."""
    return hashlib.sha256(
        (os.environ["ESUN_CAPTAIN_EMAIL"] + os.environ["ESUN_SALT"]).encode()).hexdigest()


def response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps(body, ensure_ascii=False)}


def bad(message: str) -> dict[str, Any]:
    return response(400, {"errorType": "InvalidRequestContentException", "errorMessage": message})


def question(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(esun_uuid, the request body), every field but the image checked; raises BadField."""
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
    return uuid, body


def image(body: dict[str, Any]) -> np.ndarray:
    """The request's image, decoded and preprocessed for the model; raises BadField."""
    data = body.get("image")
    if not isinstance(data, str):
        raise BadField("field `image`: missing; expected the image file as a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadField("field `image`: not valid base64") from None
    try:
        return preprocess.prepare(raw)
    except preprocess.ImageError as exc:
        raise BadField(f"field `image`: {exc}") from None


def questions(events: list[dict[str, Any]]) -> tuple[
        list[dict[str, Any] | None], dict[int, str], list[np.ndarray]]:
    """A batch read at the edge: the answers slots (a 400 filled in for each bad event),
    event index -> esun_uuid of the good ones, and their images in the same order."""
    out: list[dict[str, Any] | None] = [None] * len(events)
    uuids: dict[int, str] = {}
    images: list[np.ndarray] = []
    for i, event in enumerate(events):
        try:
            uuid, body = question(event)
            images.append(image(body))
        except BadField as exc:
            out[i] = bad(str(exc))
            continue
        uuids[i] = uuid
    return out, uuids, images
