"""The handwriting model behind Mosec (a Rust HTTP front end with Python workers and
dynamic batching), for `bench/mosec_peer.py`: the same E.SUN `POST /inference` contract
and the same code per request as mlambda's handwriting function (functions/handwriting:
esun.question checks the fields, esun.image decodes the base64 and preprocesses with
preprocess.prepare, classifier.load's model answers a whole batch). Only the serving
around it is Mosec's.

Runs in Mosec's own venv (made by bench/mosec_peer.py, never a dependency of mlambda):

    ~/.cache/mlambda-bench/mosec-0.9.8/bin/python bench/mosec_server.py \
        --address 127.0.0.1 --port 8000 --capacity 4096 --timeout 10000

Mosec reads its own flags (--port, --timeout, --capacity...); the layout is in
MOSEC_BENCH_* variables:

- MOSEC_BENCH_LAYOUT: `one` (a single batched stage: each worker reads, decodes and
  preprocesses its batch's requests, runs the model, writes the answers) or `split` (a
  decode stage, then a batched model stage; the preprocessed image crosses Mosec's IPC);
- MOSEC_BENCH_WORKERS: workers of the (model) stage; MOSEC_BENCH_DECODERS: of the decode
  stage (`split` only);
- MOSEC_BENCH_MAX_BATCH, MOSEC_BENCH_WAIT_MS: Mosec's max_batch_size and max_wait_time.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from mosec import Server, ValidationError, Worker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions" / "handwriting"))

import classifier  # noqa: E402  (the function's own modules, by path)
import esun  # noqa: E402
import preprocess  # noqa: E402

MODEL = Path(os.environ.get("MOSEC_BENCH_MODEL", ROOT / "models" / "handwriting.onnx"))


def read(body: bytes) -> tuple[str, np.ndarray]:
    """(esun_uuid, the preprocessed image) of one request, as the function reads it. A bad
    request is Mosec's 422 (Mosec gives one status to a whole batch, so it fails the
    batch: mlambda answers each bad event its own 400)."""
    try:
        uuid, question = esun.question({"body": body.decode("utf-8", "replace")})
        return uuid, esun.image(question)
    except esun.BadField as exc:
        raise ValidationError(str(exc)) from None


def answer(uuid: str, label: str, server_uuid: str, now: int) -> bytes:
    """The response body: exactly the contract's four keys, encoded as esun.response does."""
    return json.dumps({"esun_uuid": uuid, "server_uuid": server_uuid, "answer": label,
                       "server_timestamp": now}, ensure_ascii=False).encode()


class Model(Worker):
    """Batched model stage. In the `one` layout it also reads each request."""

    def __init__(self) -> None:
        super().__init__()
        self.model = classifier.load(MODEL)
        self.server_uuid = esun.server_uuid()

    def deserialize(self, data: bytes) -> Any:  # the HTTP body of one request
        return read(data)

    def deserialize_ipc(self, data: bytes) -> Any:  # from the decode stage
        return pickle.loads(data)

    def forward(self, data: list[Any]) -> list[bytes]:  # [(esun_uuid, image)]
        labels = self.model(preprocess.batch([image for _, image in data]))
        now = int(time.time())
        return [answer(uuid, label, self.server_uuid, now)
                for (uuid, _), label in zip(data, labels, strict=True)]

    def serialize(self, data: bytes) -> bytes:
        return data


class Decode(Worker):
    """Decode stage (`split` layout): the request read and preprocessed, handed on."""

    def deserialize(self, data: bytes) -> Any:
        return read(data)

    def forward(self, data: list[Any]) -> list[Any]:
        return data

    def serialize_ipc(self, data: Any) -> bytes:
        return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)


def main() -> None:
    layout = os.environ.get("MOSEC_BENCH_LAYOUT", "one")
    workers = int(os.environ.get("MOSEC_BENCH_WORKERS", "2"))
    decoders = int(os.environ.get("MOSEC_BENCH_DECODERS", "1"))
    max_batch = int(os.environ.get("MOSEC_BENCH_MAX_BATCH", "64"))
    wait_ms = int(os.environ.get("MOSEC_BENCH_WAIT_MS", "10"))
    server = Server()
    if layout == "split":
        server.append_worker(Decode, num=decoders, max_batch_size=max_batch,
                             max_wait_time=wait_ms)
    elif layout != "one":
        raise SystemExit(f"MOSEC_BENCH_LAYOUT: expected one or split, got {layout!r}")
    server.append_worker(Model, num=workers, max_batch_size=max_batch, max_wait_time=wait_ms)
    server.run()


if __name__ == "__main__":
    main()
