"""Metrics on disk: SQLite (WAL) in its own file, `DATA/metrics.db`.

One row per series per interval, its `Point` packed (msgpack, sparse histograms):
10 s points kept `Retention.fine_s` (a day), 1-minute, 1-hour and 1-day rollups kept
`Retention.rollup_s` (30 days; the hourly ones make a month's chart cheap to read, the
daily ones a month's bill). A minute is rolled up once all its 10 s points are in, an
hour once its minutes are, a day once its hours are; retention runs with the rollup.
Used from one thread at a time (the telemetry's writer).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

from mlambda.telemetry.series import Point, decode, encode

FINE = 10  # s: the resolution of the newest points
ROLLUP = 60  # s: the resolution kept for a month
HOURLY = 3600  # s: the same month, 60 times fewer rows to read
DAILY = 86400  # s: the same month again, for totals over it (a bill, a day so far)
TIERS = (FINE, ROLLUP, HOURLY, DAILY)

SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    function TEXT NOT NULL,
    alias TEXT NOT NULL,
    version TEXT NOT NULL,
    route TEXT NOT NULL,
    UNIQUE (function, alias, version, route)
);
CREATE TABLE IF NOT EXISTS points (
    period INTEGER NOT NULL,
    series INTEGER NOT NULL REFERENCES series(id),
    ts INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (period, series, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value REAL NOT NULL
);
"""


class SeriesKey(NamedTuple):
    """What a series measures: a function (alias "" and version ""), one of its aliases,
    one of its versions, or a gateway route ("METHOD /path", function "")."""

    function: str
    alias: str = ""
    version: str = ""
    route: str = ""


@dataclass(frozen=True)
class Retention:
    fine_s: float = 24 * 3600.0
    rollup_s: float = 30 * 86400.0


class MetricStore:
    def __init__(self, path: Path, retention: Retention = Retention()) -> None:
        self.path = path
        self.retention = retention
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.ids: dict[SeriesKey, int] = {
            SeriesKey(*row[1:]): row[0]
            for row in self.db.execute("SELECT id, function, alias, version, route FROM series")}

    def close(self) -> None:
        self.db.close()

    def series_id(self, key: SeriesKey) -> int:
        sid = self.ids.get(key)
        if sid is None:
            cur = self.db.execute(
                "INSERT INTO series (function, alias, version, route) VALUES (?, ?, ?, ?)", key)
            sid = self.ids[key] = int(cur.lastrowid or 0)
        return sid

    def keys(self) -> list[SeriesKey]:
        return list(self.ids)

    # -- writing ------------------------------------------------------------------------

    def write(self, ts: float, points: dict[SeriesKey, Point], period: int = FINE) -> None:
        """Add `points` (an interval that started at `ts`) to the `period`-s rows holding
        `ts`, merging with what is there."""
        bucket = int(ts // period * period)
        with self.transaction():
            for key, point in points.items():
                if point:
                    self.merge_row(period, self.series_id(key), bucket, point)

    def merge_row(self, period: int, sid: int, ts: int, point: Point) -> None:
        row = self.db.execute("SELECT data FROM points WHERE period=? AND series=? AND ts=?",
                              (period, sid, ts)).fetchone()
        if row is not None:
            old = decode(row[0])
            old.merge(point)
            point = old
        self.db.execute("INSERT OR REPLACE INTO points (period, series, ts, data) "
                        "VALUES (?, ?, ?, ?)", (period, sid, ts, encode(point)))

    def maintain(self, now: float | None = None, settle_s: float = FINE) -> None:
        """Roll complete minutes of 10 s points up into 1-minute points (a minute is
        complete `settle_s` after it ends), complete hours into 1-hour points and complete
        days into 1-day points, then drop what is past retention."""
        now = time.time() if now is None else now
        with self.transaction():
            for src, dst in pairwise(TIERS):
                until = int((now - settle_s) // dst * dst)
                done = self.rolled_until(dst)
                if done is None:
                    first = self.db.execute("SELECT MIN(ts) FROM points WHERE period=?",
                                            (src,)).fetchone()[0]
                    done = float(first // dst * dst) if first is not None else float(until)
                if until > done:
                    self.rollup(src, dst, int(done), until)
                    self.set_meta(f"rolled_until_{dst}", until)
            self.expire(now)

    def rolled_until(self, period: int) -> float | None:
        """Rows of `period` exist (complete) for every ts before this."""
        return self.meta(f"rolled_until_{period}")

    def rollup(self, src: int, dst: int, start: int, end: int) -> None:
        """Merge the `src` rows of [start, end) into `dst` rows (one series at a time, so
        each read is a range of the primary key)."""
        for sid in list(self.ids.values()):
            merged: dict[int, Point] = {}
            rows = self.db.execute(
                "SELECT ts, data FROM points WHERE period=? AND series=? AND ts>=? AND ts<?",
                (src, sid, start, end))
            for ts, blob in rows:
                bucket = ts // dst * dst
                point = decode(blob)
                if bucket in merged:
                    merged[bucket].merge(point)
                else:
                    merged[bucket] = point
            for ts, point in merged.items():
                self.merge_row(dst, sid, ts, point)

    def expire(self, now: float) -> None:
        keep = {FINE: self.retention.fine_s, ROLLUP: self.retention.rollup_s,
                HOURLY: self.retention.rollup_s, DAILY: self.retention.rollup_s}
        for period, seconds in keep.items():
            cutoff = now - seconds
            for sid in self.ids.values():
                self.db.execute("DELETE FROM points WHERE period=? AND series=? AND ts<?",
                                (period, sid, cutoff))

    def meta(self, key: str) -> float | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else float(row[0])

    def set_meta(self, key: str, value: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def transaction(self) -> _Transaction:
        return _Transaction(self.db)

    # -- reading ------------------------------------------------------------------------

    def read(self, key: SeriesKey, period: int, since: float, until: float,
             hists: bool = True) -> Iterator[tuple[int, Point]]:
        """The `period`-s points of one series with since <= ts < until, oldest first
        (without their histograms if `hists` is false)."""
        sid = self.ids.get(key)
        if sid is None:
            return
        rows = self.db.execute(
            "SELECT ts, data FROM points WHERE period=? AND series=? AND ts>=? AND ts<? "
            "ORDER BY ts", (period, sid, int(since // period * period), until))
        for ts, blob in rows:
            yield ts, decode(blob, hists)

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
