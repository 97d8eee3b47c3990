"""`function.toml` -> a frozen, validated `FunctionSpec`.

Parsed once at the edge (deploy time); the runtime never re-checks it.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from mlambda.errors import InvalidParameter, InvalidSpec

CPUS = os.cpu_count() or 1  # read once: each call reads /sys (the dispatcher asks often)

SPEC_FILE = "function.toml"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class BatchSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_batch: int = 1
    max_wait_ms: float = 0.0


class ScalingSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    min_instances: int = 0
    max_instances: int | None = None  # None: the number of CPUs
    idle_ttl_s: float = 300.0
    template_ttl_s: float | None = None  # None: 4 x idle_ttl_s, at least 60 s
    max_queue: int = 10_000


class FunctionSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    handler: str
    batch_handler: str | None = None
    preload: tuple[str, ...] = ()
    memory_mb: int = 512
    timeout_s: float = 3.0
    event: Literal["body", "proxy"] = "body"
    retry_on_crash: bool = False
    env: dict[str, str] = {}
    batch: BatchSpec = BatchSpec()
    scaling: ScalingSpec = ScalingSpec()

    @property
    def handler_module(self) -> str:
        return self.handler.rpartition(".")[0]

    @property
    def max_instances(self) -> int:
        return self.scaling.max_instances or CPUS

    @property
    def template_ttl_s(self) -> float:
        if self.scaling.template_ttl_s is not None:
            return self.scaling.template_ttl_s
        return max(60.0, 4 * self.scaling.idle_ttl_s)


QUALIFIER = re.compile(r"^[A-Za-z0-9$_-]{1,128}$")


def check_name(field: str, name: str, qualifier: bool = False) -> None:
    """A function name (or a version/alias qualifier) from a request: letters, digits,
    '-' and '_' only, so that no name can carry a path, a NUL or a megabyte."""
    if qualifier:
        ok, expected = QUALIFIER.match(name), "1-128 letters, digits, '$', '-' or '_'"
    else:
        ok, expected = _NAME.match(name), "1-64 letters, digits, '-' or '_'"
    if not ok:
        shown = name if len(name) <= 80 else name[:80] + "..."
        raise InvalidParameter(f"{field}: expected {expected}, got {shown!r}")


def _check(spec: FunctionSpec) -> list[tuple[str, str]]:
    """Semantic checks msgspec's types cannot express: (field, what was expected)."""
    problems: list[tuple[str, str]] = []

    def need(ok: bool, field: str, expected: str) -> None:
        if not ok:
            problems.append((field, expected))

    need(bool(_NAME.match(spec.name)), "name", "1-64 letters, digits, '-' or '_'")
    need(bool(_DOTTED.match(spec.handler)), "handler", "'module.function', e.g. 'app.handler'")
    if spec.batch_handler is not None:
        need(bool(_DOTTED.match(spec.batch_handler)), "batch_handler", "'module.function'")
    for i, module in enumerate(spec.preload):
        need(bool(_MODULE.match(module)), f"preload[{i}]", "an importable module name")
    need(128 <= spec.memory_mb <= 10_240, "memory_mb", "an integer from 128 to 10240")
    need(0 < spec.timeout_s <= 900, "timeout_s", "a number of seconds in (0, 900]")
    need(1 <= spec.batch.max_batch <= 1024, "batch.max_batch", "an integer from 1 to 1024")
    need(0 <= spec.batch.max_wait_ms <= 1000, "batch.max_wait_ms", "milliseconds in [0, 1000]")
    sc = spec.scaling
    need(sc.min_instances >= 0, "scaling.min_instances", "an integer >= 0")
    if sc.max_instances is not None:
        need(1 <= sc.max_instances <= 256, "scaling.max_instances", "an integer from 1 to 256")
        need(sc.min_instances <= sc.max_instances, "scaling.min_instances",
             "at most scaling.max_instances")
    need(sc.idle_ttl_s > 0, "scaling.idle_ttl_s", "a number of seconds > 0")
    if sc.template_ttl_s is not None:
        need(sc.template_ttl_s >= sc.idle_ttl_s, "scaling.template_ttl_s",
             "a number of seconds >= scaling.idle_ttl_s")
    need(1 <= sc.max_queue <= 1_000_000, "scaling.max_queue", "an integer from 1 to 1000000")
    return problems


def parse_spec(text: str, source: str = SPEC_FILE) -> FunctionSpec:
    """Parse and validate the text of a `function.toml`; `source` names it in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidSpec(f"{source}: not valid TOML: {exc}") from None
    try:
        spec = msgspec.convert(raw, FunctionSpec)
    except msgspec.ValidationError as exc:
        # msgspec says e.g. "Expected `int`, got `str` - at `$.batch.max_batch`"
        # or "Object contains unknown field `colour` - at `$`".
        msg = str(exc).replace("`$.", "`").replace(" - at `$`", " - at the top level")
        if msg.endswith("- at `event`"):
            msg += "; expected 'body' or 'proxy'"
        raise InvalidSpec(f"{source}: {msg}") from None
    problems = _check(spec)
    if problems:
        detail = "; ".join(f"field `{f}`: expected {e}" for f, e in problems)
        raise InvalidSpec(f"{source}: {detail}")
    return spec


def load_spec(bundle: Path) -> FunctionSpec:
    """Read `bundle/function.toml`; check that the handler's module file exists."""
    path = bundle / SPEC_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidSpec(f"{path}: missing; a function bundle needs a {SPEC_FILE}") from None
    spec = parse_spec(text, str(path))
    for field, dotted in (("handler", spec.handler), ("batch_handler", spec.batch_handler)):
        if dotted is None:
            continue
        module = dotted.rpartition(".")[0]
        rel = Path(*module.split("."))
        module_file = (bundle / rel).with_suffix(".py")
        if not (module_file.is_file() or (bundle / rel / "__init__.py").is_file()):
            raise InvalidSpec(
                f"{path}: field `{field}`: module `{module}` not found in the bundle "
                f"(expected {rel}.py next to {SPEC_FILE})"
            )
    return spec
