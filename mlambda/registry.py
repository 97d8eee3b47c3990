"""The control plane's state in SQLite (WAL): functions, versions, aliases, routes, keys,
usage plans and usage per key per day.

Code bundles live on disk, content-addressed by the SHA-256 of their files, and are
never changed once stored.
"""

from __future__ import annotations

import compileall
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from mlambda.errors import InvalidParameter, NotFound
from mlambda.keys import ApiKey
from mlambda.plans import Plan
from mlambda.runtime.dispatcher import VersionRef
from mlambda.runtime.sandbox import share_tree
from mlambda.spec import FunctionSpec, load_spec
from mlambda.volume import ModelVersion

LATEST = "$LATEST"
MAX_FIELD_NAME = 128
MAX_MATCH = 16
MAX_TTL_S = 86_400

SCHEMA = """
CREATE TABLE IF NOT EXISTS functions (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    function TEXT NOT NULL REFERENCES functions(name),
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (function, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    function TEXT NOT NULL REFERENCES functions(name),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    extra_version TEXT,
    extra_weight REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (function, name)
);
CREATE TABLE IF NOT EXISTS routes (
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    function TEXT NOT NULL REFERENCES functions(name),
    qualifier TEXT NOT NULL,
    idempotency TEXT,  -- JSON {key, match, ttl_s}, or NULL
    PRIMARY KEY (method, path)
);
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    filename TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL,
    error TEXT,
    PRIMARY KEY (name, sha256)
);
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS plans (
    name TEXT PRIMARY KEY,
    rate REAL NOT NULL,
    burst INTEGER NOT NULL,
    quota INTEGER,
    period TEXT,
    weight INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    throttled INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);
"""

# Columns added to `keys` after its first release: a data directory made before them is
# migrated in place at start (its keys keep working).
KEY_COLUMNS = {
    "plan": "TEXT REFERENCES plans(name)",
    "functions": "TEXT",  # JSON list of names, or NULL: every function
    "state": "TEXT NOT NULL DEFAULT 'active'",
    "expires_at": "REAL",
    "old_hash": "TEXT",
    "old_until": "REAL",
    "last_used": "REAL",
}
KEY_SELECT = (
    "SELECT k.id, k.name, k.role, k.hash, k.created_at, k.functions, k.state, k.expires_at, "
    "k.old_hash, k.old_until, k.last_used, p.name, p.rate, p.burst, p.quota, p.period, "
    "p.weight FROM keys k LEFT JOIN plans p ON p.name = k.plan")


@dataclass(frozen=True)
class Alias:
    function: str
    name: str
    version: str
    extra_version: str | None = None
    extra_weight: float = 0.0


@dataclass(frozen=True)
class ModelRecord:
    name: str
    sha256: str
    filename: str
    size: int
    created_at: float
    error: str | None


