"""An exported function as a SAM template: the spec's architecture, API Gateway (REST,
API keys, usage plans) + Lambda (alias, canary deployment) + EFS (the volume) +
CloudWatch (log group, dashboard, the canary's alarm).

Pure: data in, a template (a dict, dumped to YAML) out; no I/O, no AWS calls.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from mlambda.spec import FunctionSpec

VOLUME_MOUNT = "/mnt/mlambda"  # where Lambda mounts the access point; MLAMBDA_VOLUME
ACCESS_POINT_ROOT = "/mlambda"  # the access point's directory inside the file system
POSIX_ID = "1000"  # the user the function (and the upload host) reads and writes as
DEPLOYMENT_TYPES = (
    "Canary10Percent5Minutes", "Canary10Percent10Minutes", "Canary10Percent15Minutes",
    "Canary10Percent30Minutes", "Linear10PercentEvery1Minute", "Linear10PercentEvery2Minutes",
    "Linear10PercentEvery3Minutes", "Linear10PercentEvery10Minutes", "AllAtOnce",
)
QUOTA_PERIODS = ("DAY", "WEEK", "MONTH")
_LOGICAL = re.compile(r"[^A-Za-z0-9]")


@dataclass(frozen=True)
class UsagePlan:
    """One of mlambda's usage plans, as API Gateway knows them."""

    name: str
    rate_limit: float | None = None  # requests per second
    burst_limit: int | None = None
    quota_limit: int | None = None
    quota_period: str | None = None  # DAY | WEEK | MONTH

    def __post_init__(self) -> None:
        if self.quota_period is not None and self.quota_period not in QUOTA_PERIODS:
            raise ValueError(f"usage plan {self.name!r}: quota period {self.quota_period!r}: "
                             f"expected one of {', '.join(QUOTA_PERIODS)}")
        if (self.quota_limit is None) != (self.quota_period is None):
            raise ValueError(f"usage plan {self.name!r}: a quota needs both a limit and a "
                             "period")


def plan_from_json(doc: dict[str, Any]) -> UsagePlan:
    """A plan as mlambda's admin API describes it: {name, rate (requests/s), burst,
    quota, period ("day" | "month")}; `quota` may also be {limit, period}. Absent or null:
    no limit. (A plan's `weight`, for fair sharing, has no API Gateway counterpart.)"""
    quota: Any = doc.get("quota")
    period: Any = doc.get("period")
    if isinstance(quota, dict):
        period = quota.get("period")
        quota = quota.get("limit")
    return UsagePlan(
        name=str(doc["name"]),
        rate_limit=None if doc.get("rate") is None else float(doc["rate"]),
        burst_limit=None if doc.get("burst") is None else int(doc["burst"]),
        quota_limit=None if quota is None else int(quota),
        quota_period=None if period is None else str(period).upper(),
    )


@dataclass(frozen=True)
class Route:
    method: str
    path: str


@dataclass(frozen=True)
class Target:
    """What is exported: one version of a function, behind an alias, with its routes."""

    spec: FunctionSpec
    alias: str
    version: str
    sha256: str
    routes: tuple[Route, ...]
    plans: tuple[UsagePlan, ...] = ()


@dataclass(frozen=True)
class Options:
    runtime: str = "python3.12"
    region: str = "us-east-1"
    subnets: tuple[str, ...] = ()
    security_group: str | None = None
    deployment: str = "Canary10Percent5Minutes"
    log_retention_days: int = 30
    code_dir: str = "src"
    layer_dir: str | None = "layer"  # None: the packages are on the volume
    packages_on_volume: str | None = None  # the path under MLAMBDA_VOLUME, if they are
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def mount_targets(self) -> int:
        """One mount target per subnet; the number is fixed when the template is written
        (two, for two availability zones, when no subnets are given yet)."""
        return len(self.subnets) or 2

    def problems(self) -> list[str]:
        out = [f"--vpc-subnets: {s!r} is not a subnet id (subnet-0123abcd...)"
               for s in self.subnets if not re.fullmatch(r"subnet-[0-9a-f]{8,17}", s)]
        if len(set(self.subnets)) != len(self.subnets):
            out.append("--vpc-subnets: a subnet is given twice")
        if self.security_group is not None and not re.fullmatch(r"sg-[0-9a-f]{8,17}",
                                                                self.security_group):
            out.append(f"--security-group: {self.security_group!r} is not a security group id "
                       "(sg-0123abcd...)")
        if self.runtime not in ("python3.12", "python3.13"):
            out.append(f"--runtime: {self.runtime!r}: expected python3.12 or python3.13")
        if self.deployment not in DEPLOYMENT_TYPES:
            out.append(f"deployment {self.deployment!r}: expected one of "
                       f"{', '.join(DEPLOYMENT_TYPES)}")
        return out


