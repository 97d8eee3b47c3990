"""The log store: every invocation's log and the platform's events in SQLite (WAL), with
full-text search (FTS5) over what handlers printed and what the platform said, and
retention by age and by size.

A row keeps an invocation's fields (request id as 16 bytes, durations in microseconds)
and the handler's output, not the rendered START/END/REPORT text, which
`render_invocation` rebuilds on read: ten million invocations then take about a
hundred bytes each. One thread writes (the `LogSink`'s); readers use their own
connection, so a search never waits for a write.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlambda.telemetry.events import ERROR_EVENTS
from mlambda.telemetry.logs import render_invocation

INVOCATION = "invocation"
DELETE_CHUNK = 5000

SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- the follow cursor: never reused
    ts INTEGER NOT NULL,                   -- ms since the epoch
    function TEXT,                         -- NULL: concerns every function (a model swap)
    version TEXT,
    kind TEXT NOT NULL,                    -- 'invocation' or an event kind
    request_id BLOB,                       -- a UUID's 16 bytes (other ids as UTF-8)
    trace_id TEXT,                         -- links a caller's and a callee's invocations
    text TEXT,                             -- the handler's output, or the event's message
    error_type TEXT,
    duration_us INTEGER,
    init_us INTEGER,                       -- set on a cold start's first invocation
    memory_mb INTEGER,
    max_memory_mb INTEGER
);
CREATE INDEX IF NOT EXISTS logs_function_ts ON logs(function, ts);
CREATE INDEX IF NOT EXISTS logs_ts ON logs(ts);
CREATE INDEX IF NOT EXISTS logs_request ON logs(request_id) WHERE request_id IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(text, content='logs', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS logs_fts_insert AFTER INSERT ON logs
    WHEN new.text IS NOT NULL AND new.text != '' BEGIN
    INSERT INTO logs_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS logs_fts_delete AFTER DELETE ON logs
    WHEN old.text IS NOT NULL AND old.text != '' BEGIN
    INSERT INTO logs_fts(logs_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
"""

