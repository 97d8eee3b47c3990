"""`mlambda export aws` against a real server: the code is the registry's, byte for byte;
the packages are Linux x86_64 wheels for the runtime and fit Lambda's limit; and the
exported function, run by AWS's own Python runtime client in the runtime's Python version
with only the exported directories on sys.path (tests/lambda_runtime.py), given a real
API Gateway proxy event, answers as the local platform does on the same requests.

The wheels are downloaded once into the shared cache (~/.cache/mlambda/wheels, or
MLAMBDA_WHEEL_CACHE); later runs read them from there.
"""

from __future__ import annotations

import base64
import copy
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from mlambda import cli
from mlambda.client import Client
from mlambda.export import package, sam
from mlambda.registry import bundle_digest
from tests.conftest import ROOT, Server, wait_for
from tests.lambda_runtime import LambdaFunction

EVENT = json.loads((ROOT / "tests" / "data" / "export" / "apigw-rest-proxy-event.json")
                   .read_text())
CASES = ROOT / "tests" / "data" / "handwriting"


def lambda_python() -> str:
    """The interpreter of the exported runtime (python3.12), as Lambda would run it."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    candidates += [p for p in [shutil.which("python3.12")] if p]
    for candidate in candidates:
        ok = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                            capture_output=True, text=True, check=False)
        if ok.returncode == 0 and ok.stdout.strip() == "(3, 12)":
            return candidate
    pytest.skip("no Python 3.12 on this machine to play Lambda's python3.12 runtime")


def export_args(target: str, out: Path, *extra: str) -> list[str]:
    return ["export", "aws", target, "--out", str(out),
            "--vpc-subnets", "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
            "--security-group", "sg-0123456789abcdef0", *extra]


def export(server: Server, target: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, in its own process."""
    env = {**os.environ, "MLAMBDA_URL": server.url, "MLAMBDA_ADMIN_KEY": server.admin_key}
    return subprocess.run([sys.executable, "-m", "mlambda.cli", *export_args(target, out, *extra)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)


def export_here(server: Server, target: str, out: Path, *extra: str) -> Result:
    """The same command in this process (no interpreter start: the tests stay quick)."""
    env = {"MLAMBDA_URL": server.url, "MLAMBDA_ADMIN_KEY": server.admin_key}
    return CliRunner().invoke(cli.app, export_args(target, out, *extra), env=env)


@pytest.fixture(scope="module")
def handwriting(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("aws") / "handwriting"
    with Client(server.url, server.admin_key) as c:  # a plan of mlambda's, to mirror
        c.create_plan("export-gold", rate=50, burst=100, quota=100000, period="day")
    r = export(server, "handwriting:live", out)
    assert r.returncode == 0, r.stderr
    (out / "cli-output.txt").write_text(r.stdout)
    yield out


def proxy_event(body: str, path: str) -> dict[str, Any]:
    event = copy.deepcopy(EVENT)
    event["resource"] = event["path"] = event["requestContext"]["resourcePath"] = path
    event["requestContext"]["path"] = f"/live{path}"
    event["body"] = body
    return event


def lambda_function(out: Path, env: dict[str, str], layer: bool = True) -> LambdaFunction:
    return LambdaFunction(lambda_python(), out, env, layer)


def volume_with(tmp: Path, name: str, model: Path, out: Path) -> Path:
    root = tmp / "mnt-mlambda"
    root.mkdir(exist_ok=True)
    r = subprocess.run(["sh", str(out / "volume.sh"), str(root), "push", name, str(model)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return root


def test_bundle_endpoint_gives_the_stored_code(server: Server, tmp_path: Path) -> None:
    with Client(server.url, server.admin_key) as c:
        info = c.version("handwriting", "1")
        archive, sha = c.bundle("handwriting", "1")
        missing = pytest.raises(Exception, match="404")
        with missing:
            c.bundle("handwriting", "99")
    assert sha == info["sha256"]
    assert info["spec"]["batch_handler"] == "app.batch_handler"
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    assert bundle_digest(tmp_path) == sha == bundle_digest(ROOT / "functions" / "handwriting")


def test_code_is_the_registrys_and_the_entry_point_only_refers_to_it(handwriting: Path) -> None:
    source = ROOT / "functions" / "handwriting"
    for f in source.rglob("*"):
        if f.is_file() and "__pycache__" not in f.parts:
            assert (handwriting / "src" / f.relative_to(source)).read_bytes() == f.read_bytes()
    entry = (handwriting / "src" / "mlambda_entry.py").read_text()
    assert "BATCH_HANDLER: str | None = 'app.batch_handler'" in entry
    import ast

    def defined(text: str) -> set[str]:
        return {n.name for n in ast.walk(ast.parse(text))
                if isinstance(n, ast.FunctionDef | ast.ClassDef)}

    # its own small adapters only; none of the handler's code (which it imports)
    assert defined(entry) == {"_resolve", "_is_proxy_event", "_json_response", "_run",
                              "handler"}
    assert defined((source / "app.py").read_text()) & defined(entry) == {"handler"}
    assert len(entry.splitlines()) < 100
    # the part of mlambda the handler imports, as mlambda ships it, and nothing more
    shipped = sorted(p.name for p in (handwriting / "src" / "mlambda").iterdir())
    assert shipped == ["__init__.py", "errors.py", "volume.py"]
    assert (handwriting / "src" / "mlambda" / "volume.py").read_bytes() == (
        ROOT / "mlambda" / "volume.py").read_bytes()


def test_exported_template_is_lint_clean_with_mlambdas_plans(handwriting: Path) -> None:
    from cfnlint.api import lint

    matches = lint((handwriting / "template.yaml").read_text(), regions=["us-east-1"])
    assert matches == [], "\n".join(str(m) for m in matches)
    resources = yaml.safe_load((handwriting / "template.yaml").read_text())["Resources"]
    gold = resources["UsagePlanExportGold"]["Properties"]  # made by the fixture
    assert gold["Throttle"] == {"RateLimit": 50.0, "BurstLimit": 100}
    assert gold["Quota"] == {"Limit": 100000, "Period": "DAY"}


def test_packages_are_lambdas_and_fit(handwriting: Path) -> None:
    marker = json.loads((handwriting / ".mlambda-export.json").read_text())
    wheels = package.download(tuple(marker["requirements"]), "python3.12")  # the cached set
    assert {w.name.split("-")[0].lower() for w in wheels} >= {
        "numpy", "onnxruntime", "pillow", "simplejpeg", "msgspec"}
    assert package.wheel_problems(wheels, "python3.12") == []
    layer = handwriting / "layer" / "python"
    for so in layer.rglob("*.so*"):  # every native library is x86-64 ELF (e_machine 62)
        head = so.read_bytes()[:20]
        assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 62, so
    assert any(layer.glob("numpy/_core/*.cpython-312-x86_64-linux-gnu.so"))
    size = package.tree_size(handwriting / "src") + package.tree_size(handwriting / "layer")
    assert size < package.UNZIPPED_LIMIT_BYTES
    said = (handwriting / "cli-output.txt").read_text()
    assert f"unzipped {size / 2**20:.1f} MB of Lambda's 250 MB" in said
    assert f"{size / 2**20:.1f} MB" in (handwriting / "README.md").read_text()


def test_handwriting_answers_on_lambda_as_locally(server: Server, handwriting: Path,
                                                  tmp_path: Path) -> None:
    volume = volume_with(tmp_path, "handwriting", ROOT / "models" / "handwriting.onnx",
                         handwriting)
    cases = json.loads((CASES / "cases.json").read_text())
    runtime = lambda_function(handwriting, {"MLAMBDA_VOLUME": str(volume)})
    try:
        for i, case in enumerate(cases):
            body = json.dumps({"esun_uuid": f"{i:064x}", "esun_timestamp": 1700000000,
                               "image": base64.b64encode((CASES / case["file"]).read_bytes())
                               .decode(), "retry": 2})
            with server.client() as c:
                local = c.post("/inference", content=body)
            on_lambda = runtime.call(proxy_event(body, "/inference"))
            assert on_lambda["statusCode"] == local.status_code == 200
            got, want = json.loads(on_lambda["body"]), local.json()
            assert set(got) == set(want) == {"esun_uuid", "server_uuid", "answer",
                                             "server_timestamp"}
            assert (got["esun_uuid"], got["server_uuid"], got["answer"]) == (
                want["esun_uuid"], want["server_uuid"], want["answer"]), case["file"]
        bad = json.dumps({"esun_uuid": "x", "image": "not base64!"})
        with server.client() as c:
            local = c.post("/inference", content=bad)
        on_lambda = runtime.call(proxy_event(bad, "/inference"))
        assert on_lambda["statusCode"] == local.status_code == 400
        assert json.loads(on_lambda["body"]) == local.json()
    finally:
        runtime.close()


def test_echo_body_event_on_lambda_as_locally(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "echo"
    r = export_here(server, "echo", out)  # no alias given: live
    assert r.exit_code == 0, r.output
    assert not (out / "layer").exists()  # echo imports nothing: no layer, no mlambda
    assert not (out / "src" / "mlambda").exists()
    runtime = lambda_function(out, {}, layer=False)
    try:
        body = json.dumps({"hello": "世界", "n": [1, 2.5, None]})
        with server.client() as c:
            local = c.post("/echo", content=body)
        on_lambda = runtime.call(proxy_event(body, "/echo"))
        assert on_lambda["statusCode"] == local.status_code == 200
        assert on_lambda["headers"]["content-type"] == local.headers["content-type"]
        assert json.loads(on_lambda["body"]) == local.json() == json.loads(body)
        with server.client() as c:
            local = c.post("/echo", content=b"{not json")
        on_lambda = runtime.call(proxy_event("{not json", "/echo"))
        assert on_lambda["statusCode"] == local.status_code == 400
        assert json.loads(on_lambda["body"])["errorType"] == local.json()["errorType"]
        # a direct `lambda invoke` passes the payload through, as mlambda's Invoke API does
        assert runtime.call({"direct": True}) == {"direct": True}
    finally:
        runtime.close()


def test_packages_on_the_volume_and_a_model_replaced_without_restart(
        server: Server, tmp_path: Path) -> None:
    """modelreader (mlambda.volume.Model) with --packages-on-efs: no layer; the packages and
    the model are on the volume; a model pushed while the function runs is picked up."""
    out = tmp_path / "modelreader"
    r = export_here(server, "modelreader:live", out, "--packages-on-efs")
    assert r.exit_code == 0, r.output
    assert not (out / "layer").exists()
    template = yaml.safe_load((out / "template.yaml").read_text())
    fn = template["Resources"]["Function"]["Properties"]
    assert "Layers" not in fn and fn["ReservedConcurrentExecutions"] == 2
    packages = fn["Environment"]["Variables"]["MLAMBDA_PACKAGES"]
    rel = Path(packages).relative_to(fn["FileSystemConfigs"][0]["LocalMountPath"])
    assert (out / "efs" / rel / "msgspec").is_dir()
    assert f"./volume.sh {sam.VOLUME_MOUNT} packages efs/{rel}\n" in (out / "README.md").read_text()
    first = tmp_path / "greeting.txt"
    first.write_text("hello from the volume")
    volume = volume_with(tmp_path, "greeting", first, out)
    r2 = subprocess.run(["sh", str(out / "volume.sh"), str(volume), "packages",
                         str(out / "efs" / rel)], capture_output=True, text=True, check=False)
    assert r2.returncode == 0, r2.stderr
    runtime = lambda_function(out, {"MLAMBDA_VOLUME": str(volume),
                                    "MLAMBDA_PACKAGES": str(volume / rel)}, layer=False)
    try:
        event = proxy_event("{}", "/greeting")
        assert json.loads(runtime.call(event)["body"]) == {"greeting": "hello from the volume"}
        second = tmp_path / "v2" / "greeting.txt"
        second.parent.mkdir()
        second.write_text("replaced, no restart")
        volume_with(tmp_path, "greeting", second, out)
        started = time.monotonic()
        wait_for(lambda: json.loads(runtime.call(event)["body"])["greeting"]
                 == "replaced, no restart", 10, "the new model on the running function")
        assert time.monotonic() - started < 10
    finally:
        runtime.close()


def test_dry_run_prints_resources_and_cost_and_writes_nothing(server: Server,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "dry"
    r = export_here(server, "handwriting:live", out, "--dry-run", "--requests-per-month",
                    "1000000", "--duration-ms", "100")
    assert r.exit_code == 0, r.output
    assert not out.exists()
    for resource in ("AWS::Serverless::Function", "AWS::EFS::FileSystem", "AWS::EFS::AccessPoint",
                     "AWS::EFS::MountTarget", "AWS::Serverless::Api",
                     "AWS::ApiGateway::UsagePlan", "AWS::Logs::LogGroup",
                     "AWS::CloudWatch::Dashboard", "AWS::Serverless::LayerVersion"):
        assert resource in r.stdout
    assert "POST /live/inference" in r.stdout
    # 1M x 100 ms x 0.5 GB = 50,000 GB-s; $0.83 + $0.20 + $3.50
    assert "50,000 GB-s" in r.stdout and "**$4.53**" in r.stdout


def test_unknown_alias_and_a_foreign_directory_are_refused(server: Server,
                                                           tmp_path: Path) -> None:
    r = export_here(server, "handwriting:nosuch", tmp_path / "x")
    assert r.exit_code == 1 and "has no alias 'nosuch' (its aliases: live)" in r.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    r = export_here(server, "echo", tmp_path / "mine")
    assert r.exit_code == 1 and "not written by mlambda export" in r.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    r = export_here(server, "echo", tmp_path / "y", "--vpc-subnets", "subnet-0123456789abcdef0",
                    "--security-group", "default", "--runtime", "python3.9")
    assert r.exit_code == 2
    assert "'default' is not a security group id" in r.stderr and "python3.9" in r.stderr
    assert not (tmp_path / "y").exists()


def test_a_handlers_exception_is_a_lambda_function_error(server: Server, tmp_path: Path) -> None:
    """Not caught by the entry point: Lambda's runtime reports it (it counts in `Errors`,
    which the canary's alarm watches), with the handler's error type and message, as
    mlambda's Invoke API does."""
    out = tmp_path / "faulty"
    r = export_here(server, "faulty", out)
    assert r.exit_code == 0, r.output
    with Client(server.url, server.admin_key) as c:
        local = c.http.post("/2015-03-31/functions/faulty:live/invocations",
                            content=json.dumps({"do": "raise"}))
    assert local.headers["x-amz-function-error"] == "Unhandled"
    function = lambda_function(out, {}, layer=False)
    try:
        kind, error = function.api.invoke(proxy_event(json.dumps({"do": "raise"}), "/faulty"),
                                          lambda: function.proc.poll() is None)
        assert kind == "error"
        assert (error["errorType"], error["errorMessage"]) == (
            local.json()["errorType"], local.json()["errorMessage"]) == (
            "BadThing", "the handler raised on purpose")
        # the environment lives on and answers the next call
        ok = function.call(proxy_event(json.dumps({"do": "nothing"}), "/faulty"))
        assert ok["statusCode"] == 200 and "pid" in json.loads(ok["body"])
    finally:
        function.close()