def logical_id(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in _LOGICAL.split(text) if part)


def _sub(text: str) -> dict[str, Any]:
    return {"Fn::Sub": text}


def _ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def _att(name: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [name, attribute]}


def environment(target: Target, options: Options) -> dict[str, str]:
    env = {**target.spec.env, "MLAMBDA_VOLUME": VOLUME_MOUNT, **options.extra_env}
    if options.packages_on_volume is not None:
        env["MLAMBDA_PACKAGES"] = f"{VOLUME_MOUNT}/{options.packages_on_volume}"
    return env


def api_name() -> dict[str, Any]:
    return _sub("${AWS::StackName}-api")


def template(target: Target, options: Options) -> dict[str, Any]:
    spec = target.spec
    resources: dict[str, Any] = {}
    mount_targets = [f"MountTarget{i}" for i in range(options.mount_targets)]

    events: dict[str, Any] = {}
    for route in target.routes:
        events[logical_id(f"{route.method} {route.path}") or "Root"] = {
            "Type": "Api",
            "Properties": {"RestApiId": _ref("Api"), "Path": route.path,
                           "Method": route.method.lower(), "Auth": {"ApiKeyRequired": True}},
        }

    function: dict[str, Any] = {
        "CodeUri": f"{options.code_dir}/",
        "Handler": "mlambda_entry.handler",
        "Runtime": options.runtime,
        "Architectures": ["x86_64"],
        "MemorySize": spec.memory_mb,
        "Timeout": math.ceil(spec.timeout_s),
        "Description": f"{spec.name} version {target.version} (code {target.sha256[:12]}), "
                       "exported by mlambda",
        "Environment": {"Variables": environment(target, options)},
        "AutoPublishAlias": target.alias,
        "DeploymentPreference": {"Type": _ref("DeploymentType"),
                                 "Alarms": [_ref("AliasErrorsAlarm")]},
        "FileSystemConfigs": [{"Arn": _att("AccessPoint", "Arn"),
                               "LocalMountPath": VOLUME_MOUNT}],
        "VpcConfig": {"SubnetIds": _ref("SubnetIds"),
                      "SecurityGroupIds": [_ref("SecurityGroupId")]},
        "LoggingConfig": {"LogGroup": _ref("LogGroup"), "LogFormat": "Text"},
        "Policies": [{"Statement": [{
            "Effect": "Allow",
            "Action": ["elasticfilesystem:ClientMount"],
            "Resource": _att("FileSystem", "Arn"),
            "Condition": {"StringEquals": {
                "elasticfilesystem:AccessPointArn": _att("AccessPoint", "Arn")}},
        }]}],
        "Events": events,
    }
    if options.layer_dir is not None:
        function["Layers"] = [_ref("Dependencies")]
    if spec.scaling.min_instances > 0:
        function["ProvisionedConcurrencyConfig"] = {
            "ProvisionedConcurrentExecutions": spec.scaling.min_instances}
    if spec.scaling.max_instances is not None:
        function["ReservedConcurrentExecutions"] = spec.scaling.max_instances
    resources["Function"] = {"Type": "AWS::Serverless::Function",
                             "DependsOn": mount_targets, "Properties": function}

    if options.layer_dir is not None:
        resources["Dependencies"] = {
            "Type": "AWS::Serverless::LayerVersion",
            "Properties": {
                "LayerName": _sub(f"${{AWS::StackName}}-{spec.name}-packages"),
                "Description": f"Python packages of {spec.name} for {options.runtime}",
                "ContentUri": f"{options.layer_dir}/",
                "CompatibleRuntimes": [options.runtime],
                "CompatibleArchitectures": ["x86_64"],
                "RetentionPolicy": "Delete",
            },
        }

    resources["LogGroup"] = {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {"LogGroupName": _sub(f"/aws/lambda/${{AWS::StackName}}-{spec.name}"),
                       "RetentionInDays": _ref("LogRetentionDays")},
    }
    resources["AliasErrorsAlarm"] = {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": f"{spec.name}:{target.alias} answered with a function error; "
                                "a canary deployment in progress rolls back",
            "Namespace": "AWS/Lambda", "MetricName": "Errors",
            "Dimensions": [{"Name": "FunctionName", "Value": _ref("Function")},
                           {"Name": "Resource",
                            "Value": _sub(f"${{Function}}:{target.alias}")}],
            "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching",
        },
    }

    # -- the volume ---------------------------------------------------------------------
    resources["FileSystem"] = {
        "Type": "AWS::EFS::FileSystem",
        "DeletionPolicy": "Retain",  # the models live here
        "UpdateReplacePolicy": "Retain",
        "Properties": {"Encrypted": True, "PerformanceMode": "generalPurpose",
                       "ThroughputMode": "elastic",
                       "FileSystemTags": [{"Key": "Name",
                                           "Value": _sub("${AWS::StackName}-volume")}]},
    }
    resources["AccessPoint"] = {
        "Type": "AWS::EFS::AccessPoint",
        "Properties": {
            "FileSystemId": _ref("FileSystem"),
            "PosixUser": {"Uid": POSIX_ID, "Gid": POSIX_ID},
            "RootDirectory": {"Path": ACCESS_POINT_ROOT, "CreationInfo": {
                "OwnerUid": POSIX_ID, "OwnerGid": POSIX_ID, "Permissions": "755"}},
        },
    }
    for i, name in enumerate(mount_targets):
        resources[name] = {
            "Type": "AWS::EFS::MountTarget",
            "Properties": {"FileSystemId": _ref("FileSystem"),
                           "SubnetId": {"Fn::Select": [i, _ref("SubnetIds")]},
                           "SecurityGroups": [_ref("SecurityGroupId")]},
        }
    resources["NfsFromFunction"] = {
        "Type": "AWS::EC2::SecurityGroupIngress",
        "Properties": {"GroupId": _ref("SecurityGroupId"), "IpProtocol": "tcp",
                       "FromPort": 2049, "ToPort": 2049,
                       "SourceSecurityGroupId": _ref("SecurityGroupId"),
                       "Description": "NFS from the function to the volume's mount targets"},
    }

    # -- the API ------------------------------------------------------------------------
    resources["Api"] = {
        "Type": "AWS::Serverless::Api",
        "Properties": {"Name": api_name(), "StageName": target.alias,
                       "Auth": {"ApiKeyRequired": True}},
    }
    plans = target.plans or (UsagePlan("default"),)
    plan_ids: list[str] = []
    for i, plan in enumerate(plans):
        plan_id = f"UsagePlan{logical_id(plan.name)}"
        if plan_id in plan_ids or plan_id == "UsagePlan":  # names that differ in symbols only
            plan_id = f"UsagePlan{i}{logical_id(plan.name)}"
        plan_ids.append(plan_id)
        props: dict[str, Any] = {
            "UsagePlanName": _sub(f"${{AWS::StackName}}-{plan.name}"),
            "Description": f"mlambda usage plan {plan.name!r}",
            "ApiStages": [{"ApiId": _ref("Api"), "Stage": _ref("Api.Stage")}],
        }
        throttle: dict[str, Any] = {}
        if plan.rate_limit is not None:
            throttle["RateLimit"] = plan.rate_limit
        if plan.burst_limit is not None:
            throttle["BurstLimit"] = plan.burst_limit
        if throttle:
            props["Throttle"] = throttle
        if plan.quota_limit is not None:
            props["Quota"] = {"Limit": plan.quota_limit, "Period": plan.quota_period}
        resources[plan_id] = {"Type": "AWS::ApiGateway::UsagePlan", "Properties": props}
    first_plan = plan_ids[0]
    resources["FirstApiKey"] = {
        "Type": "AWS::ApiGateway::ApiKey",
        "Properties": {"Enabled": True, "Name": _sub("${AWS::StackName}-first-key"),
                       "Description": f"the first key, in usage plan {plans[0].name!r}"},
    }
    resources["FirstApiKeyInPlan"] = {
        "Type": "AWS::ApiGateway::UsagePlanKey",
        "Properties": {"KeyId": _ref("FirstApiKey"), "KeyType": "API_KEY",
                       "UsagePlanId": _ref(first_plan)},
    }
    resources["Dashboard"] = {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {"DashboardName": _sub(f"${{AWS::StackName}}-{spec.name}"),
                       "DashboardBody": _sub(dashboard_body(target))},
    }

    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"mlambda function {spec.name}:{target.alias} (version "
                       f"{target.version}): API Gateway + Lambda + EFS + CloudWatch",
        "Parameters": parameters(options),
        "Resources": resources,
        "Outputs": outputs(target),
    }