@dataclass(frozen=True)
class Idempotency:
    """A route's retries answered once: requests whose JSON field `key` is equal and whose
    `match` fields are equal get one invocation's answer (joined while it runs, replayed
    for `ttl_s` seconds after it succeeded)."""

    key: str
    match: tuple[str, ...] = ()
    ttl_s: float = 300.0

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "match": list(self.match), "ttl_s": self.ttl_s}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Idempotency:
        return cls(value["key"], tuple(value.get("match", ())), float(value["ttl_s"]))

    @classmethod
    def parse(cls, value: Any, where: str = "idempotency") -> Idempotency:
        """Validate a {key, match, ttl_s} object from a client or the seed file; the error
        names the field and what was expected."""
        if not isinstance(value, dict):
            raise InvalidParameter(f"field `{where}`: expected an object "
                                   "{key, match, ttl_s}")
        unknown = set(value) - {"key", "match", "ttl_s"}
        if unknown:
            raise InvalidParameter(f"field `{where}`: unknown field(s) {sorted(unknown)}; "
                                   "expected key, match, ttl_s")
        key = value.get("key")
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_FIELD_NAME:
            raise InvalidParameter(f"field `{where}.key`: expected the name of a JSON field "
                                   f"(1-{MAX_FIELD_NAME} characters)")
        match = value.get("match", [])
        if (not isinstance(match, list | tuple) or len(match) > MAX_MATCH
                or not all(isinstance(m, str) and 1 <= len(m) <= MAX_FIELD_NAME
                           for m in match)):
            raise InvalidParameter(f"field `{where}.match`: expected a list of at most "
                                   f"{MAX_MATCH} JSON field names")
        if len(set(match)) != len(match) or key in match:
            raise InvalidParameter(f"field `{where}.match`: names must be distinct and differ "
                                   "from `key`")
        ttl = value.get("ttl_s", 300.0)
        if (isinstance(ttl, bool) or not isinstance(ttl, int | float)
                or not 0 < ttl <= MAX_TTL_S):
            raise InvalidParameter(f"field `{where}.ttl_s`: expected seconds in "
                                   f"(0, {MAX_TTL_S}]")
        return cls(key, tuple(match), float(ttl))


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str
    qualifier: str
    idempotency: Idempotency | None = None

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def bundle_digest(bundle: Path) -> str:
    """SHA-256 over the bundle's files (relative path and content), in a stable order."""
    h = hashlib.sha256()
    for path in sorted(bundle_files(bundle)):
        rel = path.relative_to(bundle).as_posix()
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def bundle_files(bundle: Path) -> Iterator[Path]:
    for path in bundle.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path


