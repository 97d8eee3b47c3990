"""The log store on a real SQLite file: queries, full-text search, cursors, retention."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from mlambda.telemetry.logstore import INVOCATION, LogQuery, LogRecord, LogStore


def invocation(ts: float, text: str, function: str = "f", version: str = "1",
               rid: str | None = None) -> LogRecord:
    return LogRecord(ts=ts, function=function, version=version, kind=INVOCATION, text=text,
                     request_id=rid or str(uuid.uuid4()), duration_ms=1.5, init_ms=None,
                     memory_mb=128, max_memory_mb=40)


def test_query_search_request_id_version_and_cursor(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db")
    now = time.time()
    rid = str(uuid.uuid4())
    store.write([
        invocation(now - 5, "loading the model\n"),
        invocation(now - 4, "result: cat 0.93\n", rid=rid, version="2"),
        invocation(now - 3, "other function\n", function="g"),
        LogRecord(ts=now - 2, function=None, version=None, kind="model_swap",
                  text="model m: current -> abc"),
    ])
    entries, cursor = store.query(LogQuery(function="f"))
    assert [e["kind"] for e in entries] == [INVOCATION, INVOCATION, "model_swap"]
    assert cursor == 4
    found, _ = store.query(LogQuery(function="f", text="cat 0.93"))
    assert [e["request_id"] for e in found] == [rid]
    assert found[0]["message"].startswith(f"START RequestId: {rid} Version: 2\nresult: cat")
    assert f"REPORT RequestId: {rid}\tDuration: 1.50 ms" in found[0]["message"]
    assert store.query(LogQuery(function="f", text="0.93 cat"))[0] == []  # a phrase, in order
    by_id, _ = store.query(LogQuery(request_id=rid))
    assert len(by_id) == 1 and by_id[0]["version"] == "2"
    assert [e["version"] for e in store.query(LogQuery(function="f", version="1"))[0]] == ["1"]
    assert store.query(LogQuery(function="f", after=cursor))[0] == []
    store.write([invocation(now, "later\n")])
    later, cursor2 = store.query(LogQuery(function="f", after=cursor))
    assert [e["message"].split("\n")[1] for e in later] == ["later"] and cursor2 == 5
    newest_two, _ = store.query(LogQuery(limit=2))
    assert [e["id"] for e in newest_two] == [4, 5]


def test_retention_by_age_drops_old_rows_and_their_search_entries(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db")
    now = time.time()
    store.write([invocation(now - 40 * 86400, f"ancient {i}\n") for i in range(50)])
    store.write([invocation(now - 60, "recent line\n")])
    assert len(store.query(LogQuery(text="ancient", limit=1000))[0]) == 50
    assert store.apply_retention(max_age_s=30 * 86400, max_bytes=1 << 30) == 50
    assert store.query(LogQuery(text="ancient", limit=1000))[0] == []
    kept, _ = store.query(LogQuery(limit=1000))
    assert [e["message"].split("\n")[1] for e in kept] == ["recent line"]


def test_retention_by_size_keeps_the_newest(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db")
    now = time.time()
    for chunk in range(10):
        store.write([invocation(now - 1000 + chunk, f"chunk{chunk} " + "x" * 400 + "\n")
                     for _ in range(300)])
    used = store.used_bytes()
    bound = used // 3
    assert store.apply_retention(max_age_s=86400, max_bytes=bound) > 0
    assert store.used_bytes() <= bound
    assert (tmp_path / "logs.db").stat().st_size <= used  # pages went back to the disk
    assert store.query(LogQuery(text="chunk9", limit=1))[0]  # the newest stayed
    assert store.query(LogQuery(text="chunk0", limit=1))[0] == []  # the oldest went
