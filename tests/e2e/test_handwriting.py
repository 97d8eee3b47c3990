"""The E.SUN handwriting API end to end: the contract, the model's answers on held-out
scans, every kind of bad input, every image format."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import ROOT, Server

CASES = ROOT / "tests" / "data" / "handwriting"
LABELS = (ROOT / "models" / "handwriting.labels.txt").read_text(encoding="utf-8").split()


def ask(server: Server, body: Any, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    with server.client() as c:
        r = c.post("/inference", content=raw if raw is not None else json.dumps(body))
    return r.status_code, r.json()


def question(image: bytes, uuid: str = "a" * 64, **extra: Any) -> dict[str, Any]:
    return {"esun_uuid": uuid, "esun_timestamp": int(time.time()),
            "image": base64.b64encode(image).decode(), "retry": 2, **extra}


def case_bytes(name: str) -> bytes:
    return (CASES / name).read_bytes()


def test_answer_has_exactly_the_four_keys(server: Server) -> None:
    cases = json.loads((CASES / "cases.json").read_text())
    status, body = ask(server, question(case_bytes(cases[0]["file"]), uuid="f" * 64))
    assert status == 200, body
    assert set(body) == {"esun_uuid", "server_uuid", "answer", "server_timestamp"}
    assert body["esun_uuid"] == "f" * 64
    # configured in functions/handwriting/function.toml [env]
    assert body["server_uuid"] == hashlib.sha256(b"captain@example.commlambda").hexdigest()
    assert body["answer"] in LABELS
    assert isinstance(body["server_timestamp"], int)
    assert abs(body["server_timestamp"] - time.time()) < 10


def test_held_out_scans_are_read(server: Server) -> None:
    cases = json.loads((CASES / "cases.json").read_text())

    def one(i: int) -> bool:
        c = cases[i]
        status, body = ask(server, question(case_bytes(c["file"]), uuid=f"{i:064x}"))
        assert status == 200, body
        assert body["esun_uuid"] == f"{i:064x}"
        return bool(body["answer"] == c["answer"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        right = list(pool.map(one, range(len(cases))))
    assert sum(right) / len(right) >= 0.85, f"{sum(right)} of {len(right)} right"


def test_request_variants_of_the_contract(server: Server) -> None:
    image = case_bytes("00-cwTeXKai.jpg")
    for q in (question(image, esun_timestamp=1_625_000_000.25),  # float timestamp
              question(image, retry="1"),  # retry as a digit string
              question(image, res_text=None, extra={"ignored": True})):  # extra keys
        status, body = ask(server, q)
        assert status == 200, body
        assert set(body) == {"esun_uuid", "server_uuid", "answer", "server_timestamp"}


def test_retry_of_the_same_question_gets_the_same_answer(server: Server) -> None:
    image = case_bytes("01-strokes.jpg")
    answers = {ask(server, question(image, uuid="b" * 64, retry=r))[1]["answer"]
               for r in (2, 1, 0)}
    assert len(answers) == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"esun_uuid": "x", "esun_timestamp": 1}, "image"),
    ({"esun_uuid": "x", "image": 12345}, "image"),
    ({"esun_uuid": "x", "image": "not base64 at all!"}, "image"),
    ({"esun_uuid": "x", "image": base64.b64encode(b"GIF89 not really").decode()}, "image"),
    ({"esun_uuid": "x", "image": ""}, "image"),
    ({"image": base64.b64encode(b"x").decode()}, "esun_uuid"),
    ({"esun_uuid": "x", "image": "", "esun_timestamp": "yesterday"}, "esun_timestamp"),
    ({"esun_uuid": "x", "image": "", "retry": "two"}, "retry"),
    (["a", "list"], "body"),
])
def test_bad_input_is_400_naming_the_field(server: Server, body: Any, field: str) -> None:
    status, answer = ask(server, body)
    assert status == 400, answer
    assert answer["errorType"] == "InvalidRequestContentException"
    assert field in answer["errorMessage"], answer["errorMessage"]


def test_body_that_is_not_json_is_400(server: Server) -> None:
    status, answer = ask(server, None, raw=b"\x00\x01 not json")
    assert status == 400 and "body" in answer["errorMessage"]


def convert(mode: str, fmt: str, size: tuple[int, int] | None = None) -> bytes:
    img = Image.open(io.BytesIO(case_bytes("00-cwTeXKai.jpg")))
    if size is not None:
        img = img.resize(size)
    img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("mode", "fmt", "size"), [
    ("RGB", "PNG", None), ("L", "PNG", None), ("RGBA", "PNG", None), ("P", "PNG", None),
    ("RGB", "BMP", None), ("RGB", "WEBP", None), ("L", "JPEG", None),
    ("RGB", "JPEG", (1400, 1600)),
])
def test_every_image_format_is_read(server: Server, mode: str, fmt: str,
                                    size: tuple[int, int] | None) -> None:
    status, body = ask(server, question(convert(mode, fmt, size)))
    assert status == 200, body
    assert body["answer"] in LABELS


def test_the_model_comes_from_the_volume(server: Server) -> None:
    with server.admin() as c:
        model = c.get("/admin/v1/models/handwriting").json()
    current = next(v for v in model["versions"] if v["current"])
    shipped = hashlib.sha256((ROOT / "models" / "handwriting.onnx").read_bytes()).hexdigest()
    assert current["sha256"] == shipped
    assert any(i["sha256"] == shipped and i["error"] is None for i in model["instances"])


def test_bad_items_fail_alone_in_a_batch(server: Server) -> None:
    good = question(case_bytes("00-cwTeXKai.jpg"))
    bad = {"esun_uuid": "x", "image": "%%%"}

    def one(i: int) -> int:
        q = dict(good, esun_uuid=f"{i:064x}") if i % 2 else bad
        return ask(server, q)[0]

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(one, range(64)))
    assert statuses == [400 if i % 2 == 0 else 200 for i in range(64)]


def test_labels_file_matches_the_model(tmp_path: Path) -> None:
    assert len(LABELS) == 801 and LABELS[-1] == "isnull"
    shared = ROOT.parent / "shared" / "esun_800_chars.txt"
    if shared.exists():
        assert LABELS[:-1] == shared.read_text(encoding="utf-8").split()
