"""The exported SAM template, what goes into the package, the volume script and the cost,
without a server: cfn-lint and aws-sam-translator judge the template."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import lint

from mlambda.export import package, prices, project, sam
from mlambda.spec import load_spec, parse_spec
from mlambda.volume import Model, ModelStore
from tests.conftest import ROOT

SPEC = parse_spec("""
name = "reader"
handler = "app.handler"
memory_mb = 1024
timeout_s = 2.5
[env]
GREETING = "hello"
[scaling]
min_instances = 2
max_instances = 8
""")
# plans as mlambda's admin API lists them (GET /admin/v1/plans)
PLANS = (sam.plan_from_json({"name": "gold", "rate": 100, "burst": 200, "quota": 100000,
                             "period": "day", "weight": 4, "keys": ["bank"]}),
         sam.plan_from_json({"name": "free", "rate": 1, "burst": 2, "quota": None,
                             "period": None, "weight": 1, "keys": []}))
OPTIONS = sam.Options(subnets=("subnet-0123456789abcdef0", "subnet-0123456789abcdef1",
                               "subnet-0123456789abcdef2"),
                      security_group="sg-0123456789abcdef0")


def target(spec: Any = SPEC, plans: tuple[sam.UsagePlan, ...] = PLANS) -> sam.Target:
    routes = (sam.Route("POST", "/read"), sam.Route("GET", "/read/status"))
    return sam.Target(spec, "live", "7", "ab" * 32, routes, plans)


def transformed(doc: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation template `sam deploy` would create, after `sam package` replaced
    the local code directories with S3 locations."""
    from samtranslator.translator.transform import transform

    doc = yaml.safe_load(sam.dump(doc))
    for resource in doc["Resources"].values():
        props = resource["Properties"]
        for key in ("CodeUri", "ContentUri"):
            if key in props:
                props[key] = f"s3://mlambda-export-test/{key}.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    out: dict[str, Any] = transform(doc, {}, NoManagedPolicies())
    return out