COLUMNS = ("ts, function, version, kind, request_id, trace_id, text, error_type, "
           "duration_us, init_us, memory_mb, max_memory_mb")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One row: an invocation (kind 'invocation') or a platform event."""

    ts: float
    function: str | None
    version: str | None
    kind: str
    text: str
    request_id: str | None = None
    trace_id: str | None = None
    error_type: str | None = None
    duration_ms: float | None = None
    init_ms: float | None = None
    memory_mb: int | None = None
    max_memory_mb: int | None = None


@dataclass(frozen=True)
class LogQuery:
    """What to read. `after` is a cursor (an entry's id): only later entries, oldest
    first; without it, the newest `limit` entries that match."""

    function: str | None = None
    since: float | None = None  # epoch seconds
    until: float | None = None
    text: str | None = None  # entries whose text contains this phrase
    request_id: str | None = None
    version: str | None = None
    after: int | None = None
    limit: int = 100


def _rid_bytes(request_id: str) -> bytes:
    try:
        return uuid.UUID(request_id).bytes
    except ValueError:
        return request_id.encode()


def _rid_text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return str(uuid.UUID(bytes=raw)) if len(raw) == 16 else raw.decode(errors="replace")


def _us(ms: float | None) -> int | None:
    return None if ms is None else round(ms * 1000)


def _phrase(text: str) -> str:
    """A user's filter as one FTS5 phrase: entries that contain these words in this order."""
    return '"' + text.replace('"', '""') + '"'


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA busy_timeout = 30000")
    return db


class LogStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        fresh = not path.exists()
        self.db = _connect(path)  # the writer's
        if fresh:
            self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("PRAGMA journal_size_limit = 67108864")
        self.db.executescript(SCHEMA)
        self.reader = _connect(path)
        self.read_lock = threading.Lock()
        self.write_lock = threading.Lock()

    def close(self) -> None:
        with self.write_lock, self.read_lock:
            self.db.close()
            self.reader.close()

    # -- writing ----------------------------------------------------------------------

    def write(self, records: Iterable[LogRecord]) -> int:
        """Insert in one transaction; returns the number of rows."""
        rows = [(
            round(r.ts * 1000), r.function, r.version, r.kind,
            None if r.request_id is None else _rid_bytes(r.request_id), r.trace_id,
            r.text or None, r.error_type, _us(r.duration_ms), _us(r.init_ms), r.memory_mb,
            r.max_memory_mb,
        ) for r in records]
        with self.write_lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany(
                    f"INSERT INTO logs ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        return len(rows)

    # -- retention --------------------------------------------------------------------

    def used_bytes(self) -> int:
        """Bytes the database's pages hold (free pages not counted), WAL excluded."""
        page_size, pages, free = (self.db.execute(f"PRAGMA {p}").fetchone()[0]
                                  for p in ("page_size", "page_count", "freelist_count"))
        return int(page_size * (pages - free))

    def apply_retention(self, max_age_s: float, max_bytes: int, now: float | None = None) -> int:
        """Delete entries older than `max_age_s`, then the oldest entries until the store
        holds at most `max_bytes`; give the freed pages back to the file system.
        Returns how many entries went."""
        cutoff = round(((now if now is not None else time.time()) - max_age_s) * 1000)
        deleted = 0
        with self.write_lock:
            while True:
                n = self.db.execute(
                    "DELETE FROM logs WHERE id IN (SELECT id FROM logs WHERE ts < ? LIMIT ?)",
                    (cutoff, DELETE_CHUNK)).rowcount
                deleted += n
                if n < DELETE_CHUNK:
                    break
            while self.used_bytes() > max_bytes:
                rows = self.db.execute("SELECT count(*) FROM logs").fetchone()[0]
                if rows == 0:
                    break
                used = self.used_bytes()
                # the oldest share that should bring it to 90% of the bound
                share = min(1.0, (used - 0.9 * max_bytes) / used)
                n = self.db.execute(
                    "DELETE FROM logs WHERE id IN (SELECT id FROM logs ORDER BY id LIMIT ?)",
                    (max(1, min(DELETE_CHUNK * 10, int(rows * share))),)).rowcount
                deleted += n
                self.db.execute("PRAGMA incremental_vacuum")
            if deleted:
                self.db.execute("PRAGMA incremental_vacuum")
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file shrinks now
        return deleted

    # -- reading ----------------------------------------------------------------------

    def query(self, q: LogQuery) -> tuple[list[dict[str, Any]], int]:
        """The entries that match, oldest first, and the cursor to continue from.

        Shaped for the indexes: following (`after`) walks the ids after the cursor; the
        newest `limit` walk (function, ts) or ts backwards and stop at `limit`, once for
        the function's rows and once for the platform-wide ones, merged by id."""
        where: list[str] = []
        params: list[Any] = []
        if q.since is not None:
            where.append("ts >= ?")
            params.append(round(q.since * 1000))
        if q.until is not None:
            where.append("ts <= ?")
            params.append(round(q.until * 1000))
        if q.version is not None:
            where.append("version = ?")
            params.append(q.version)
        if q.request_id is not None:
            where.append("request_id = ?")
            params.append(_rid_bytes(q.request_id))
        if q.text:
            where.append("id IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ?)")
            params.append(_phrase(q.text))
        # which functions' rows: the function's, and the platform-wide events with them
        # (not when the query names a version or an invocation); `+` keeps the request
        # id's index in charge when there is one
        column = "+function" if q.request_id is not None else "function"
        scopes: list[tuple[str, list[Any]]] = [("1", [])]
        if q.function is not None:
            scopes = [(f"{column} = ?", [q.function])]
            if q.version is None and q.request_id is None:
                scopes.append(("function IS NULL", []))
        if q.after is not None:
            either = " OR ".join(f"({c})" for c, _ in scopes)
            sql = (f"SELECT id, {COLUMNS} FROM logs WHERE id > ? AND ({either})"
                   + "".join(f" AND {w}" for w in where) + " ORDER BY id LIMIT ?")
            args: list[Any] = [q.after, *(p for _, ps in scopes for p in ps), *params, q.limit]
        else:
            parts = [f"SELECT * FROM (SELECT id, {COLUMNS} FROM logs WHERE {c}"
                     + "".join(f" AND {w}" for w in where)
                     + " ORDER BY ts DESC, id DESC LIMIT ?)" for c, _ in scopes]
            sql = " UNION ALL ".join(parts) + " ORDER BY id DESC LIMIT ?"
            args = [a for _, ps in scopes for a in (*ps, *params, q.limit)] + [q.limit]
        with self.read_lock:
            self.reader.execute("BEGIN")
            try:
                rows = self.reader.execute(sql, args).fetchall()
                last = self.reader.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'logs'").fetchone()
            finally:
                self.reader.execute("COMMIT")
        if q.after is None:
            rows.reverse()
        newest = int(last[0]) if last else 0
        if q.after is not None and len(rows) == q.limit:
            cursor = int(rows[-1][0])  # more to read: continue from the last one returned
        else:
            cursor = max(newest, q.after or 0)
        return [self.entry(row) for row in rows], cursor

    @staticmethod
    def entry(row: tuple[Any, ...]) -> dict[str, Any]:
        (id_, ts, function, version, kind, rid, trace_id, text, error_type, duration_us,
         init_us, memory_mb, max_memory_mb) = row
        request_id = _rid_text(rid)
        if kind == INVOCATION:
            init_ms = None if init_us is None else init_us / 1000
            message = render_invocation(request_id or "", version or "", text or "",
                                        (duration_us or 0) / 1000, init_ms, memory_mb or 0,
                                        max_memory_mb or 0, trace_id)
            level = "error" if error_type else "info"
        else:
            message = text or ""
            level = "error" if kind in ERROR_EVENTS else "info"
        return {"id": id_, "ts": ts / 1000, "function": function, "version": version,
                "kind": kind, "level": level, "request_id": request_id,
                "trace_id": trace_id, "error_type": error_type, "message": message}