def parameters(options: Options) -> dict[str, Any]:
    subnets: dict[str, Any] = {
        "Type": "List<AWS::EC2::Subnet::Id>",
        "Description": f"exactly {options.mount_targets} subnets, in different availability "
                       "zones, for the function and the volume's mount targets",
    }
    if options.subnets:
        subnets["Default"] = ",".join(options.subnets)
    group: dict[str, Any] = {
        "Type": "AWS::EC2::SecurityGroup::Id",
        "Description": "security group of the function and the volume's mount targets "
                       "(the stack lets it reach itself on NFS, port 2049)",
    }
    if options.security_group:
        group["Default"] = options.security_group
    return {
        "SubnetIds": subnets,
        "SecurityGroupId": group,
        "DeploymentType": {"Type": "String", "Default": options.deployment,
                           "AllowedValues": list(DEPLOYMENT_TYPES),
                           "Description": "how traffic moves to a new version (CodeDeploy)"},
        "LogRetentionDays": {"Type": "Number", "Default": options.log_retention_days,
                             "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 180, 365],
                             "Description": "days the function's logs are kept"},
    }


def outputs(target: Target) -> dict[str, Any]:
    first = target.routes[0].path if target.routes else "/"
    return {
        "ApiUrl": {"Description": f"the API's base URL (e.g. POST ...{first})",
                   "Value": _sub(f"https://${{Api}}.execute-api.${{AWS::Region}}."
                                 f"${{AWS::URLSuffix}}/{target.alias}")},
        "FunctionAlias": {"Description": "the alias API Gateway invokes",
                          "Value": _sub(f"${{Function}}:{target.alias}")},
        "FirstApiKeyId": {"Description": "aws apigateway get-api-key --include-value "
                                         "--api-key <this> prints the key",
                          "Value": _ref("FirstApiKey")},
        "FileSystemId": {"Description": "the volume (models, packages)",
                         "Value": _ref("FileSystem")},
        "AccessPointId": {"Description": f"the volume's access point ({ACCESS_POINT_ROOT})",
                          "Value": _ref("AccessPoint")},
        "DashboardUrl": {"Value": _sub(
            "https://${AWS::Region}.console.${AWS::URLSuffix}/cloudwatch/home?region="
            "${AWS::Region}#dashboards:name=${Dashboard}")},
    }


