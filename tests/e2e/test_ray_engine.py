"""The Ray engine end to end, on a real two-node Ray cluster on this machine (a head and a
worker node, separate raylets, one CPU each), behind a real `mlambda up --engine ray`
process; where the answer must be the same as on `local`, the module's `local` server
(tests/conftest.py) answers the same requests, and the fault tests every engine passes
(tests/e2e/faults.py) run here against Ray.

Ray's nodes advertise the address the machine routes by (here the machine's own, never a
target of our tests), even when told `--node-ip-address 127.0.0.1` (Ray resolves loopback
to it). So these tests run in a network namespace holding nothing but a loopback
interface (`make test` runs the suite under `unshare --net`), where Ray's only address is
127.0.0.1 and nothing it starts can reach beyond this machine; elsewhere they are skipped.
"""

from __future__ import annotations

import base64
import gc
import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mlambda.client import Client
from tests.conftest import ROOT, Server, assert_all_gone, start_server, wait_for
from tests.e2e import test_control as control
from tests.e2e import test_handwriting as esun
from tests.e2e.faults import FaultTests
from tests.e2e.test_control import Load, bundle

if {name for _, name in socket.if_nameindex()} != {"lo"}:
    pytest.skip("the Ray engine's cluster tests run in a loopback-only network namespace "
                "(`make test`, `make test-ray`: unshare --net)", allow_module_level=True)
cluster_utils = pytest.importorskip(
    "ray.cluster_utils", reason="Ray is not installed: pip install 'mlambda[ray]'")

# ray.cluster_utils leaves files open as it starts raylets (Ray's, not ours)
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning",
                                        "ignore::pytest.PytestUnraisableExceptionWarning")

RAY_SEED = ROOT / "tests" / "functions" / "ray_seed.toml"
CASES = ROOT / "tests" / "data" / "handwriting"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head node and a worker node, one CPU each, both on 127.0.0.1 (the namespace's only
    address). A node that stops answering is declared dead after 3 missed health checks a
    second apart (Ray's default waits 30 s), so losing one is noticed within the test."""
    node = {"num_cpus": 1, "include_dashboard": False}
    head = {**node, "_system_config": {"health_check_period_ms": 1000,
                                       "health_check_timeout_ms": 1000,
                                       "health_check_failure_threshold": 3}}
    c = cluster_utils.Cluster(initialize_head=True, head_node_args=head)
    c.add_node(**node)
    c.wait_for_nodes()
    yield c
    c.shutdown()
    gc.collect()  # Ray's leaked files are closed here, under this module's warning filter


@pytest.fixture(scope="module")
def ray_server(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("ray"), seed=RAY_SEED,
                     env={"MLAMBDA_ENGINE": "ray", "MLAMBDA_RAY_ADDRESS": cluster.address,
                          # ten versions' replicas on two 1-CPU nodes, idle ones included
                          "MLAMBDA_RAY_REPLICA_CPUS": "0.1"},
                     # joining Ray starts Serve's controller (an actor, a new worker
                     # process): on a busy machine that alone can take tens of seconds
                     ready_s=120)
    yield s
    s.stop()
    assert_all_gone(s)


def post(server: Server, path: str, body: Any) -> tuple[int, Any]:
    with server.client() as c:
        r = c.post(path, content=json.dumps(body))
    return r.status_code, r.json()


def test_replicas_serve_on_both_nodes(cluster: Any, ray_server: Server) -> None:
    nodes = {cluster.head_node.node_id, *(n.node_id for n in cluster.worker_nodes)}
    assert len(nodes) == 2
    seen: set[str] = set()

    def ask() -> set[str]:
        with ThreadPoolExecutor(4) as pool:
            for status, body in pool.map(lambda _: post(ray_server, "/whereami", {}),
                                         range(8)):
                assert status == 200, body
                seen.add(body["node"])
        return seen

    wait_for(lambda: ask() == nodes, 60, f"answers from both nodes {nodes} (saw {seen})")
    assert seen == nodes


def test_echo_and_context_as_on_local(ray_server: Server) -> None:
    assert post(ray_server, "/echo", {"a": [1, "two"]}) == (200, {"a": [1, "two"]})
    status, body = post(ray_server, "/probe", {"i": 7})
    assert status == 200, body
    ctx = body["context"]
    assert ctx["function_name"] == "probe" and ctx["function_version"] == "1"
    assert ctx["memory_limit_in_mb"] == 256
    assert ctx["invoked_function_arn"].endswith(":function:probe:1")
    assert 0 < body["remaining_ms"] <= 5000
    assert body["init_pid"] == body["pid"]  # the module was imported in this replica
    assert body["volume"] == str(ray_server.data.resolve() / "volume")


def test_invocations_on_ray_are_logged_and_counted(ray_server: Server) -> None:
    """The telemetry hangs off the Ray engine as off local: each invocation's REPORT
    line is in the log store, found by its request id."""
    with ray_server.client() as c:
        r = c.post("/2015-03-31/functions/echo/invocations", json={"logged": "on ray"})
        assert r.status_code == 200, r.text
        request_id = r.headers["x-amzn-requestid"]
    with Client(ray_server.url, ray_server.admin_key) as admin:
        def report() -> str | None:
            for entry in admin.logs("echo", request_id=request_id)["entries"]:
                if f"REPORT RequestId: {request_id}" in entry["message"]:
                    return str(entry["message"])
            return None

        line = wait_for(report, 30, "the invocation's REPORT line")
    assert "Duration: " in line and "Memory Size: 128 MB" in line


def test_batches_form_from_the_functions_batch_settings(ray_server: Server) -> None:
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: post(ray_server, "/probe", {"i": i, "sleep": 0.2}),
                                range(16)))
    assert all(status == 200 for status, _ in answers), answers
    assert max(body["batch"] for _, body in answers) > 1  # max_batch 16, max_wait_ms 20
    assert all(body["batch"] <= 16 for _, body in answers)


