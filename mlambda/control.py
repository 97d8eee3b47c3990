"""The control plane's operations: deploy, publish, move aliases, manage routes, push and
roll back models. The admin API is its HTTP face; the CLI and SDK are clients of that.

Every change that affects traffic takes effect without a restart and without dropping a
request: a new alias target is warmed (one instance past its init) before any traffic
goes to it; requests in flight finish where they started; versions that no alias
points to any more are drained and stopped.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import tarfile
import tempfile
from pathlib import Path

from mlambda.engines.base import Engine
from mlambda.errors import BadRequest, Conflict, InvalidParameter, NotFound
from mlambda.registry import LATEST, Alias, ModelRecord, Registry, Route
from mlambda.router import Router
from mlambda.runtime.dispatcher import InitError, VersionRef
from mlambda.runtime.protocol import ModelLoaded
from mlambda.volume import ModelStore, ModelVersion

log = logging.getLogger("mlambda.control")
MAX_BUNDLE_FILES = 10_000
RETIRE_TIMEOUT_S = 30.0


class ControlPlane:
    def __init__(self, registry: Registry, router: Router, engine: Engine,
                 models: ModelStore) -> None:
        self.registry = registry
        self.router = router
        self.engine = engine
        self.models = models
        self.lock = asyncio.Lock()  # one traffic change at a time
        self.retiring: dict[str, asyncio.Task[None]] = {}  # version key -> its retirement

    # -- code -------------------------------------------------------------------------

    def deploy(self, archive: bytes, publish: bool) -> VersionRef:
        """Store a bundle (a .tar.gz of the function's directory) as `$LATEST`."""
        with tempfile.TemporaryDirectory(prefix="mlambda-upload-") as tmp:
            root = Path(tmp)
            try:
                with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                    members = tar.getmembers()
                    if len(members) > MAX_BUNDLE_FILES:
                        raise BadRequest(f"bundle: more than {MAX_BUNDLE_FILES} files")
                    tar.extractall(root, filter="data")  # refuses absolute paths, .., devices
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise BadRequest(f"bundle: not a readable .tar.gz: {exc}") from None
            bundle = root
            entries = [p for p in root.iterdir() if p.name != "__pycache__"]
            if not (root / "function.toml").exists() and len(entries) == 1 and entries[0].is_dir():
                bundle = entries[0]  # an archive of the directory itself
            latest = self.registry.put_latest(bundle)
        version = self.registry.publish(latest.function) if publish else latest
        self.router.reload()
        self.retire_unreferenced()
        return version

    def publish(self, function: str) -> VersionRef:
        version = self.registry.publish(function)
        self.router.reload()
        return version

    # -- aliases ----------------------------------------------------------------------

    async def set_alias(self, function: str, name: str, version: str,
                        extra: tuple[str, float] | None = None) -> Alias:
        if not name or name == LATEST or name.isdigit():
            raise InvalidParameter(f"alias name {name!r}: must not be empty, $LATEST or a number")
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

    # -- routes -----------------------------------------------------------------------

    def add_route(self, method: str, path: str, target: str) -> Route:
        function, _, qualifier = target.partition(":")
        qualifier = qualifier or LATEST
        self.router.resolve(function, qualifier)  # refuses a missing function or alias
        route = Route(method, path, function, qualifier)
        self.registry.add_route(route)
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
        return version

    def rollback_model(self, name: str, sha256: str) -> ModelRecord:
        matches = [m for m in self.registry.model_versions(name) if m.sha256.startswith(sha256)]
        if not matches:
            raise NotFound(f"model {name} has no version {sha256}")
        if len(matches) > 1:
            raise InvalidParameter(f"{sha256} is ambiguous for model {name}")
        m = matches[0]
        self.models.flip(ModelVersion(m.name, m.sha256, m.filename, m.size))
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
            self.models.flip(ModelVersion(back.name, back.sha256, back.filename, back.size))
            log.error("model %s@%s failed to load in %s (%s); current is back to %s",
                      msg.name, msg.sha256[:12], version.key, msg.error, back.sha256[:12])

    async def stop(self) -> None:
        for task in list(self.retiring.values()):
            task.cancel()
