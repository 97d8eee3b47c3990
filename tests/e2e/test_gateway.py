"""The gateway's contract: keys, routes, the Lambda Invoke API, body limits, proxy events."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx

from tests.conftest import Server, wait_for

INVOKE = "/2015-03-31/functions/{}/invocations"


def test_every_invoke_route_needs_a_key(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/echo", json={"a": 1})
        assert r.status_code == 401
        assert r.json()["errorType"] == "UnauthorizedException"
        r = c.post("/echo", json={"a": 1}, headers={"x-api-key": "mlk_wrong"})
        assert r.status_code == 403
        assert r.json() == {"errorType": "ForbiddenException", "errorMessage": "invalid API key"}
        r = c.post(INVOKE.format("echo"), json={}, headers={"x-api-key": "mlk_wrong"})
        assert r.status_code == 403
        assert c.post(INVOKE.format("echo"), json={}).status_code == 401


def test_admin_api_needs_the_admin_key(server: Server) -> None:
    with server.client() as c:  # the invoke key
        r = c.get("/admin/v1/functions")
        assert r.status_code == 403
        assert "admin" in r.json()["errorMessage"]
    with server.admin() as c:
        names = [f["name"] for f in c.get("/admin/v1/functions").json()]
        assert {"echo", "probe", "faulty"} <= set(names)
        assert c.get("/admin/v1/openapi.json").json()["info"]["title"] == "mlambda admin API"


def test_echo_route_returns_the_event(server: Server) -> None:
    event = {"text": "你好", "n": [1, 2.5, None], "nested": {"ok": True}}
    with server.client() as c:
        r = c.post("/echo", json=event)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == event


def test_malformed_json_is_a_400_naming_the_problem(server: Server) -> None:
    with server.client() as c:
        r = c.post("/echo", content=b'{"a": ')
    assert r.status_code == 400
    assert r.json()["errorType"] == "InvalidRequestContentException"
    assert "Could not parse request body into json" in r.json()["errorMessage"]


def test_body_over_6_mb_is_413(server: Server) -> None:
    with server.client() as c:
        r = c.post("/echo", content=b"x" * (6 * 1024 * 1024 + 1))
        assert r.status_code == 413
        assert r.json()["errorType"] == "RequestTooLargeException"
        # just under the limit is fine (a JSON string of ~6 MB)
        big = '"' + "y" * (6 * 1024 * 1024 - 2) + '"'
        r = c.post("/echo", content=big.encode())
        assert r.status_code == 200 and len(r.content) == len(big)


def test_unknown_route_is_404(server: Server) -> None:
    with server.client() as c:
        r = c.post("/nowhere", json={})
    assert r.status_code == 404
    assert r.json()["errorType"] == "ResourceNotFoundException"


def test_invoke_api_with_qualifier_and_executed_version(server: Server) -> None:
    with server.client() as c:
        for url in (INVOKE.format("echo") + "?Qualifier=live", INVOKE.format("echo:1"),
                    INVOKE.format("arn:aws:lambda:local:000000000000:function:echo:live")):
            r = c.post(url, json={"q": url})
            assert r.status_code == 200, r.text
            assert r.json() == {"q": url}
            assert r.headers["x-amz-executed-version"] == "1"
        r = c.post(INVOKE.format("echo"), json={})  # no qualifier: $LATEST
        assert r.headers["x-amz-executed-version"] == "$LATEST"
        r = c.post(INVOKE.format("echo:live") + "?Qualifier=1", json={})
        assert r.status_code == 400
        assert r.headers["x-amzn-errortype"] == "InvalidParameterValueException"


def test_invoke_api_unknown_function_and_qualifier(server: Server) -> None:
    with server.client() as c:
        r = c.post(INVOKE.format("nope"), json={})
        assert r.status_code == 404
        assert r.headers["x-amzn-errortype"] == "ResourceNotFoundException"
        assert "nope" in r.json()["message"]
        r = c.post(INVOKE.format("echo") + "?Qualifier=99", json={})
        assert r.status_code == 404


def test_invoke_api_invocation_types(server: Server) -> None:
    with server.client() as c:
        r = c.post(INVOKE.format("echo"), json={}, headers={"X-Amz-Invocation-Type": "DryRun"})
        assert r.status_code == 204
        r = c.post(INVOKE.format("echo"), json={}, headers={"X-Amz-Invocation-Type": "Event"})
        assert r.status_code == 202
        assert r.headers["x-amzn-requestid"]
        r = c.post(INVOKE.format("echo"), json={}, headers={"X-Amz-Invocation-Type": "Later"})
        assert r.status_code == 400
        assert "X-Amz-Invocation-Type" in r.json()["message"]


def test_invoke_api_function_error_is_200_with_header(server: Server) -> None:
    with server.client() as c:
        r = c.post(INVOKE.format("faulty"), json={"do": "raise"},
                   headers={"X-Amz-Log-Type": "Tail"})
    assert r.status_code == 200
    assert r.headers["x-amz-function-error"] == "Unhandled"
    body = r.json()
    assert body["errorType"] == "BadThing"
    assert body["errorMessage"] == "the handler raised on purpose"
    assert any("faulty.py" in line for line in body["stackTrace"])
    log = base64.b64decode(r.headers["x-amz-log-result"]).decode()
    assert log.startswith("START RequestId: ")
    assert "faulty: doing raise" in log
    report = log.splitlines()[-1].split("\t")
    assert report[0].startswith("REPORT RequestId: ")
    assert report[1].startswith("Duration: ") and report[1].endswith(" ms")
    assert report[3] == "Memory Size: 256 MB"


def test_context_carries_the_lambda_attributes(server: Server) -> None:
    with server.client() as c:
        r = c.post("/probe", json={"i": 1})
    assert r.status_code == 200
    body = r.json()
    ctx = body["context"]
    assert ctx["function_name"] == "probe"
    assert ctx["function_version"] == "1"
    assert ctx["memory_limit_in_mb"] == 256
    assert ctx["log_group_name"] == "/aws/lambda/probe"
    assert "[1]" in ctx["log_stream_name"]
    assert ctx["invoked_function_arn"].endswith(":function:probe:1")
    assert len(ctx["aws_request_id"]) == 36
    assert 4000 < body["remaining_ms"] <= 5000  # timeout_s = 5
    assert body["volume"] == str(server.data.resolve() / "volume")


def test_proxy_function_sees_the_http_request_and_sets_the_status(server: Server) -> None:
    with server.client() as c:
        r = c.post("/proxy", json={"x": 1})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["echo"] == {"x": 1}
        assert body["path"] == "/proxy" and body["resource"] == "/proxy"
        assert body["has_key_header"] is False  # the secret is not handed to functions
        assert body["key_id"].startswith("k_")
        assert r.headers["x-request-id"]
        r = c.get("/proxy", params={"a": "1", "b": "two"})
        assert r.status_code == 200 and r.headers["x-seen"] == "get"
        assert r.json() == {"query": {"a": "1", "b": "two"}}
        r = c.post("/proxy", content=b"not json")
        assert r.status_code == 400 and r.json() == {"error": "body is not JSON"}
        r = c.post("/proxy", json={"shape": "wrong"})
        assert r.status_code == 502
        assert r.json()["errorType"] == "Runtime.InvalidProxyResponse"


def test_event_invocations_run(server: Server, scratch: Path) -> None:
    # an async (Event) invocation runs even though nobody waits for it
    with server.client() as c:
        marker = scratch / "event-ran"
        r = c.post(INVOKE.format("flaky"), json={"marker": str(marker)},
                   headers={"X-Amz-Invocation-Type": "Event"})
        assert r.status_code == 202
    wait_for(marker.exists, 10, "the Event invocation to run")