def bundle_archive(bundle: Path) -> bytes:
    """A stored bundle as a .tar.gz of exactly the files `bundle_digest` covers."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(bundle_files(bundle)):
            tar.add(path, arcname=path.relative_to(bundle).as_posix())
    return buf.getvalue()


class Registry:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.bundles = data_dir / "bundles"
        self.bundles.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(data_dir / "registry.db", isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        for path in data_dir.glob("registry.db*"):  # the -wal and -shm files too
            path.chmod(0o600)
        self.migrate()
        self.routes_migrated = self.migrate_routes()

    def migrate(self) -> None:
        have = {row[1] for row in self.db.execute("PRAGMA table_info(keys)")}
        with self.transaction() as db:
            for name, decl in KEY_COLUMNS.items():
                if name not in have:
                    db.execute(f"ALTER TABLE keys ADD COLUMN {name} {decl}")

    def migrate_routes(self) -> bool:
        """A data directory made before routes had options gets the column, in place (its
        routes keep working, without options). True if it was added now."""
        have = {row[1] for row in self.db.execute("PRAGMA table_info(routes)")}
        if "idempotency" in have:
            return False
        with self.transaction() as db:
            db.execute("ALTER TABLE routes ADD COLUMN idempotency TEXT")
        return True

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- bundles ------------------------------------------------------------------------

    def store_bundle(self, source: Path) -> tuple[str, FunctionSpec]:
        """Validate a bundle and copy it, content-addressed, into the data directory."""
        spec = load_spec(source)
        digest = bundle_digest(source)
        target = self.bundles / digest
        if not target.exists():
            tmp = Path(tempfile.mkdtemp(dir=self.bundles, prefix=".incoming-"))
            for path in bundle_files(source):
                dest = tmp / path.relative_to(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
            # compiled now: instances cannot write __pycache__ into it (cold starts)
            compileall.compile_dir(tmp, ddir=str(target), quiet=2, workers=1)
            share_tree(tmp)  # instances (the sandbox's users) read it; nobody writes it
            os.rename(tmp, target)  # atomic: a bundle is whole or absent
        return digest, spec

    # -- functions and versions ---------------------------------------------------------

    def put_latest(self, source: Path) -> VersionRef:
        digest, spec = self.store_bundle(source)
        now = time.time()
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO functions VALUES (?, ?)", (spec.name, now))
            db.execute(
                "INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?, ?)",
                (spec.name, LATEST, digest, msgspec.json.encode(spec).decode(), now),
            )
        return self.version(spec.name, LATEST)

    def publish(self, function: str) -> VersionRef:
        """Snapshot `$LATEST` as the next immutable version number; if the newest version
        already has the same code and configuration, that version is returned (as AWS does)."""
        latest = self.version(function, LATEST)
        published = [v for v in self.versions(function) if v.version != LATEST]
        newest = published[-1] if published else None
        if newest is not None and (newest.sha256, newest.spec) == (latest.sha256, latest.spec):
            return newest
        with self.transaction() as db:
            (top,) = db.execute(
                "SELECT COALESCE(MAX(CAST(version AS INTEGER)), 0) FROM versions "
                "WHERE function = ? AND version != ?", (function, LATEST)).fetchone()
            number = str(top + 1)
            db.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?)",
                (function, number, latest.sha256, msgspec.json.encode(latest.spec).decode(),
                 time.time()),
            )
        return self.version(function, number)

    def functions(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM functions ORDER BY name")]

    def require(self, function: str) -> None:
        row = self.db.execute("SELECT 1 FROM functions WHERE name = ?", (function,)).fetchone()
        if row is None:
            raise NotFound(f"Function not found: {function}")

    def version(self, function: str, version: str) -> VersionRef:
        row = self.db.execute(
            "SELECT sha256, spec FROM versions WHERE function = ? AND version = ?",
            (function, version)).fetchone()
        if row is None:
            self.require(function)
            raise NotFound(f"Function {function} has no version {version}")
        return VersionRef(function, version, str(self.bundles / row[0]),
                          msgspec.json.decode(row[1], type=FunctionSpec), row[0])

    def versions(self, function: str) -> list[VersionRef]:
        """`$LATEST` first, then the published versions in order."""
        self.require(function)
        rows = self.db.execute(
            "SELECT version FROM versions WHERE function = ? "
            "ORDER BY version != ?, CAST(version AS INTEGER)", (function, LATEST))
        return [self.version(function, r[0]) for r in rows.fetchall()]

    def version_times(self, function: str) -> dict[str, float]:
        rows = self.db.execute("SELECT version, created_at FROM versions WHERE function = ?",
                               (function,))
        return {r[0]: r[1] for r in rows.fetchall()}

    # -- aliases and routes -------------------------------------------------------------

    def set_alias(self, alias: Alias) -> None:
        self.version(alias.function, alias.version)
        if alias.extra_version is not None:
            self.version(alias.function, alias.extra_version)
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO aliases VALUES (?, ?, ?, ?, ?)",
                       (alias.function, alias.name, alias.version, alias.extra_version,
                        alias.extra_weight))

    def aliases(self) -> list[Alias]:
        rows = self.db.execute("SELECT * FROM aliases ORDER BY function, name").fetchall()
        return [Alias(*r) for r in rows]

    def add_route(self, route: Route) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO routes (method, path, function, qualifier, "
                       "idempotency) VALUES (?, ?, ?, ?, ?)",
                       (route.method, route.path, route.function, route.qualifier,
                        _idempotency_text(route.idempotency)))

    def set_route_idempotency(self, method: str, path: str,
                              idempotency: Idempotency | None) -> Route:
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE routes SET idempotency = ? WHERE method = ? AND path = ?",
                (_idempotency_text(idempotency), method, path))
            if changed.rowcount == 0:
                raise NotFound(f"no route {method} {path}")
        return next(r for r in self.routes() if (r.method, r.path) == (method, path))

    def remove_route(self, method: str, path: str) -> None:
        with self.transaction() as db:
            gone = db.execute("DELETE FROM routes WHERE method = ? AND path = ?", (method, path))
            if gone.rowcount == 0:
                raise NotFound(f"no route {method} {path}")

    def routes(self) -> list[Route]:
        rows = self.db.execute(
            "SELECT method, path, function, qualifier, idempotency FROM routes "
            "ORDER BY path, method").fetchall()
        return [Route(m, p, f, q, None if i is None else Idempotency.from_json(json.loads(i)))
                for m, p, f, q, i in rows]

    # -- models -------------------------------------------------------------------------

    def add_model(self, m: ModelVersion) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO models VALUES (?, ?, ?, ?, ?, NULL)",
                       (m.name, m.sha256, m.filename, m.size, time.time()))

    def model_versions(self, name: str) -> list[ModelRecord]:
        rows = self.db.execute(
            "SELECT name, sha256, filename, size, created_at, error FROM models WHERE name = ? "
            "ORDER BY created_at", (name,)).fetchall()
        return [ModelRecord(*r) for r in rows]

    def model_names(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT name FROM models ORDER BY name")]

    def set_model_error(self, name: str, sha256: str, error: str | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE models SET error = ? WHERE name = ? AND sha256 = ?",
                       (error, name, sha256))

    # -- keys and plans ---------------------------------------------------------------

    def add_key(self, key: ApiKey) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO keys (id, name, role, hash, created_at, plan, functions, state, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key.key_id, key.name, key.role, key.key_hash, key.created_at or time.time(),
                 key.plan.name if key.plan else None,
                 None if key.functions is None else json.dumps(sorted(key.functions)),
                 key.state, key.expires_at))

    def keys(self) -> list[ApiKey]:
        rows = self.db.execute(KEY_SELECT + " ORDER BY k.created_at").fetchall()
        return [self._key(r) for r in rows]

    @staticmethod
    def _key(r: tuple[Any, ...]) -> ApiKey:
        plan = None if r[11] is None else Plan(r[11], r[12], r[13], r[14], r[15], r[16])
        return ApiKey(
            key_id=r[0], name=r[1], role=r[2], key_hash=r[3],
            weight=plan.weight if plan else 1, plan=plan,
            functions=None if r[5] is None else frozenset(json.loads(r[5])),
            state=r[6], created_at=r[4], expires_at=r[7], old_hash=r[8], old_until=r[9],
            last_used=r[10])

    def update_key(self, key_id: str, **columns: Any) -> None:
        """Set some of a key's columns (named as in the table: state, plan, functions as a
        JSON text, hash, old_hash, old_until, expires_at)."""
        assert set(columns) <= {"state", "plan", "functions", "hash", "old_hash", "old_until",
                                "expires_at"}, columns
        sets = ", ".join(f"{c} = ?" for c in columns)
        with self.transaction() as db:
            db.execute(f"UPDATE keys SET {sets} WHERE id = ?", (*columns.values(), key_id))

    def add_plan(self, plan: Plan) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO plans VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (plan.name, plan.rate, plan.burst, plan.quota, plan.period, plan.weight,
                        time.time()))

    def plans(self) -> list[Plan]:
        rows = self.db.execute(
            "SELECT name, rate, burst, quota, period, weight FROM plans ORDER BY name")
        return [Plan(*r) for r in rows.fetchall()]

    def remove_plan(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM plans WHERE name = ?", (name,))

    # -- usage --------------------------------------------------------------------------

    def add_usage(self, counts: dict[tuple[str, str], list[int]],
                  last_used: dict[str, float]) -> None:
        """Add counts (key_id, day) -> [requests, throttled] and record last use, at once."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO usage VALUES (?, ?, ?, ?) ON CONFLICT (key_id, day) DO UPDATE "
                "SET requests = requests + excluded.requests, "
                "throttled = throttled + excluded.throttled",
                [(k, d, n, t) for (k, d), (n, t) in counts.items()])
            db.executemany("UPDATE keys SET last_used = MAX(COALESCE(last_used, 0), ?) "
                           "WHERE id = ?", [(ts, k) for k, ts in last_used.items()])

    def usage(self, since_day: str) -> list[tuple[str, str, int, int]]:
        """(key_id, day, requests, throttled) from `since_day` on."""
        rows = self.db.execute(
            "SELECT key_id, day, requests, throttled FROM usage WHERE day >= ? "
            "ORDER BY day, key_id", (since_day,))
        return [tuple(r) for r in rows.fetchall()]


def _idempotency_text(idempotency: Idempotency | None) -> str | None:
    return None if idempotency is None else json.dumps(idempotency.to_json())
