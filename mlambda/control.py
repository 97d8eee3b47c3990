"""The control plane's operations: deploy, publish, move aliases, manage routes, push and
roll back models, manage API keys and usage plans. The admin API is its HTTP face; the CLI
and SDK are clients of that.

Every change that affects traffic takes effect without a restart and without dropping a
request; the router and the key ring are swapped whole, in memory, after each change. A
new alias target is warmed (one instance past its init) before any traffic goes to it;
requests in flight finish where they started; versions that no alias points to any more
are drained and stopped.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import os
import re
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from mlambda.engines.base import Engine
from mlambda.errors import BadRequest, Conflict, InvalidParameter, NotFound, PayloadTooLarge
from mlambda.gateway.throttle import Meter
from mlambda.keys import (
    ACTIVE,
    DISABLED,
    NAME,
    REVOKED,
    ROLES,
    ApiKey,
    KeyRing,
    hash_secret,
    new_key_id,
    new_secret,
)
from mlambda.plans import Plan
from mlambda.registry import LATEST, Alias, Idempotency, ModelRecord, Registry, Route
from mlambda.router import Router
from mlambda.runtime.dispatcher import InitError, VersionRef
from mlambda.runtime.protocol import ModelLoaded
from mlambda.telemetry.events import EventKind, EventSink, NoEvents, PlatformEvent
from mlambda.volume import ModelStore, ModelVersion

log = logging.getLogger("mlambda.control")
MAX_BUNDLE_FILES = 10_000
ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
RETIRE_TIMEOUT_S = 30.0


class ControlPlane:
    def __init__(self, registry: Registry, router: Router, engine: Engine,
                 models: ModelStore, keyring: KeyRing, meter: Meter,
                 max_bundle_bytes: int = 250 * 1024 * 1024,
                 events: EventSink | None = None) -> None:
        self.max_bundle_bytes = max_bundle_bytes
        self.registry = registry
        self.events: EventSink = events or NoEvents()
        self.router = router
        self.engine = engine
        self.models = models
        self.keyring = keyring
        self.meter = meter
        self.lock = asyncio.Lock()  # one traffic change at a time
        self.retiring: dict[str, asyncio.Task[None]] = {}  # version key -> its retirement

    # -- code -------------------------------------------------------------------------

    def deploy(self, archive: bytes, publish: bool) -> VersionRef:
        """Store a bundle (a .tar.gz of the function's directory) as `$LATEST`."""
        with tempfile.TemporaryDirectory(prefix="mlambda-upload-") as tmp:
            root = Path(tmp)
            try:
                with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                    members = self.bundle_members(tar)
                    # the data filter refuses absolute paths, '..', links out, devices
                    tar.extractall(root, members=members, filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise BadRequest(f"bundle: not a readable .tar.gz: {exc}") from None
            bundle = root
            entries = [p for p in root.iterdir() if p.name != "__pycache__"]
            if not (root / "function.toml").exists() and len(entries) == 1 and entries[0].is_dir():
                bundle = entries[0]  # an archive of the directory itself
            latest = self.registry.put_latest(bundle)
        version = self.registry.publish(latest.function) if publish else latest
        self.router.reload()
        self.deployed(version)
        self.retire_unreferenced()
        return version

    def bundle_members(self, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
        """The archive's entries, header by header, refusing it as soon as it holds too
        many files or unpacks past `max_bundle_bytes` (a gzip bomb): before anything is
        extracted, and without inflating more than that limit."""
        members: list[tarfile.TarInfo] = []
        size = 0
        for member in tar:
            members.append(member)
            size += member.size
            if len(members) > MAX_BUNDLE_FILES:
                raise BadRequest(f"bundle: more than {MAX_BUNDLE_FILES} files")
            if size > self.max_bundle_bytes:
                raise PayloadTooLarge(
                    f"bundle: unpacks to more than {self.max_bundle_bytes} bytes (the limit); "
                    "refused, nothing was extracted")
        return members

    def publish(self, function: str) -> VersionRef:
        version = self.registry.publish(function)
        self.router.reload()
        self.deployed(version)
        return version

    def deployed(self, version: VersionRef) -> None:
        what = "updated $LATEST" if version.version == LATEST else \
            f"published version {version.version}"
        self.events.emit(PlatformEvent(
            EventKind.DEPLOY, f"deploy: {what} (sha256 {version.sha256[:12]})",
            version.function, version.version))

    # -- aliases ----------------------------------------------------------------------

    async def set_alias(self, function: str, name: str, version: str,
                        extra: tuple[str, float] | None = None) -> Alias:
        if not ALIAS.match(name) or name.isdigit():
            shown = name if len(name) <= 80 else name[:80] + "..."
            raise InvalidParameter(f"alias name {shown!r}: expected 1-128 letters, digits, '-' "
                                   "or '_', not a number and not $LATEST")
        if extra is not None:
            extra_version, weight = extra
            if not 0.0 <= weight <= 1.0:
                raise InvalidParameter(f"weight {weight}: expected a number in [0.0, 1.0]")
            if extra_version == version:
                raise InvalidParameter("the additional version must differ from the alias's")
        alias = Alias(function, name, version, *(extra or (None, 0.0)))
        targets = [version] + ([alias.extra_version] if alias.extra_version else [])
        refs = [self.registry.version(function, v) for v in targets]  # 404 if missing
        for ref in refs:
            if ref.version == LATEST:
                raise InvalidParameter("an alias points to published versions, not $LATEST")
        async with self.lock:
            # warm the targets to the capacity the alias has now, before traffic moves
            now = self.router.aliases.get((function, name))
            count = 1
            if now is not None:
                current = [now.version] + ([now.extra_version] if now.extra_version else [])
                count = max(self.engine.capacity(self.registry.version(function, v))
                            for v in current)
            for ref in refs:
                try:
                    await self.engine.warm(ref, count)
                except InitError as exc:
                    raise Conflict(f"version {ref.version} of {function} failed its init, so "
                                   f"the alias was not moved: {exc}") from None
            self.registry.set_alias(alias)
            self.router.reload()
        was = "" if now is None else f" (was {now.version}" + (
            f" + {now.extra_version} at {now.extra_weight:.0%})" if now.extra_version else ")")
        canary = f" + {alias.extra_version} at {alias.extra_weight:.0%}" \
            if alias.extra_version else ""
        self.events.emit(PlatformEvent(
            EventKind.ALIAS_MOVE, f"alias {name} -> {version}{canary}{was}", function, version))
        self.retire_unreferenced()
        return alias

    def retire_unreferenced(self) -> None:
        """Drain and stop running versions that no alias or route can reach any more.
        (A direct call with an explicit version or $LATEST starts them again.)"""
        wanted = {(a.function, a.version) for a in self.router.aliases.values()}
        wanted |= {(a.function, a.extra_version) for a in self.router.aliases.values()
                   if a.extra_version}
        wanted |= {(r.function, r.qualifier) for r in self.router.routes.values()}
        for ref in self.engine.running():
            pending = self.retiring.get(ref.key)
            if (ref.function, ref.version) in wanted:
                if pending is not None:  # wanted again (a rollback): keep its instances
                    pending.cancel()
            elif pending is None or pending.done():
                task = asyncio.get_running_loop().create_task(
                    self.engine.retire(ref, RETIRE_TIMEOUT_S))
                self.retiring[ref.key] = task
                task.add_done_callback(functools.partial(self.forget_retirement, ref.key))

    def forget_retirement(self, key: str, task: asyncio.Task[None]) -> None:
        if self.retiring.get(key) is task:
            del self.retiring[key]

    async def scale_to_zero(self, function: str, qualifier: str | None) -> list[str]:
        """Stop the instances and templates of what `function:qualifier` runs (both
        versions of a weighted alias): the next call starts from nothing, as after a
        quiet night. Returns the versions."""
        q = qualifier or LATEST
        alias = self.router.aliases.get((function, q))
        names = [q] if alias is None else [alias.version] + (
            [alias.extra_version] if alias.extra_version else [])
        refs = [self.registry.version(function, v) for v in names]  # 404 if missing
        await asyncio.gather(*(self.engine.scale_to_zero(ref) for ref in refs))
        return [ref.version for ref in refs]

    # -- routes -----------------------------------------------------------------------

    def add_route(self, method: str, path: str, target: str,
                  idempotency: Idempotency | None = None) -> Route:
        function, _, qualifier = target.partition(":")
        qualifier = qualifier or LATEST
        self.router.resolve(function, qualifier)  # refuses a missing function or alias
        route = Route(method, path, function, qualifier, idempotency)
        self.registry.add_route(route)
        self.router.reload()
        return route

    def set_route_idempotency(self, method: str, path: str,
                              idempotency: Idempotency | None) -> Route:
        """Turn a route's idempotency on, change it, or (None) turn it off; the next request
        sees it. Answers already stored stay until their own TTL."""
        route = self.registry.set_route_idempotency(method, path, idempotency)
        self.router.reload()
        return route

    def remove_route(self, method: str, path: str) -> None:
        self.registry.remove_route(method, path)
        self.router.reload()

    # -- models -----------------------------------------------------------------------

    def incoming_model(self, name: str) -> Path:
        return self.models.incoming(name)

    def push_model(self, name: str, filename: str, tmp: Path, sha256: str,
                   make_current: bool = True) -> ModelVersion:
        version = self.models.commit(name, filename, tmp, sha256)
        self.registry.add_model(version)
        if make_current:
            self.models.flip(version)
            self.model_swapped(version, "pushed")
        return version

    def model_swapped(self, version: ModelVersion, how: str) -> None:
        self.events.emit(PlatformEvent(
            EventKind.MODEL_SWAP, f"model {version.name}: current -> {version.sha256[:12]} "
                                  f"({version.filename}, {how})"))

    def rollback_model(self, name: str, sha256: str) -> ModelRecord:
        matches = [m for m in self.registry.model_versions(name) if m.sha256.startswith(sha256)]
        if not matches:
            raise NotFound(f"model {name} has no version {sha256}")
        if len(matches) > 1:
            raise InvalidParameter(f"{sha256} is ambiguous for model {name}")
        m = matches[0]
        version = ModelVersion(m.name, m.sha256, m.filename, m.size)
        self.models.flip(version)
        self.model_swapped(version, "rolled back")
        return m

    def model_versions(self, name: str) -> list[ModelRecord]:
        versions = self.registry.model_versions(name)
        if not versions:
            raise NotFound(f"no model named {name}")
        return versions

    def on_model_loaded(self, version: VersionRef, msg: ModelLoaded) -> None:
        """An instance loaded a model, or failed to. A version that fails to load is marked
        failed; if it is current, `current` goes back to the newest version that loaded,
        so instances started later do not trip on it either."""
        if msg.error is None:
            return
        self.registry.set_model_error(msg.name, msg.sha256, msg.error)
        if self.models.current(msg.name) != msg.sha256:
            return
        good = [m for m in self.registry.model_versions(msg.name)
                if m.error is None and m.sha256 != msg.sha256]
        if good:
            back = good[-1]
            previous = ModelVersion(back.name, back.sha256, back.filename, back.size)
            self.models.flip(previous)
            self.model_swapped(previous, f"back from {msg.sha256[:12]}, which failed to load")
            log.error("model %s@%s failed to load in %s (%s); current is back to %s",
                      msg.name, msg.sha256[:12], version.key, msg.error, back.sha256[:12])

    # -- keys and plans ---------------------------------------------------------------

    def reload_keys(self) -> None:
        self.keyring.replace(self.registry.keys())

    def find_key(self, ref: str) -> ApiKey:
        """A key by id, or by name (the one not revoked, else the newest)."""
        keys = self.registry.keys()
        for k in keys:
            if k.key_id == ref:
                return k
        named = sorted((k for k in keys if k.name == ref),
                       key=lambda k: (k.state != REVOKED, k.created_at))
        if not named:
            raise NotFound(f"no API key named {ref}")
        return named[-1]

    def create_key(self, name: str, role: str, plan: str | None = None,
                   functions: list[str] | None = None,
                   expires_at: float | None = None) -> tuple[ApiKey, str]:
        """A new key and its secret (which is not kept: only its SHA-256 is stored)."""
        if not NAME.match(name):
            raise InvalidParameter(
                f"name {name!r}: expected 1-64 letters, digits, '_', '-' or '.'")
        if role not in ROLES:
            raise InvalidParameter(f"role {role!r}: expected one of {', '.join(ROLES)}")
        if any(k.name == name and k.state != REVOKED for k in self.registry.keys()):
            raise Conflict(f"an API key named {name} exists (revoke it first, or pick "
                           "another name)")
        if expires_at is not None and expires_at <= time.time():
            raise InvalidParameter("expires_at: expected a time in the future")
        secret = new_secret()
        key = ApiKey(new_key_id(), name, role, hash_secret(secret), plan=self.plan(plan),
                     functions=self.scope(role, functions), created_at=time.time(),
                     expires_at=expires_at)
        self.registry.add_key(key)
        self.reload_keys()
        return self.find_key(key.key_id), secret

    def update_key(self, ref: str, changes: dict[str, Any]) -> ApiKey:
        """Apply `changes` (any of: enabled, plan, functions, expires_at) to a key."""
        key = self.find_key(ref)
        if key.state == REVOKED:
            raise Conflict(f"API key {key.name} is revoked: it cannot change")
        columns: dict[str, Any] = {}
        if "enabled" in changes:
            columns["state"] = ACTIVE if changes["enabled"] else DISABLED
        if "plan" in changes:
            plan = self.plan(changes["plan"])
            columns["plan"] = None if plan is None else plan.name
        if "functions" in changes:
            scope = self.scope(key.role, changes["functions"])
            columns["functions"] = None if scope is None else json.dumps(sorted(scope))
        if "expires_at" in changes:
            when = changes["expires_at"]
            if when is not None and when <= time.time():
                raise InvalidParameter("expires_at: expected a time in the future")
            columns["expires_at"] = when
        if columns.get("state") == DISABLED or columns.get("expires_at") is not None:
            self.keep_an_admin(key)
        if columns:
            self.registry.update_key(key.key_id, **columns)
            self.reload_keys()
        return self.find_key(key.key_id)

    def revoke_key(self, ref: str) -> ApiKey:
        key = self.find_key(ref)
        self.keep_an_admin(key)
        self.registry.update_key(key.key_id, state=REVOKED, old_hash=None, old_until=None)
        self.reload_keys()
        return self.find_key(key.key_id)

    def rotate_key(self, ref: str, grace_s: float = 0.0) -> tuple[ApiKey, str]:
        """A new secret for a key; the previous one keeps working for `grace_s` seconds.
        A first-start key file (admin.key, invoke.key) holding the old secret gets the new."""
        if not 0 <= grace_s <= 30 * 86400:
            raise InvalidParameter(f"grace_s {grace_s}: expected 0 to 2592000 (30 days)")
        key = self.find_key(ref)
        if key.state == REVOKED:
            raise Conflict(f"API key {key.name} is revoked: it cannot be rotated")
        secret = new_secret()
        self.registry.update_key(key.key_id, hash=hash_secret(secret), old_hash=key.key_hash,
                                 old_until=time.time() + grace_s)
        self.reload_keys()
        for path in (self.registry.data_dir / f"{r}.key" for r in ("admin", "invoke")):
            if path.is_file() and hash_secret(path.read_text().strip()) == key.key_hash:
                tmp = path.with_suffix(".key.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secret + "\n")
                os.replace(tmp, path)
        return self.find_key(key.key_id), secret

    def keep_an_admin(self, key: ApiKey) -> None:
        """Refuse to take away the last usable admin key (nobody could manage keys then)."""
        if key.role != "admin":
            return
        now = time.time()
        others = [k for k in self.registry.keys() if k.role == "admin" and k.state == ACTIVE
                  and k.key_id != key.key_id and (k.expires_at is None or k.expires_at > now)]
        if not others:
            raise Conflict(f"API key {key.name} is the last usable admin key: create another "
                           "admin key first")

    def find_plan(self, name: str) -> Plan:
        for p in self.registry.plans():
            if p.name == name:
                return p
        raise NotFound(f"no usage plan named {name}")

    def plan(self, name: str | None) -> Plan | None:
        """The plan a key's `plan` field names (a 400 naming the field if there is none)."""
        if name is None:
            return None
        try:
            return self.find_plan(name)
        except NotFound:
            raise InvalidParameter(f"plan: there is no usage plan named {name}") from None

    def scope(self, role: str, functions: list[str] | None) -> frozenset[str] | None:
        if functions is None:
            return None
        if role == "metrics":
            raise InvalidParameter("functions: a metrics key invokes no function")
        if not functions:
            raise InvalidParameter("functions: expected at least one function name")
        known = set(self.registry.functions())
        for f in functions:
            if f not in known:
                raise InvalidParameter(f"functions: there is no function named {f}")
        return frozenset(functions)

    def create_plan(self, plan: Plan) -> Plan:
        if any(p.name == plan.name for p in self.registry.plans()):
            raise Conflict(f"a usage plan named {plan.name} exists")
        self.registry.add_plan(plan)
        return plan

    def remove_plan(self, name: str) -> None:
        self.find_plan(name)
        users = [k.name for k in self.registry.keys()
                 if k.plan is not None and k.plan.name == name]
        if users:
            raise Conflict(f"usage plan {name} is attached to keys {', '.join(users)}: "
                           "move them to another plan first (keys set-plan)")
        self.registry.remove_plan(name)

    def usage(self, since_day: str, ref: str | None = None) -> list[dict[str, Any]]:
        """Requests admitted and throttled per key per UTC day, from `since_day` on:
        the persisted counts plus those not yet written."""
        counts: dict[tuple[str, str], list[int]] = {}
        for key_id, day, requests, throttled in self.registry.usage(since_day):
            counts[(key_id, day)] = [requests, throttled]
        for k, (requests, throttled) in self.meter.pending.items():
            if k[1] >= since_day:
                slot = counts.setdefault(k, [0, 0])
                slot[0] += requests
                slot[1] += throttled
        names = {k.key_id: k.name for k in self.registry.keys()}
        only = None if ref is None else self.find_key(ref).key_id
        return [{"key_id": key_id, "name": names.get(key_id), "day": day,
                 "requests": n, "throttled": t}
                for (key_id, day), (n, t) in sorted(counts.items(), key=lambda i: i[0][::-1])
                if only is None or key_id == only]

    def last_used(self, key: ApiKey) -> float | None:
        recent = self.meter.last_used.get(key.key_id)
        if recent is None:
            return key.last_used
        return max(recent, key.last_used or 0.0)

    async def stop(self) -> None:
        for task in list(self.retiring.values()):
            task.cancel()