def test_the_function_is_the_spec() -> None:
    t = sam.template(target(), OPTIONS)
    fn = t["Resources"]["Function"]["Properties"]
    assert fn["Runtime"] == "python3.12" and fn["Architectures"] == ["x86_64"]
    assert fn["MemorySize"] == 1024
    assert fn["Timeout"] == 3  # 2.5 s, rounded up to Lambda's whole seconds
    assert fn["Environment"]["Variables"] == {"GREETING": "hello",
                                              "MLAMBDA_VOLUME": sam.VOLUME_MOUNT}
    assert fn["FileSystemConfigs"][0]["LocalMountPath"] == sam.VOLUME_MOUNT
    assert fn["AutoPublishAlias"] == "live"
    assert fn["DeploymentPreference"]["Type"] == {"Ref": "DeploymentType"}
    assert t["Parameters"]["DeploymentType"]["Default"] == "Canary10Percent5Minutes"
    assert fn["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 2}
    assert fn["ReservedConcurrentExecutions"] == 8
    assert fn["Handler"] == "mlambda_entry.handler"
    assert {(e["Properties"]["Method"], e["Properties"]["Path"],
             e["Properties"]["Auth"]["ApiKeyRequired"]) for e in fn["Events"].values()} == {
        ("post", "/read", True), ("get", "/read/status", True)}
    # one mount target per subnet, each in the subnet given at export time
    mounts = [r for r in t["Resources"].values() if r["Type"] == "AWS::EFS::MountTarget"]
    assert [m["Properties"]["SubnetId"]["Fn::Select"][0] for m in mounts] == [0, 1, 2]
    assert t["Parameters"]["SubnetIds"]["Default"] == ",".join(OPTIONS.subnets)


def test_no_scaling_limits_means_none_on_aws() -> None:
    spec = load_spec(ROOT / "functions" / "handwriting")  # min 0, max: the local CPUs
    fn = sam.template(target(spec), OPTIONS)["Resources"]["Function"]["Properties"]
    assert "ProvisionedConcurrencyConfig" not in fn
    assert "ReservedConcurrentExecutions" not in fn


def test_usage_plans_mirror_mlambdas() -> None:
    resources = sam.template(target(), OPTIONS)["Resources"]
    gold = resources["UsagePlanGold"]["Properties"]
    assert gold["Throttle"] == {"RateLimit": 100.0, "BurstLimit": 200}
    assert gold["Quota"] == {"Limit": 100000, "Period": "DAY"}
    free = resources["UsagePlanFree"]["Properties"]
    assert free["Throttle"] == {"RateLimit": 1.0, "BurstLimit": 2} and "Quota" not in free
    assert resources["FirstApiKeyInPlan"]["Properties"]["UsagePlanId"] == {
        "Ref": "UsagePlanGold"}
    # without plans: one plan without limits, so that API keys work at all
    bare = sam.template(target(plans=()), OPTIONS)["Resources"]
    plans = [r for r in bare.values() if r["Type"] == "AWS::ApiGateway::UsagePlan"]
    assert len(plans) == 1 and "Throttle" not in plans[0]["Properties"]
    # plan names that differ only in symbols still get a resource each
    twins = (sam.UsagePlan("a-b", 1, 1), sam.UsagePlan("a_b", 2, 2))
    both = sam.template(target(plans=twins), OPTIONS)["Resources"]
    assert sorted(r["Properties"]["Throttle"]["RateLimit"] for r in both.values()
                  if r["Type"] == "AWS::ApiGateway::UsagePlan") == [1, 2]


def test_a_plan_is_checked() -> None:
    assert sam.plan_from_json({"name": "x", "quota": {"limit": 5, "period": "month"}}) == \
        sam.UsagePlan("x", quota_limit=5, quota_period="MONTH")
    with pytest.raises(ValueError, match="quota period 'YEAR'"):
        sam.plan_from_json({"name": "x", "quota": 5, "period": "year"})
    with pytest.raises(ValueError, match="needs both"):
        sam.UsagePlan("x", quota_limit=5)


def test_dashboard_shows_what_the_issue_asks() -> None:
    body = sam.dashboard_body(target())
    import json

    metrics = [(m[0], m[1], m[-1]["stat"]) for w in json.loads(body)["widgets"]
               for m in w["properties"]["metrics"]]
    for wanted in [("AWS/Lambda", "Invocations", "Sum"), ("AWS/Lambda", "Errors", "Sum"),
                   ("AWS/Lambda", "Throttles", "Sum"), ("AWS/Lambda", "Duration", "p50"),
                   ("AWS/Lambda", "Duration", "p99"),
                   ("AWS/Lambda", "ConcurrentExecutions", "Maximum"),
                   ("AWS/ApiGateway", "4XXError", "Sum"), ("AWS/ApiGateway", "5XXError", "Sum"),
                   ("AWS/ApiGateway", "Latency", "p50"), ("AWS/ApiGateway", "Latency", "p99")]:
        assert wanted in metrics


@pytest.mark.parametrize("variant", ["everything", "packages-on-volume"])
def test_template_is_lint_clean_and_transforms(variant: str) -> None:
    if variant == "everything":
        doc = sam.template(target(), OPTIONS)
    else:
        spec = load_spec(ROOT / "functions" / "handwriting")
        doc = sam.template(target(spec, plans=()), sam.Options(
            layer_dir=None, packages_on_volume="packages/python3.12-0123456789ab"))
    matches = lint(sam.dump(doc), regions=["us-east-1"])
    assert matches == [], "\n".join(str(m) for m in matches)

    cfn = transformed(doc)["Resources"]
    types = {name: r["Type"] for name, r in cfn.items()}
    alias = cfn["FunctionAliaslive"]
    assert alias["Type"] == "AWS::Lambda::Alias" and alias["Properties"]["Name"] == "live"
    assert "AWS::CodeDeploy::DeploymentGroup" in types.values()
    group = next(r for r in cfn.values() if r["Type"] == "AWS::CodeDeploy::DeploymentGroup")
    assert group["Properties"]["AlarmConfiguration"]["Alarms"] == [
        {"Name": {"Ref": "AliasErrorsAlarm"}}]
    # API Gateway calls the alias, and the usage plans apply to the API's stage
    api = cfn["Api"]["Properties"]["Body"]
    assert api["securityDefinitions"]["api_key"]["name"] == "x-api-key"
    uri = api["paths"]["/read"]
    uri = next(iter(uri.values()))["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
    assert "${FunctionAliaslive}" in uri
    stage = next(n for n, t in types.items() if t == "AWS::ApiGateway::Stage")
    for r in cfn.values():
        if r["Type"] == "AWS::ApiGateway::UsagePlan":
            assert r["Properties"]["ApiStages"][0]["Stage"] == {"Ref": stage}
    role = cfn["FunctionRole"]["Properties"]
    assert any(arn.endswith("AWSLambdaVPCAccessExecutionRole")
               for arn in role["ManagedPolicyArns"])
    fn = cfn["Function"]["Properties"]
    if variant == "everything":
        assert len(fn["Layers"]) == 1
    else:
        assert "Layers" not in fn
        assert fn["Environment"]["Variables"]["MLAMBDA_PACKAGES"] == (
            f"{sam.VOLUME_MOUNT}/packages/python3.12-0123456789ab")


def test_requirements_come_from_the_bundle_pinned_as_mlambda_pins_them() -> None:
    bundle = ROOT / "functions" / "handwriting"
    runtime = package.runtime_of(bundle, load_spec(bundle))
    pins = (ROOT / "pyproject.toml").read_text()
    for req in ("numpy==2.4.6", "onnxruntime==1.28.0", "pillow==13.0.0", "simplejpeg==1.9.0",
                "msgspec==0.22.0"):  # msgspec: mlambda.errors, which mlambda.volume imports
        assert req in runtime.requirements
        assert f'"{req}"' in pins
    assert len(runtime.requirements) == 5  # preprocess, decision: the bundle's own modules
    assert runtime.mlambda_files == ("__init__.py", "errors.py", "volume.py")
    echo = ROOT / "functions" / "echo"
    assert package.runtime_of(echo, load_spec(echo)) == package.Runtime((), ())


def test_an_unknown_import_must_be_named_in_requirements(tmp_path: Path) -> None:
    (tmp_path / "function.toml").write_text('name = "odd"\nhandler = "odd.handler"\n')
    (tmp_path / "odd.py").write_text("import no_such_module_anywhere\n"
                                     "def handler(event, context):\n    return event\n")
    spec = load_spec(tmp_path)
    with pytest.raises(package.PackageError, match=r"no_such_module_anywhere.*requirements\.txt"):
        package.runtime_of(tmp_path, spec)
    (tmp_path / "requirements.txt").write_text("no-such-module-anywhere==1.0  # ours\n")
    assert package.runtime_of(tmp_path, spec).requirements == ("no-such-module-anywhere==1.0",)


def test_wheel_tags_are_checked_for_lambda() -> None:
    ok = ["numpy-2.4.6-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
          "protobuf-7.36.2-cp310-abi3-manylinux2014_x86_64.whl",
          "flatbuffers-25.12.19-py2.py3-none-any.whl"]
    bad = ["numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.whl",  # another Python
           "numpy-2.4.6-cp312-cp312-manylinux_2_27_aarch64.whl",  # another machine
           "numpy-2.4.6-cp312-cp312-manylinux_2_39_x86_64.whl",  # newer glibc than AL2023
           "numpy-2.4.6-cp312-cp312-musllinux_1_2_x86_64.whl",
           "numpy-2.4.6-cp312-cp312-win_amd64.whl"]
    assert package.wheel_problems([Path(n) for n in ok], "python3.12") == []
    problems = package.wheel_problems([Path(n) for n in bad], "python3.12")
    assert [p.split(":")[0] for p in problems] == bad


def test_cost_follows_the_spec_prices() -> None:
    # the spec's example: 10,000 calls a day, 22 days, 0.5 s at 8 GB
    c = prices.monthly_cost(220_000, 500, 8192)
    assert c.gb_seconds == pytest.approx(880_000)
    assert c.compute_usd == pytest.approx(880_000 * 0.0000166667)
    assert c.lambda_requests_usd == pytest.approx(0.044)
    assert c.api_requests_usd == pytest.approx(0.77)  # REST: API keys need it
    assert prices.monthly_cost(1, 0.2, 1024).gb_seconds == pytest.approx(0.001)  # 1 ms


def sh(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(Path(project.__file__).parent / "volume.sh"),
                           *map(str, args)], capture_output=True, text=True, check=False)


def test_volume_script_keeps_mlambdas_layout(tmp_path: Path) -> None:
    """volume.sh writes what mlambda.volume reads: a reader sees a pushed model, then the
    next one, then the first again after a rollback."""
    root = tmp_path / "volume"
    root.mkdir()
    first, second = tmp_path / "greeting.txt", tmp_path / "v2" / "greeting.txt"
    second.parent.mkdir()
    first.write_text("hello")
    second.write_text("bonjour")
    assert sh(root, "push", "greeting", first).returncode == 0
    reader = Model("greeting", lambda p: p.read_text(), root)
    assert reader.get() == "hello"
    r = sh(root, "push", "greeting", second)
    assert r.returncode == 0, r.stderr
    reader.get()
    reader.wait_idle(10)
    assert reader.get() == "bonjour"
    sha1 = hashlib.sha256(b"hello").hexdigest()
    assert sorted(p.name for p in (root / "models" / "greeting" / "versions").iterdir()) == \
        sorted([sha1, hashlib.sha256(b"bonjour").hexdigest()])
    assert sh(root, "rollback", "greeting", sha1).returncode == 0
    reader.get()
    reader.wait_idle(10)
    assert reader.get() == "hello"
    assert ModelStore(root).current("greeting") == sha1
    assert not list((root / "models" / "greeting").glob(".*"))  # no leftovers
    bad = sh(root, "push", "../escape", first)
    assert bad.returncode == 2 and "model name" in bad.stderr
    assert sh(root, "rollback", "greeting", "0" * 64).returncode == 2


def test_options_are_checked_and_mount_targets_follow_the_subnets() -> None:
    assert OPTIONS.problems() == []
    assert sam.Options(subnets=("subnet-0123456789abcdef0",)).mount_targets == 1
    assert sam.Options().mount_targets == 2  # subnets given at deploy: two zones
    bad = sam.Options(subnets=("subnet-0123456789abcdef0", "subnet-0123456789abcdef0", "vpc-1"),
                      security_group="sg-xyz", runtime="python3.11")
    assert [p.split(":")[0] for p in bad.problems()] == [
        "--vpc-subnets", "--vpc-subnets", "--security-group", "--runtime"]
