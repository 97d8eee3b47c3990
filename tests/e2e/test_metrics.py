"""Metrics end to end on a real server (flushing every 0.2 s): exact counts after a known
number of invocations, errors, throttles and cold starts, per function, alias, version
and route; the same through /metrics (parsed by prometheus-client's own parser), the
CLI and the cost view; who may read /metrics; and a restart that keeps them."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlambda.client import Client
from mlambda.keys import ApiKey, hash_secret, new_key_id, new_secret
from mlambda.registry import Registry
from tests.conftest import Server, assert_all_gone, start_server, wait_for

FAST_FLUSH = {"MLAMBDA_METRICS_FLUSH_S": "0.2"}


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("metrics"), env=FAST_FLUSH)
    traffic(s)
    yield s
    s.stop()
    assert_all_gone(s)


def traffic(s: Server) -> None:
    """The known traffic every test below counts."""
    with s.client() as c:
        for i in range(6):  # through the route, i.e. the alias `live`
            assert c.post("/echo", json={"i": i}).status_code == 200
        for _ in range(2):  # straight at version 1
            r = c.post("/2015-03-31/functions/echo:1/invocations", json={})
            assert r.status_code == 200
        for do in ("ok", "raise", "ok", "raise", "ok"):
            assert c.post("/faulty", json={"do": do}).status_code == (502 if do == "raise"
                                                                      else 200)
        assert c.post("/slow", json={"sleep": 0.01}).status_code == 200  # warm
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        busy = pool.submit(post, s, "/slow", {"sleep": 2.5})
        wait_for(lambda: [i["state"] for i in s.instances("slow")] == ["busy"], 10,
                 "the one slow instance to be busy")
        queued = [pool.submit(post, s, "/slow", {"sleep": 0.01}) for _ in range(2)]
        wait_for(lambda: s.runtime("slow")["queued"] == 2, 10, "two queued invocations")
        refused = [post(s, "/slow", {"sleep": 0.01}) for _ in range(3)]
        assert [r[0] for r in refused] == [429] * 3
        assert all(r[1]["errorType"] == "TooManyRequestsException" for r in refused)
        assert busy.result()[0] == 200 and [q.result()[0] for q in queued] == [200, 200]


def post(s: Server, path: str, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    with s.client() as c:
        r = c.post(path, json=event)
        return r.status_code, r.json()


def metrics(s: Server, **params: Any) -> dict[str, Any]:
    with s.admin() as a:
        r = a.get("/admin/v1/metrics", params={"since": "10m", **params})
        assert r.status_code == 200, r.text
        return dict(r.json())


def counts(s: Server, **params: Any) -> dict[str, Any]:
    m = metrics(s, **params)["summary"]
    by = {k: v for k, v in m["breakdown"].items() if k != "Instances"}  # sampled, not counted
    return {k: m[k] for k in ("Invocations", "Errors", "Throttles", "ColdStarts")} | {"by": by}


def test_invocations_errors_throttles_and_cold_starts_are_exact(metered: Server) -> None:
    def echo() -> dict[str, Any]:
        return counts(metered, function="echo")

    wait_for(lambda: echo()["Invocations"] == 8, 5, "8 echo invocations")
    assert echo() == {"Invocations": 8, "Errors": 0, "Throttles": 0, "ColdStarts": 1,
                      "by": {"Errors": {}, "Throttles": {}}}
    echo_summary = metrics(metered, function="echo")["summary"]
    assert echo_summary["Instances"] == 1 and echo_summary["BatchSizeAvg"] == 1  # one by one
    assert echo_summary["ConcurrentExecutions"] == 1  # even if no sample saw it busy
    assert counts(metered, function="echo", alias="live")["Invocations"] == 6
    assert counts(metered, function="echo", version="1")["Invocations"] == 8
    faulty = counts(metered, function="faulty")
    assert (faulty["Invocations"], faulty["Errors"]) == (5, 2)
    assert faulty["by"]["Errors"] == {"BadThing": 2}
    slow = counts(metered, function="slow")
    assert (slow["Invocations"], slow["Throttles"], slow["ColdStarts"]) == (4, 3, 1)
    assert slow["by"]["Throttles"] == {"QueueFull": 3}
    assert counts(metered, function="slow", alias="live")["Throttles"] == 3
    assert counts(metered, function="slow", version="1")["Throttles"] == 3
    s = metrics(metered, function="slow")["summary"]
    assert s["ConcurrentExecutions"] == 1 and s["QueueDepth"] == 2
    assert s["DurationMax"] >= 2500 and s["InitDurationAvg"] > 0
    route = metrics(metered, route="POST /slow")["summary"]
    assert route["breakdown"]["Requests"] == {"2xx": 4, "4xx": 3}
    assert route["LatencyMax"] >= 2500
    invoke_api = metrics(metered, route="POST /2015-03-31/functions/{FunctionName}/invocations")
    assert invoke_api["summary"]["Requests"] == 2


def test_usage_plan_429s_are_throttles_by_their_reason(metered: Server) -> None:
    with Client(metered.url, metered.admin_key) as sdk:
        sdk.create_plan("one-burst", rate=0.001, burst=1)
        sdk.create_plan("one-a-day", rate=1000, burst=1000, quota=1, period="day")
        trickle = sdk.create_key("trickle", "invoke", plan="one-burst")["secret"]
        daily = sdk.create_key("daily", "invoke", plan="one-a-day")["secret"]
    for secret, reason in ((trickle, "CallerRateLimitExceeded"), (daily, "QuotaExceeded")):
        with metered.client(secret) as c:
            codes = [c.post("/proxy", json={}).status_code for _ in range(3)]
        assert codes[0] < 300 and codes[1:] == [429, 429], (reason, codes)
    want = {"CallerRateLimitExceeded": 2, "QuotaExceeded": 2}

    def seen() -> tuple[float, dict[str, float]]:
        proxy = counts(metered, function="proxy")
        return proxy["Invocations"], proxy["by"]["Throttles"]

    try:
        wait_for(lambda: seen() == (2, want), 5, "the proxy's invocations and throttles")
    except AssertionError:
        raise AssertionError(f"{seen()}; server log:\n{metered.log()[-3000:]}") from None
    assert counts(metered, function="proxy", alias="live")["by"]["Throttles"] == want
    assert counts(metered, function="proxy", version="1")["Throttles"] == 0  # none chosen yet


def test_a_series_has_one_point_per_period(metered: Server) -> None:
    m = metrics(metered, function="echo", since="5m", period=60)
    points = m["series"]["Invocations"]
    assert m["period"] == 60 and len(points) in (5, 6)
    assert [ts for ts, _ in points] == list(range(points[0][0], points[-1][0] + 1, 60))
    assert sum(v for _, v in points) == 8
    assert m["series"]["DurationP99"][0][1] is None or points[0][1] > 0
    some = metrics(metered, function="echo", since="5m", period=60,
                   series="Invocations,DurationP99")  # what a chart needs, no more
    assert set(some["series"]) == {"Invocations", "DurationP99"}
    assert sum(v for _, v in some["series"]["Invocations"]) == some["summary"]["Invocations"] == 8


def test_bad_queries_are_400_naming_the_field(metered: Server) -> None:
    with metered.admin() as a:
        for params, field in (({"function": "echo", "since": "soon"}, "since"),
                              ({"function": "echo", "since": "30d", "period": 10}, "period"),
                              ({"function": "echo", "route": "POST /echo"}, "route"),
                              ({"function": "echo", "period": "x"}, "period"),
                              ({"function": "echo", "series": "Invocations,Bogus"}, "series")):
            r = a.get("/admin/v1/metrics", params=params)
            assert r.status_code == 400 and field in r.json()["errorMessage"], r.text
        for params in ({"function": "nope"}, {"function": "echo", "alias": "gone"},
                       {"function": "echo", "version": "9"}):
            assert a.get("/admin/v1/metrics", params=params).status_code == 404
        r = a.get("/admin/v1/cost/scenario", params={"scenario": "lots"})
        assert r.status_code == 400 and "scenario" in r.json()["errorMessage"]
        r = a.get("/admin/v1/cost", params={"sheet": "azure"})
        assert r.status_code == 400 and "azure" in r.json()["errorMessage"]
        paths = a.get("/admin/v1/openapi.json").json()["paths"]
        described = paths["/admin/v1/metrics"]["get"]["description"]
        assert '"series"' in described and "`DurationAvg`" in described
        assert {"/admin/v1/metrics/overview", "/admin/v1/cost", "/admin/v1/cost/scenario"} <= \
            set(paths)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(smp.name, frozenset(smp.labels.items())): smp.value
            for fam in text_string_to_metric_families(text) for smp in fam.samples}


def test_prometheus_text_parses_and_counts_the_same(metered: Server) -> None:
    with metered.admin() as a:
        r = a.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)

    def value(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    assert value("mlambda_invocations_total", function="echo", version="1") == 8
    assert value("mlambda_cold_starts_total", function="echo", version="1") == 1
    assert value("mlambda_errors_total", function="faulty", version="1",
                 error_type="BadThing") == 2
    assert value("mlambda_throttles_total", function="slow", reason="QueueFull") == 3
    assert value("mlambda_throttles_total", function="proxy", reason="QuotaExceeded") == 2
    assert value("mlambda_alias_invocations_total", function="echo", alias="live") == 6
    assert value("mlambda_http_requests_total", route="POST /slow", status_class="4xx") == 3
    assert value("mlambda_duration_seconds_count", function="echo", version="1") == 8
    buckets = [(float(dict(k[1])["le"]), v) for k, v in got.items()
               if k[0] == "mlambda_duration_seconds_bucket"
               and dict(k[1])["function"] == "slow"]
    les = sorted(buckets)
    assert les[0][0] == 0.001 and les[-2][0] == 10.0 and les[-1] == (float("inf"), 4)
    assert [v for _, v in les] == sorted(v for _, v in les)  # cumulative
    assert dict(les)[1.0] == 3  # the 2.5 s one is above 1 s
    assert value("mlambda_instances", function="echo", version="1", state="idle") == 1


def test_metrics_needs_an_admin_or_metrics_key(metered: Server) -> None:
    with metered.client("") as c:
        assert c.get("/metrics").status_code == 401
    with metered.client() as c:  # invoke key
        assert c.get("/metrics").status_code == 403
    with metered.client("") as c:
        bearer = {"Authorization": f"Bearer {metered.admin_key}"}
        assert c.get("/metrics", headers=bearer).status_code == 200
        assert c.get("/metrics", headers={"Authorization": "Bearer mlk_nope"}).status_code == 403


def test_overview_and_cost_use_the_same_figures(metered: Server) -> None:
    with metered.admin() as a:
        rows = {f["function"]: f for f in a.get("/admin/v1/metrics/overview").json()["functions"]}
        cost = a.get("/admin/v1/cost", params={"function": "echo", "since": "1h"}).json()
    echo = rows["echo"]
    assert echo["invocations_today"] == 8 and echo["instances"] == 1
    assert rows["faulty"]["errors_today"] == 2
    billed = metrics(metered, function="echo")["summary"]["BilledGBSeconds"]
    [f] = cost["functions"]
    assert f["invocations"] == 8 and f["gb_seconds"] == pytest.approx(billed) and billed > 0
    assert cost["aws"]["total_usd"] == pytest.approx(8 * 1.2 / 1e6 + billed * 0.0000166667)
    assert echo["cost_today_usd"] == pytest.approx(cost["aws"]["total_usd"], abs=1e-6)
    assert cost["aws"]["server"]["name"] == "c7i.large"  # peak 1 x 128 MB: the smallest


def test_an_edited_price_file_counts_at_once(metered: Server) -> None:
    prices = metered.data / "prices.toml"
    original = prices.read_text()
    prices.write_text(original.replace('default = "aws-us-east-1"', 'default = "spec"'))
    try:
        with metered.admin() as a:
            cost = a.get("/admin/v1/cost", params={"function": "echo", "since": "1h"}).json()
        assert cost["sheet"]["name"] == "spec"
        assert cost["aws"]["lambda_compute_usd"] == pytest.approx(
            cost["usage"]["gb_seconds"] * 0.133 / 1000 / 8)
    finally:
        prices.write_text(original)


def cli(s: Server, *args: str) -> str:
    env = {**os.environ, "MLAMBDA_URL": s.url, "MLAMBDA_ADMIN_KEY": s.admin_key}
    r = subprocess.run([sys.executable, "-m", "mlambda.cli", *args], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def test_cli_metrics_and_cost(metered: Server) -> None:
    out = cli(metered, "metrics", "faulty", "--since", "10m", "--period", "60")
    assert "faulty: 5 invocations, 2 errors (BadThing 2), 0 throttles" in out
    out = cli(metered, "cost", "--scenario", "10000/day 0.5s 8GB 22days", "--sheet", "spec")
    assert "$14.63 compute + $0.04 requests + $0.22 API = $14.89" in out
    assert "Lambda saves 77.5%" in out
    assert "echo: 8 invocations" in cli(metered, "cost", "echo", "--since", "1h")


def test_a_restart_keeps_metrics_and_a_metrics_key_reads_them(metered: Server) -> None:
    metered.stop()
    secret = new_secret()
    registry = Registry(metered.data)
    registry.add_key(ApiKey(new_key_id(), "prometheus", "metrics", hash_secret(secret)))
    registry.close()
    again = start_server(metered.log_path.parent, env=FAST_FLUSH, data=metered.data)
    try:
        assert counts(again, function="echo")["Invocations"] == 8
        assert counts(again, function="slow")["by"]["Throttles"] == {"QueueFull": 3}
        with again.client(secret) as c:
            assert c.get("/metrics").status_code == 200
            assert c.get("/admin/v1/functions").status_code == 403  # metrics only
        with again.client("") as c:
            r = c.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
            assert r.status_code == 200 and "mlambda_invocations" in r.text
    finally:
        again.stop()
        assert_all_gone(again)


def test_telemetry_off_collects_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    s = start_server(tmp_path_factory.mktemp("quiet"), env={"MLAMBDA_TELEMETRY": "0"})
    try:
        with s.client() as c:
            assert c.post("/echo", json={}).status_code == 200
        with s.admin() as a:
            assert a.get("/metrics").status_code == 404
            assert a.get("/admin/v1/metrics", params={"function": "echo"}).status_code == 409
        assert not (s.data / "metrics.db").exists()
    finally:
        s.stop()
        assert_all_gone(s)