def test_handwriting_answers_as_local(server: Server, ray_server: Server) -> None:
    cases = json.loads((CASES / "cases.json").read_text())[:8]
    for i, case in enumerate(cases):
        image = base64.b64encode((CASES / case["file"]).read_bytes()).decode()
        q = {"esun_uuid": f"{i:064x}", "esun_timestamp": int(time.time()), "image": image,
             "retry": 2}
        on_ray, on_local = post(ray_server, "/inference", q), post(server, "/inference", q)
        assert on_ray[0] == on_local[0] == 200, (on_ray, on_local)
        assert set(on_ray[1]) == {"esun_uuid", "server_uuid", "answer", "server_timestamp"}
        for key in ("esun_uuid", "server_uuid", "answer"):
            assert on_ray[1][key] == on_local[1][key], (key, on_ray, on_local)


def test_the_handlers_own_error_answers_as_on_local(server: Server,
                                                   ray_server: Server) -> None:
    q = {"esun_uuid": "x"}  # no image: the handler's own 400, not a platform error
    on_ray, on_local = post(ray_server, "/inference", q), post(server, "/inference", q)
    assert on_ray == on_local and on_ray[0] == 400, (on_ray, on_local)


class TestFaultsOnRay(FaultTests):
    """The fault tests of `local`, against Ray: the same statuses and error types. A dead
    replica's exit status stays on its node: the message says the replica was lost."""

    DIED: ClassVar[dict[str, str]] = dict.fromkeys(("exit", "kill", "segv"), "replica lost")

    @pytest.fixture()
    def server(self, ray_server: Server) -> Server:
        return ray_server


class TestEsunContractOnRay:
    """E.SUN's `/inference` contract (tests/e2e/test_handwriting.py) against Ray."""

    @pytest.fixture()
    def server(self, ray_server: Server) -> Server:
        return ray_server

    test_answer_has_exactly_the_four_keys = staticmethod(
        esun.test_answer_has_exactly_the_four_keys)
    test_held_out_scans_are_read = staticmethod(esun.test_held_out_scans_are_read)
    test_request_variants_of_the_contract = staticmethod(
        esun.test_request_variants_of_the_contract)
    test_retry_of_the_same_question_gets_the_same_answer = staticmethod(
        esun.test_retry_of_the_same_question_gets_the_same_answer)
    test_bad_input_is_400_naming_the_field = staticmethod(
        esun.test_bad_input_is_400_naming_the_field)
    test_body_that_is_not_json_is_400 = staticmethod(esun.test_body_that_is_not_json_is_400)
    test_the_model_comes_from_the_volume = staticmethod(
        esun.test_the_model_comes_from_the_volume)
    test_bad_items_fail_alone_in_a_batch = staticmethod(
        esun.test_bad_items_fail_alone_in_a_batch)


class TestControlOnRay:
    """The AWS SDK's Invoke, and a model swap under load with zero failures
    (tests/e2e/test_control.py), against Ray: the gateway is the same, the replicas read
    the same volume."""

    @pytest.fixture()
    def server(self, ray_server: Server) -> Server:
        return ray_server

    @pytest.fixture()
    def admin(self, ray_server: Server) -> Iterator[Client]:
        with Client(ray_server.url, ray_server.admin_key) as c:
            yield c

    test_boto3_lambda_client = staticmethod(control.test_boto3_lambda_client)
    test_model_swap_under_load_and_bad_uploads = staticmethod(
        control.test_model_swap_under_load_and_bad_uploads)


