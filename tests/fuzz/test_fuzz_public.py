"""Generated bodies, headers and paths against the public routes (`POST /inference`,
`POST /echo`) and the Lambda Invoke API: no 500, no crash, no hang, errors in JSON."""

from __future__ import annotations

import base64
import string

import httpx
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import Server
from tests.fuzz.conftest import FUZZ, TIMEOUT_S, check_answer, still_serving

SCALARS = (st.none() | st.booleans() | st.integers() | st.text(max_size=30)
           | st.floats(allow_nan=False, allow_infinity=False))
JSONS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20,
)
ANY_VALUE = st.none() | st.booleans() | st.integers() | st.text(max_size=40) | JSONS
IMAGE = (st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())
         | st.text(max_size=60) | ANY_VALUE)
ESUN = st.fixed_dictionaries(
    {},
    optional={"esun_uuid": ANY_VALUE, "esun_timestamp": ANY_VALUE, "image": IMAGE,
              "retry": ANY_VALUE, "extra": ANY_VALUE},
)
BODIES = (st.binary(max_size=2000)
          | JSONS.map(lambda v: httpx.Request("POST", "/", json=v).content)
          | ESUN.map(lambda v: httpx.Request("POST", "/", json=v).content))
TOKEN = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=20)
HEADER_VALUE = st.text(alphabet=string.printable.strip() + " ", max_size=60).map(str.strip)
HEADERS = st.dictionaries(
    TOKEN.filter(lambda k: k.lower() not in {"content-length", "host", "transfer-encoding",
                                             "x-api-key", "connection"}),
    HEADER_VALUE, max_size=8)
KEY = st.sampled_from(["valid", "missing", "wrong"])


def send(server: Server, method: str, path: str, body: bytes, headers: dict[str, str],
         key: str) -> httpx.Response:
    if key == "valid":
        headers = {**headers, "x-api-key": server.invoke_key}
    elif key == "wrong":
        headers = {**headers, "x-api-key": "mlk_not-a-key"}
    with httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as c:
        return c.request(method, path, content=body, headers=headers)


@FUZZ
@given(route=st.sampled_from(["/inference", "/echo"]), body=BODIES, headers=HEADERS, key=KEY)
def test_public_routes(server: Server, route: str, body: bytes, headers: dict[str, str],
                       key: str) -> None:
    r = send(server, "POST", route, body, headers, key)
    check_answer(r, f"POST {route}")
    if key != "valid":
        assert r.status_code in (401, 403)


NAMES = (st.sampled_from(["echo", "handwriting", "nope", "echo:1", "echo:$LATEST", "echo:live",
                          "arn:aws:lambda:us-east-1:123456789012:function:echo"])
         | st.text(max_size=80))
QUALIFIERS = st.none() | st.sampled_from(["1", "$LATEST", "live", "99"]) | st.text(max_size=20)
INVOCATION_TYPES = st.none() | st.sampled_from(["RequestResponse", "Event", "DryRun"]) | TOKEN


@FUZZ
@given(name=NAMES, qualifier=QUALIFIERS, kind=INVOCATION_TYPES, tail=st.booleans(),
       body=BODIES, key=KEY)
def test_invoke_api(server: Server, name: str, qualifier: str | None, kind: str | None,
                    tail: bool, body: bytes, key: str) -> None:
    path = "/2015-03-31/functions/" + "".join(f"%{b:02X}" for b in name.encode()) + "/invocations"
    if qualifier is not None:
        path += "?Qualifier=" + "".join(f"%{b:02X}" for b in qualifier.encode())
    headers = {"X-Amz-Log-Type": "Tail"} if tail else {}
    if kind is not None:
        headers["X-Amz-Invocation-Type"] = kind
    r = send(server, "POST", path, body, headers, key)
    check_answer(r, f"Invoke {name!r} {qualifier!r}")


PATHS = st.lists(st.text(alphabet=string.ascii_letters + string.digits + "-._~%:@!$&'()*+,;=",
                         max_size=15), min_size=1, max_size=5).map(lambda p: "/" + "/".join(p))


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
       prefix=st.sampled_from(["", "/admin/v1", "/2015-03-31/functions", "/dashboard"]),
       path=PATHS, body=st.binary(max_size=200), headers=HEADERS, key=KEY)
def test_any_path(server: Server, method: str, prefix: str, path: str, body: bytes,
                  headers: dict[str, str], key: str) -> None:
    r = send(server, method, prefix + path, body, headers, key)
    if method != "HEAD":  # a HEAD answer has no body to check
        check_answer(r, f"{method} {prefix + path}")


def test_still_serving_after_the_fuzz(server: Server) -> None:
    still_serving(server)
