"""The control plane against a real server: deploys, versions, aliases, canaries and
routes, changed under continuous load without a failed request."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlambda.client import Client, ClientError
from tests.conftest import Server, wait_for


def bundle(tmp: Path, name: str, tag: str, body: str | None = None) -> Path:
    d = tmp / f"{name}-{tag}"
    d.mkdir()
    (d / "function.toml").write_text(
        f'name = "{name}"\nhandler = "app.handler"\n[batch]\nmax_batch = 8\nmax_wait_ms = 1\n'
        "[scaling]\nmax_instances = 1\nidle_ttl_s = 30\n")
    default = f"def handler(event, context):\n    return {{'tag': '{tag}'}}\n"
    (d / "app.py").write_text(body or default)
    return d


@pytest.fixture(scope="module")
def admin(server: Server) -> Iterator[Client]:
    with Client(server.url, server.admin_key) as c:
        yield c


class Load:
    """Concurrent callers hitting one route until stopped (bounded in count and time)."""

    def __init__(self, server: Server, path: str, threads: int = 6, max_s: float = 60) -> None:
        self.server = server
        self.path = path
        self.stop_at = time.monotonic() + max_s
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[float, int, str]] = []  # (request sent, status, answer)
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]

    def run(self) -> None:
        with self.server.client() as c:
            while not self.stopping.is_set() and time.monotonic() < self.stop_at:
                started = time.monotonic()
                try:
                    r = c.post(self.path, json={})
                    status, body = r.status_code, r.json()
                except (httpx.HTTPError, ValueError) as exc:  # counted as a failure
                    status, body = -1, {"error": repr(exc)}
                tag = body.get("tag", body.get("greeting")) if status == 200 else body
                with self.lock:
                    self.answers.append((started, status, str(tag)))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        wait_for(lambda: len(self.answers) > 20, 10, "load to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join()

    def since(self, t: float) -> list[tuple[float, int, str]]:
        with self.lock:
            return [a for a in self.answers if a[0] >= t]


def test_deploy_publish_versions(admin: Client, tmp_path: Path) -> None:
    r1 = admin.deploy(bundle(tmp_path, "greeter", "A"), publish=True)
    assert (r1["function"], r1["version"]) == ("greeter", "1")
    r2 = admin.deploy(bundle(tmp_path, "greeter", "B"), publish=True)
    assert r2["version"] == "2" and r2["sha256"] != r1["sha256"]
    # publishing unchanged code returns the newest version instead of a copy
    assert admin.publish("greeter")["version"] == "2"
    versions = admin.versions("greeter")
    assert [v["version"] for v in versions] == ["$LATEST", "1", "2"]
    assert versions[1]["sha256"] == r1["sha256"] and versions[1]["created_at"] > 0
    assert admin.invoke("greeter:1").payload == {"tag": "A"}
    assert admin.invoke("greeter:2").payload == {"tag": "B"}
    assert admin.invoke("greeter").payload == {"tag": "B"}  # $LATEST


def test_alias_and_route(admin: Client, server: Server) -> None:
    admin.set_alias("greeter", "live", "1")
    assert admin.add_route("POST", "/greet", "greeter:live")["target"] == "greeter:live"
    with server.client() as c:
        assert c.post("/greet", json={}).json() == {"tag": "A"}
    assert {"method": "POST", "path": "/greet", "target": "greeter:live",
            "idempotency": None} in admin.routes()


def test_bad_requests_get_clear_errors(admin: Client, tmp_path: Path) -> None:
    cases = [
        (lambda: admin.set_alias("nosuch", "live", "1"), 404, "nosuch"),
        (lambda: admin.set_alias("greeter", "live", "99"), 404, "no version 99"),
        (lambda: admin.set_alias("greeter", "live", "1", ("2", 1.5)), 400, "weight"),
        (lambda: admin.set_alias("greeter", "live", "$LATEST"), 400, "published versions"),
        (lambda: admin.add_route("POST", "/x", "greeter:nosuchalias"), 404, "nosuchalias"),
        (lambda: admin.add_route("POST", "/x", "nosuch:live"), 404, "nosuch"),
        (lambda: admin.remove_route("POST", "/never"), 404, "no route"),
        (lambda: admin.versions("nosuch"), 404, "nosuch"),
    ]
    for call, status, text in cases:
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.status == status, err.value
        assert text in err.value.message, err.value.message
    bad = bundle(tmp_path, "badspec", "A")
    (bad / "function.toml").write_text(
        'name = "badspec"\nhandler = "app.handler"\ntimeout_s = "x"\n')
    with pytest.raises(ClientError) as err:
        admin.deploy(bad)
    assert err.value.status == 400
    assert "Expected `float`" in err.value.message and "timeout_s" in err.value.message
    r = admin.http.post("/admin/v1/functions", content=b"not a tarball")
    assert r.status_code == 400 and "tar.gz" in r.json()["errorMessage"]
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.py")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    r = admin.http.post("/admin/v1/functions", content=evil.getvalue())
    assert r.status_code == 400


def test_alias_to_a_version_that_fails_init_is_refused(admin: Client, server: Server,
                                                       tmp_path: Path) -> None:
    broken = bundle(tmp_path, "greeter", "broken", "import not_a_module\n"
                    "def handler(event, context):\n    return {}\n")
    v = admin.deploy(broken, publish=True)["version"]
    with pytest.raises(ClientError) as err:
        admin.set_alias("greeter", "live", v)
    assert err.value.status == 409
    assert "Runtime.ImportModuleError" in err.value.message and "not_a_module" in err.value.message
    assert next(a for a in admin.aliases("greeter") if a["name"] == "live")["version"] == "1"
    with server.client() as c:
        assert c.post("/greet", json={}).json() == {"tag": "A"}


def test_alias_flips_and_canary_under_load_lose_nothing(admin: Client, server: Server) -> None:
    with Load(server, "/greet") as load:
        flips = []  # (call started, call returned, target)
        for target in ["2", "1", "2", "1", "2"]:
            called = time.monotonic()
            admin.set_alias("greeter", "live", target)
            flips.append((called, time.monotonic(), target))
            time.sleep(0.4)
        canary_called = time.monotonic()
        admin.set_alias("greeter", "live", "1", ("2", 0.3))
        canary_start = time.monotonic()
        time.sleep(3)
        canary_end = time.monotonic()
        admin.set_alias("greeter", "live", "2")
        time.sleep(0.3)
    statuses = Counter(status for _, status, _ in load.answers)
    assert statuses == {200: len(load.answers)}, statuses
    # requests sent from 100 ms after a flip until the next flip began: all on the new version
    tag_of = {"1": "A", "2": "B"}
    next_called = [f[0] for f in flips[1:]] + [canary_called]
    for (_, returned, target), until in zip(flips, next_called, strict=True):
        later = [tag for at, _, tag in load.since(returned + 0.1) if at < until]
        assert later and set(later) == {tag_of[target]}, (target, Counter(later))
    canary = Counter(tag for at, _, tag in load.answers if canary_start + 0.1 <= at < canary_end)
    n = sum(canary.values())
    share = canary["B"] / n
    # binomial: 0.3 +- 4 standard deviations
    assert abs(share - 0.3) < 4 * (0.3 * 0.7 / n) ** 0.5, (canary, n)


def test_old_version_drains_and_stops(admin: Client, server: Server) -> None:
    admin.set_alias("greeter", "live", "2")
    with server.client() as c:
        assert c.post("/greet", json={}).json() == {"tag": "B"}
    # version 1 is no longer reachable by any alias or route: its instances stop
    wait_for(lambda: server.instances("greeter", "1") == [], 10, "version 1 to drain")


def test_route_removal_takes_effect_at_once(admin: Client, server: Server) -> None:
    admin.add_route("POST", "/greet2", "greeter:2")
    with server.client() as c:
        assert c.post("/greet2", json={}).status_code == 200
        admin.remove_route("POST", "/greet2")
        assert c.post("/greet2", json={}).status_code == 404


def test_boto3_lambda_client(server: Server) -> None:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    client = boto3.client(
        "lambda", endpoint_url=server.url, region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 0}),
    )

    def add_key(request: object, **kwargs: object) -> None:
        request.headers["x-api-key"] = server.invoke_key  # type: ignore[attr-defined]

    client.meta.events.register("before-send.lambda.*", add_key)
    r = client.invoke(FunctionName="echo", Qualifier="live", Payload=b'{"via": "boto3"}')
    assert r["StatusCode"] == 200
    assert r["ExecutedVersion"] == "1"
    assert r["Payload"].read() == b'{"via":"boto3"}'
    assert client.invoke(FunctionName="echo", InvocationType="DryRun")["StatusCode"] == 204
    r = client.invoke(FunctionName="faulty", Payload=b'{"do": "raise"}', LogType="Tail")
    assert r["FunctionError"] == "Unhandled"
    assert b"BadThing" in r["Payload"].read()
    assert r["LogResult"]
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="nosuch")


def test_model_swap_under_load_and_bad_uploads(admin: Client, server: Server,
                                               tmp_path: Path) -> None:
    hello, bonjour, broken = (tmp_path / "hello.txt", tmp_path / "bonjour.txt",
                              tmp_path / "broken.txt")
    hello.write_text("hello")
    bonjour.write_text("bonjour")
    broken.write_text("BROKEN model")
    first = admin.push_model("greeting", hello)
    with server.client() as c:
        assert c.post("/greeting", json={}).json() == {"greeting": "hello"}
    with Load(server, "/greeting") as load:
        time.sleep(0.5)
        swapped_at = time.monotonic()
        second = admin.push_model("greeting", bonjour)
        wait_for(lambda: any(tag == "bonjour" for _, _, tag in load.since(swapped_at)), 5,
                 "the new model to be served")
        time.sleep(1.2)
    assert Counter(s for _, s, _ in load.answers) == {200: len(load.answers)}
    assert {tag for _, _, tag in load.since(swapped_at + 1.0)} == {"bonjour"}
    # a corrupt upload (checksum mismatch) is refused and never becomes current
    r = admin.http.put("/admin/v1/models/greeting", params={"filename": "x.txt"},
                       content=b"half a file", headers={"x-content-sha256": "0" * 64})
    assert r.status_code == 400 and "checksum mismatch" in r.json()["errorMessage"]
    assert admin.model("greeting")["current"] == second["sha256"]
    # a model that fails to load: instances keep serving the old one; it is reported
    bad = admin.push_model("greeting", broken)
    with server.client() as c:
        for _ in range(20):
            assert c.post("/greeting", json={}).json() == {"greeting": "bonjour"}
    def failure_reported() -> bool:
        versions = {v["sha256"]: v for v in admin.model("greeting")["versions"]}
        return versions[bad["sha256"]]["error"] is not None

    wait_for(failure_reported, 5, "the load failure to be reported")
    model = admin.model("greeting")
    assert "cannot be loaded" in next(v["error"] for v in model["versions"]
                                      if v["sha256"] == bad["sha256"])
    assert model["current"] == second["sha256"]  # rolled back to the last good version
    # roll back by hand to the first one
    admin.rollback_model("greeting", first["sha256"][:12])
    wait_for(lambda: httpx.post(f"{server.url}/greeting", json={}, headers={
        "x-api-key": server.invoke_key}).json() == {"greeting": "hello"}, 5, "the rollback")
