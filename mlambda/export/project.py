"""`mlambda export aws`: read a function's version through the admin API (the SDK) and
write a SAM project for it: template.yaml, samconfig.toml, the code exactly as the
registry stores it, the entry point, the dependencies as a layer (or for the volume),
volume.sh and a README of the deploy steps.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import string
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from mlambda.client import Client
from mlambda.export import package, prices, sam
from mlambda.registry import bundle_digest
from mlambda.spec import FunctionSpec

HERE = Path(__file__).resolve().parent
MARKER = ".mlambda-export.json"  # marks a directory this command wrote (safe to rewrite)
ENTRY_MODULE = "mlambda_entry"
_GENERATED = re.compile(
    r"(# -- the exported function \(written by `mlambda export aws`\) --\n)(.*?)"
    r"(# -- end of the exported function --\n)", re.S)

Say = Callable[[str], None]


class ExportError(Exception):
    """The export cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Source:
    """Everything the export reads from mlambda, through the admin API."""

    target: sam.Target
    archive: bytes
    models: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()  # what was not exported, and why


@dataclass(frozen=True)
class Settings:
    out: Path
    options: sam.Options
    packages_on_efs: bool = False
    stack: str = ""
    requests_per_month: int = 220_000
    duration_ms: float = 500.0
    cache: Path = package.CACHE


@dataclass
class Result:
    out: Path
    runtime: package.Runtime
    code_bytes: int = 0
    packages_bytes: int = 0
    wheels: list[Path] = field(default_factory=list)
    seconds: float = 0.0


# -- reading mlambda ---------------------------------------------------------------------


def fetch(client: Client, function: str, alias: str) -> Source:
    aliases = {a["name"]: a for a in client.aliases(function)}
    if alias not in aliases:
        known = ", ".join(sorted(aliases)) or "none"
        raise ExportError(f"{function} has no alias {alias!r} (its aliases: {known}); "
                          f"export FUNCTION:ALIAS, or create one with `mlambda alias set`")
    a = aliases[alias]
    notes: list[str] = []
    if a.get("additional_version"):
        notes.append(f"alias {alias} also sends {a['weight']:.0%} to version "
                     f"{a['additional_version']}: only version {a['version']} is exported "
                     "(on AWS, a canary is the deployment preference's job)")
    info = client.version(function, a["version"])
    spec = msgspec.convert(info["spec"], FunctionSpec)
    archive, sha256 = client.bundle(function, a["version"])
    if sha256 != info["sha256"]:
        raise ExportError(f"the bundle's sha256 {sha256!r} is not the version's "
                          f"{info['sha256']!r}")
    routes: list[sam.Route] = []
    for r in client.routes():
        fn, _, qualifier = r["target"].partition(":")
        if fn != function:
            continue
        if qualifier == alias:
            routes.append(sam.Route(r["method"], r["path"]))
        else:
            notes.append(f"route {r['method']} {r['path']} -> {r['target']} not exported: "
                         f"it does not go to alias {alias}")
    if not routes:
        routes.append(sam.Route("POST", f"/{function}"))
        notes.append(f"{function}:{alias} has no route: the API gets POST /{function}")
    plans = tuple(sam.plan_from_json(p) for p in client.plans())
    if not plans:
        notes.append("mlambda has no usage plans: the API gets one plan without limits "
                     "('default')")
    target = sam.Target(spec, alias, a["version"], sha256, tuple(routes), plans)
    return Source(target, archive, tuple(client.models()), tuple(notes))


def unpack_bundle(archive: bytes, dest: Path, sha256: str) -> None:
    """Extract the bundle and check that its files are the version's, byte for byte."""
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
    actual = bundle_digest(dest)
    if actual != sha256:
        raise ExportError(f"the code received hashes to {actual}, not the version's {sha256}")


# -- writing the project -----------------------------------------------------------------