def test_scales_to_zero_when_idle_and_back(ray_server: Server) -> None:
    assert post(ray_server, "/probe", {"i": 1})[0] == 200

    def replicas() -> int:
        states = ray_server.runtime("probe").get("replicas", {})
        return int(states.get("RUNNING", 0)) + int(states.get("STARTING", 0))

    wait_for(lambda: replicas() > 0, 10, "probe's replica to be counted")
    wait_for(lambda: replicas() == 0, 60, "probe to scale to zero (idle_ttl_s 1)")
    status, body = post(ray_server, "/probe", {"i": 2})
    assert status == 200 and body["i"] == 2, body


def test_admin_scale_to_zero_then_a_cold_call(ray_server: Server) -> None:
    assert post(ray_server, "/echo", {"n": 1}) == (200, {"n": 1})
    with Client(ray_server.url, ray_server.admin_key) as admin:
        assert admin.scale_to_zero("echo", "live")["versions"] == ["1"]
    assert ray_server.runtime("echo")["instances"] == []  # its application is gone
    assert post(ray_server, "/echo", {"n": 2}) == (200, {"n": 2})  # deployed again


def test_alias_flips_under_load_lose_nothing(ray_server: Server, tmp_path: Path) -> None:
    """As on `local`: each flip warms the target version (a Serve application deployed on
    demand) before traffic moves, and the old one is drained, then deleted; a rollback to
    it deploys it again. No call fails."""
    with Client(ray_server.url, ray_server.admin_key) as admin:
        for tag in ("A", "B"):
            admin.deploy(bundle(tmp_path, "greeter", tag), publish=True)
        admin.set_alias("greeter", "live", "1")
        admin.add_route("POST", "/greet", "greeter:live")
        with Load(ray_server, "/greet", threads=4) as load:
            flips = []  # (set_alias called, returned, target)
            for target in ("2", "1", "2"):
                called = time.monotonic()
                admin.set_alias("greeter", "live", target)
                returned = time.monotonic()
                flips.append((called, returned, target))
                wait_for(lambda r=returned: len(load.since(r + 0.1)) >= 8, 30,
                         f"calls sent after the flip to version {target}")
    statuses = Counter(status for _, status, _ in load.answers)
    assert statuses == {200: len(load.answers)}, statuses
    # calls sent from 100 ms after a flip returned until the next flip: the new version only
    ends = [called for called, _, _ in flips[1:]] + [float("inf")]
    for (_, returned, target), end in zip(flips, ends, strict=True):
        later = [t for at, _, t in load.since(returned + 0.1) if at < end]
        assert later and set(later) == {{"1": "A", "2": "B"}[target]}, (target, Counter(later))


def test_losing_the_worker_node_under_load(cluster: Any, ray_server: Server,
                                          scratch: Path) -> None:
    """Last in this module: it takes the worker node away while calls are held running on
    both nodes (until the test releases them, node by node). Every call is answered, none
    hangs: those held on the lost node a clear 502, those on the head 200 once released;
    then the version serves again from the head alone."""
    worker = next(iter(cluster.worker_nodes))
    head = cluster.head_node.node_id

    def ask(i: int) -> tuple[int, Any]:
        return post(ray_server, "/whereami", {"hold": str(scratch), "i": i})

    def running_on(node: str) -> set[int]:
        return {int(f.name.split("-")[0]) for f in scratch.glob(f"[0-9]*-{node}")}

    with ThreadPoolExecutor(8) as pool:
        calls = [pool.submit(ask, i) for i in range(8)]
        wait_for(lambda: running_on(worker.node_id) and running_on(head), 30,
                 "calls held running on both nodes")
        on_worker = running_on(worker.node_id)
        cluster.remove_node(worker, allow_graceful=False)
        (scratch / f"release-{head}").touch()  # the head's calls finish now
        answers = [c.result(timeout=60) for c in calls]  # every call is answered
    for i, (status, body) in enumerate(answers):
        if i in on_worker:
            assert status == 502 and body.get("errorType") == "Runtime.ExitError", (i, body)
            assert "replica lost" in body["errorMessage"]
        else:  # ran on the head (or waited for a replica): answered in full, or a clear 502
            assert status == 200 or (status, body["errorType"]) == (502, "Runtime.ExitError"), \
                (i, body)
    assert all(answers[i] == (200, answers[i][1]) and answers[i][1]["node"] == head
               for i in running_on(head))

    def recovered() -> bool:
        return all(status == 200 and body["node"] == head
                   for status, body in (post(ray_server, "/whereami", {}) for _ in range(4)))

    wait_for(recovered, 60, "whereami to serve again, from the head node only")