def dashboard_body(target: Target) -> str:
    """The CloudWatch dashboard's JSON, with ${...} for Fn::Sub to fill in."""
    fn = ["FunctionName", "${Function}"]
    api = ["ApiName", "${AWS::StackName}-api", "Stage", target.alias]

    def widget(title: str, metrics: list[list[Any]], x: int, y: int) -> dict[str, Any]:
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
                "properties": {"title": title, "view": "timeSeries", "period": 60,
                               "region": "${AWS::Region}", "metrics": metrics}}

    widgets = [
        widget("Invocations, errors, throttles", [
            ["AWS/Lambda", "Invocations", *fn, {"stat": "Sum"}],
            ["AWS/Lambda", "Errors", *fn, {"stat": "Sum"}],
            ["AWS/Lambda", "Throttles", *fn, {"stat": "Sum"}]], 0, 0),
        widget("Duration (ms)", [
            ["AWS/Lambda", "Duration", *fn, {"stat": "p50", "label": "p50"}],
            ["AWS/Lambda", "Duration", *fn, {"stat": "p99", "label": "p99"}]], 12, 0),
        widget("Concurrent executions", [
            ["AWS/Lambda", "ConcurrentExecutions", *fn, {"stat": "Maximum"}]], 0, 6),
        widget("API Gateway 4xx, 5xx", [
            ["AWS/ApiGateway", "4XXError", *api, {"stat": "Sum"}],
            ["AWS/ApiGateway", "5XXError", *api, {"stat": "Sum"}]], 12, 6),
        widget("API Gateway latency (ms)", [
            ["AWS/ApiGateway", "Latency", *api, {"stat": "p50", "label": "p50"}],
            ["AWS/ApiGateway", "Latency", *api, {"stat": "p99", "label": "p99"}]], 0, 12),
    ]
    return json.dumps({"widgets": widgets}, separators=(",", ":"))


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(doc: dict[str, Any]) -> str:
    text: str = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return text