def entry_point(spec: FunctionSpec) -> str:
    text = (HERE / "entry.py").read_text()
    generated = (f"FUNCTION = {spec.name!r}\nHANDLER = {spec.handler!r}\n"
                 f"BATCH_HANDLER: str | None = {spec.batch_handler!r}\n"
                 f"EVENT = {spec.event!r}\n")
    text, n = _GENERATED.subn(lambda m: m.group(1) + generated + m.group(3), text)
    if n != 1:
        raise ExportError("the entry point's template has lost its generated block")
    return text


def prepare_out(out: Path) -> None:
    """An empty (or missing) directory, or one this command wrote before."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ExportError(f"{out} is not empty and was not written by mlambda export: "
                              "choose a new --out directory")
        for name in ("src", "layer", "efs", "template.yaml", "samconfig.toml", "README.md",
                     "volume.sh", MARKER):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("{}")  # first, so that a run that fails half-way can be redone


def write_code(source: Source, src: Path, runtime: package.Runtime) -> None:
    spec = source.target.spec
    unpack_bundle(source.archive, src, source.target.sha256)
    taken = [f"{ENTRY_MODULE}.py"] + (["mlambda"] if runtime.mlambda_files else [])
    for name in taken:
        if (src / name).exists():
            raise ExportError(f"the bundle has its own {name}: rename it, the export "
                              "writes that name")
    ours = HERE.parent
    for rel in runtime.mlambda_files:
        dest = src / "mlambda" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ours / rel, dest)
    (src / f"{ENTRY_MODULE}.py").write_text(entry_point(spec))


def stack_name(settings: Settings, spec: FunctionSpec) -> str:
    return settings.stack or f"mlambda-{spec.name}"


def samconfig(settings: Settings, spec: FunctionSpec) -> str:
    overrides = []
    if settings.options.subnets:
        overrides.append(f'SubnetIds="{",".join(settings.options.subnets)}"')
    if settings.options.security_group:
        overrides.append(f'SecurityGroupId="{settings.options.security_group}"')
    lines = [
        "version = 0.1", "", "[default.deploy.parameters]",
        f"stack_name = {json.dumps(stack_name(settings, spec))}",
        f"region = {json.dumps(settings.options.region)}",
        'capabilities = "CAPABILITY_IAM"',
        "resolve_s3 = true",
        "confirm_changeset = true",
    ]
    if overrides:
        lines.append(f"parameter_overrides = {json.dumps(' '.join(overrides))}")
    return "\n".join(lines) + "\n"


def cost_text(spec: FunctionSpec, settings: Settings) -> str:
    c = prices.monthly_cost(settings.requests_per_month, settings.duration_ms, spec.memory_mb)
    rows = [
        f"Assumed: {c.requests:,} requests a month of {c.duration_ms:g} ms each at "
        f"{c.memory_mb} MB (change with --requests-per-month, --duration-ms); us-east-1 "
        "prices from the spec, before the free tier.",
        "",
        "| item | monthly |",
        "|---|---|",
        f"| Lambda compute ({c.gb_seconds:,.0f} GB-s) | ${c.compute_usd:,.2f} |",
        f"| Lambda requests | ${c.lambda_requests_usd:,.2f} |",
        f"| API Gateway REST requests | ${c.api_requests_usd:,.2f} |",
        f"| **total** | **${c.total_usd:,.2f}** |",
        "",
        "Not priced (not in the price table): " + ", ".join(prices.UNPRICED) + ".",
    ]
    if spec.scaling.min_instances:
        rows.append(f"Provisioned concurrency of {spec.scaling.min_instances} is billed "
                    "while it exists, whether called or not.")
    return "\n".join(rows)


def readme(source: Source, settings: Settings, result: Result) -> str:
    t = source.target
    spec = t.spec
    opts = resolve_options(settings, result.runtime)
    mb = 1024 * 1024
    if settings.packages_on_efs:
        size_line = (f"Unzipped size: code {result.code_bytes / mb:.1f} MB (Lambda's limit: "
                     f"250 MB); packages on the volume {result.packages_bytes / mb:.1f} MB.")
    else:
        total = result.code_bytes + result.packages_bytes
        size_line = (f"Unzipped size: {total / mb:.1f} MB (code {result.code_bytes / mb:.1f} "
                     f"MB + layer {result.packages_bytes / mb:.1f} MB) of Lambda's 250 MB.")
    models = [m["name"] for m in source.models] or ["<name>"]
    model_commands = "\n".join(
        f"./volume.sh {sam.VOLUME_MOUNT} push {name} path/to/{name}-model-file"
        for name in models)
    packages_row = packages_section = packages_title = ""
    if not result.runtime.requirements:
        pass
    elif settings.packages_on_efs:
        rel = opts.packages_on_volume
        packages_row = (f"| `efs/{rel}/` | the Python packages, for the volume at "
                        f"`{sam.VOLUME_MOUNT}/{rel}` (`MLAMBDA_PACKAGES`) |\n")
        packages_title = " and packages"
        packages_section = (
            "\nThe function's Python packages are on the volume too (`--packages-on-efs`); "
            "copy them in before the first call:\n\n```sh\n"
            f"./volume.sh {sam.VOLUME_MOUNT} packages efs/{rel}\n```\n")
    else:
        names = ", ".join(result.runtime.requirements) or "none"
        packages_row = f"| `layer/python/` | the Python packages ({names}), a Lambda layer |\n"
    overrides = ""
    if not (opts.subnets and opts.security_group):
        overrides = (" --parameter-overrides SubnetIds=subnet-aaa,subnet-bbb "
                     "SecurityGroupId=sg-ccc")
    mlambda_files = ""
    if result.runtime.mlambda_files:
        mlambda_files = (", plus the part of mlambda it imports (`src/mlambda/`: "
                         + ", ".join(result.runtime.mlambda_files) + ")")
    extra = ""
    if spec.timeout_s > 29:
        extra += (f"- The function's timeout is {spec.timeout_s:g} s; API Gateway's "
                  "integration timeout is 29 s by default.\n")
    if spec.retry_on_crash:
        extra += ("- `retry_on_crash` has no counterpart: Lambda does not retry a synchronous "
                  "call whose environment crashed; the caller sees a 502.\n")
    for note in source.notes:
        extra += f"- Not exported: {note}.\n"
    return string.Template((HERE / "README.template.md").read_text()).substitute(
        function=spec.name, version=t.version, alias=t.alias, sha256=t.sha256,
        event=spec.event,
        batch_note=("; its `batch_handler` gets batches of one" if spec.batch_handler
                    else ""),
        deployment=opts.deployment, mount=sam.VOLUME_MOUNT, stack=stack_name(settings, spec),
        region=opts.region, mlambda_files=mlambda_files, packages_row=packages_row,
        size_line=size_line, mount_targets=opts.mount_targets, overrides=overrides,
        layer_dir_note=" and `layer/`" if has_layer(settings, result.runtime) else "",
        runtime=opts.runtime, model_commands=model_commands, packages_title=packages_title,
        packages_section=packages_section, first_route=t.routes[0].path,
        extra_differences=extra, cost=cost_text(spec, settings))


def has_layer(settings: Settings, runtime: package.Runtime) -> bool:
    """Whether the packages go in a layer (rather than on the volume, or nowhere)."""
    return bool(runtime.requirements) and not settings.packages_on_efs


def resolve_options(settings: Settings, runtime: package.Runtime) -> sam.Options:
    opts = settings.options
    if not runtime.requirements:  # nothing to install: neither a layer nor the volume
        return dataclasses.replace(opts, layer_dir=None)
    if settings.packages_on_efs:
        rel = f"packages/{opts.runtime}-{runtime.digest}"
        return dataclasses.replace(opts, layer_dir=None, packages_on_volume=rel)
    return opts


def plan(source: Source, settings: Settings) -> tuple[package.Runtime, dict[str, Any]]:
    """What would be built: the function's runtime needs and the template (no I/O beyond
    reading the bundle in a temporary directory)."""
    with tempfile.TemporaryDirectory(prefix="mlambda-export-") as tmp:
        bundle = Path(tmp) / "bundle"
        unpack_bundle(source.archive, bundle, source.target.sha256)
        runtime = package.runtime_of(bundle, source.target.spec)
    options = resolve_options(settings, runtime)
    return runtime, sam.template(source.target, options)


def dry_run(source: Source, settings: Settings, say: Say) -> None:
    runtime, template = plan(source, settings)
    t = source.target
    say(f"would export {t.spec.name}:{t.alias} (version {t.version}, code "
        f"{t.sha256[:12]}) to {settings.out}")
    say(f"  runtime {settings.options.runtime}, {t.spec.memory_mb} MB, timeout "
        f"{t.spec.timeout_s:g} s, event {t.spec.event!r}")
    where = " (a layer)" if has_layer(settings, runtime) else " (on the volume)"
    say("  packages: " + (", ".join(runtime.requirements) + where if runtime.requirements
                          else "none"))
    if runtime.mlambda_files:
        say("  with mlambda's " + ", ".join(runtime.mlambda_files))
    say("  routes: " + ", ".join(f"{r.method} /{t.alias}{r.path}" for r in t.routes))
    say("resources (CloudFormation, before the SAM transform adds roles, versions, the "
        "CodeDeploy group and the API's deployment and stage):")
    for name, resource in template["Resources"].items():
        say(f"  {name:22} {resource['Type']}")
    for note in source.notes:
        say(f"note: {note}")
    say("estimated monthly cost:")
    for line in cost_text(t.spec, settings).splitlines():
        say(f"  {line}" if line else "")


def export(source: Source, settings: Settings, say: Say) -> Result:
    started = time.monotonic()
    out = settings.out
    prepare_out(out)
    src = out / "src"
    with tempfile.TemporaryDirectory(prefix="mlambda-export-") as tmp:
        bundle = Path(tmp) / "bundle"
        unpack_bundle(source.archive, bundle, source.target.sha256)
        runtime = package.runtime_of(bundle, source.target.spec)
    result = Result(out, runtime)
    write_code(source, src, runtime)
    options = resolve_options(settings, runtime)
    if runtime.requirements:
        say(f"packages for {options.runtime} (Linux x86_64): {', '.join(runtime.requirements)}")
        result.wheels = package.download(runtime.requirements, options.runtime, settings.cache)
        problems = package.wheel_problems(result.wheels, options.runtime)
        if problems:
            raise ExportError("wheels Lambda cannot load: " + "; ".join(problems))
        if options.packages_on_volume is not None:
            target = out / "efs" / options.packages_on_volume
        else:
            target = out / "layer" / "python"
        package.install(result.wheels, options.runtime, target, settings.cache)
        result.packages_bytes = package.tree_size(target)
    result.code_bytes = package.tree_size(src)
    deployed = result.code_bytes + (0 if settings.packages_on_efs else result.packages_bytes)
    if deployed > package.UNZIPPED_LIMIT_BYTES:
        raise ExportError(
            f"code and packages are {deployed / 2**20:.1f} MB unzipped, over Lambda's 250 MB: "
            "export with --packages-on-efs to put the packages on the volume")
    (out / "template.yaml").write_text(sam.dump(sam.template(source.target, options)))
    (out / "samconfig.toml").write_text(samconfig(settings, source.target.spec))
    shutil.copyfile(HERE / "volume.sh", out / "volume.sh")
    (out / "volume.sh").chmod(0o755)
    (out / "README.md").write_text(readme(source, settings, result))
    (out / MARKER).write_text(json.dumps({
        "function": source.target.spec.name, "alias": source.target.alias,
        "version": source.target.version, "sha256": source.target.sha256,
        "requirements": list(runtime.requirements)}, indent=1))
    result.seconds = time.monotonic() - started
    for note in source.notes:
        say(f"note: {note}")
    return result
