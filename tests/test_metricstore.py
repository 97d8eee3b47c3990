"""The metric store on real SQLite: merges, rollups (10 s -> 1 min -> 1 h) that add up
exactly, retention by age (old timestamps injected through the store's API), and data
that outlives the process that wrote it."""

from __future__ import annotations

from pathlib import Path

from mlambda.telemetry import query as q
from mlambda.telemetry import series as s
from mlambda.telemetry.metricstore import (
    DAILY,
    FINE,
    HOURLY,
    ROLLUP,
    MetricStore,
    Retention,
    SeriesKey,
)
from mlambda.telemetry.series import Point

ECHO = SeriesKey("echo")
T0 = 1_800_000_000  # a round hour (divisible by 3600)


def point(invocations: int, duration_ms: float, busy: int = 0) -> Point:
    p = Point()
    p.add(s.INVOCATIONS, invocations)
    for _ in range(invocations):
        p.observe(s.DURATION, duration_ms)
    if busy:
        p.gauge(s.CONCURRENT, busy)
    return p


def rows(store: MetricStore, period: int) -> list[tuple[int, float]]:
    return [(ts, p.counts[s.INVOCATIONS])
            for ts, p in store.read(ECHO, period, 0, 4_000_000_000)]


def test_writes_into_one_interval_merge(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "m.db")
    store.write(T0 + 1, {ECHO: point(2, 5.0)})
    store.write(T0 + 4.5, {ECHO: point(3, 50.0, busy=2)})
    [(ts, p)] = list(store.read(ECHO, FINE, T0, T0 + 10))
    assert ts == T0 and p.counts[s.INVOCATIONS] == 5 and p.gauges[s.CONCURRENT] == 2
    assert p.hists[s.DURATION].count == 5


def test_rollups_add_up_and_wait_for_complete_minutes(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "m.db")
    for i in range(2 * 360):  # two hours of 10 s points, i invocations... a known sum
        store.write(T0 + 10 * i, {ECHO: point(1 + i % 3, 10.0 + i % 7, busy=i % 5)})
    store.maintain(now=T0 + 7200 + 5, settle_s=FINE)  # the last minute is not settled yet
    minutes = rows(store, ROLLUP)
    assert len(minutes) == 119 and minutes[0] == (T0, sum(1 + i % 3 for i in range(6)))
    assert [ts for ts, _ in rows(store, HOURLY)] == [T0]
    store.maintain(now=T0 + 7200 + FINE + 1, settle_s=FINE)
    assert len(rows(store, ROLLUP)) == 120
    total = sum(1 + i % 3 for i in range(720))
    assert sum(n for _, n in rows(store, ROLLUP)) == total
    assert sum(n for _, n in rows(store, HOURLY)) == total
    [(_, hour)] = list(store.read(ECHO, HOURLY, T0, T0 + 3600))
    assert hour.gauges[s.CONCURRENT] == 4
    fine = Point()
    for _, p in store.read(ECHO, FINE, T0, T0 + 3600):
        fine.merge(p)
    assert hour.hists[s.DURATION].buckets == fine.hists[s.DURATION].buckets


def test_retention_drops_old_points_and_keeps_new_ones(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "m.db", Retention(fine_s=24 * 3600, rollup_s=30 * 86400))
    now = T0 + 40 * 86400
    store.write(now - 25 * 3600, {ECHO: point(1, 1.0)})  # 10 s point past a day
    store.write(now - 3600, {ECHO: point(2, 1.0)})
    store.write(now - 31 * 86400, {ECHO: point(3, 1.0)}, period=ROLLUP)  # past 30 days
    store.write(now - 29 * 86400, {ECHO: point(4, 1.0)}, period=ROLLUP)
    store.write(now - 31 * 86400, {ECHO: point(5, 1.0)}, period=HOURLY)
    store.set_meta("rolled_until_60", now - 3600 - 60)  # as if rolled up already
    store.set_meta("rolled_until_3600", now - 7200)
    store.maintain(now=now)
    assert [n for _, n in rows(store, FINE)] == [2]
    # the 29-day-old minute stays; the fresh 10 s point was rolled up into its minute too
    assert rows(store, ROLLUP) == [(now - 29 * 86400, 4), (now - 3600, 2)]
    assert rows(store, HOURLY) == []


def test_a_reopened_store_has_everything(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "m.db")
    store.write(T0, {ECHO: point(7, 3.0), SeriesKey("", route="POST /echo"): point(7, 4.0)})
    store.close()
    again = MetricStore(tmp_path / "m.db")
    assert rows(again, FINE) == [(T0, 7)]
    assert SeriesKey("", route="POST /echo") in again.keys()


def test_a_range_reads_rollups_then_fine_points_then_the_live_interval(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "m.db")
    for i in range(180):  # 30 minutes
        store.write(T0 + 10 * i, {ECHO: point(1, 2.0)})
    store.maintain(now=T0 + 20 * 60, settle_s=0)  # minutes 0..19 rolled up, 20..29 not yet
    live = {ECHO: point(5, 2.0)}
    r = q.plan_range(T0, T0 + 1800 + 10, 60, now=T0 + 1800, fine_retention_s=86400)
    got = q.timeseries(store, live, T0 + 1800, ECHO, r)
    counts = [v for _, v in got["series"]["Invocations"]]
    assert counts[:30] == [6.0] * 30 and counts[30] == 5.0
    assert got["summary"]["Invocations"] == 185
    assert got["summary"]["DurationP99"] is not None


def test_range_checks_name_the_field() -> None:
    now = float(T0)
    for since, period, field in (("30d", 10, "period"), ("1h", 45, "period"),
                                 ("yesterday", None, "since")):
        try:
            start = q.parse_time(since, now, "since")
            q.plan_range(start, now, period, now, 86400)
        except Exception as exc:
            assert f"`{field}`" in str(exc)
        else:
            raise AssertionError(f"{since} {period} was accepted")
    assert q.plan_range(now - 30 * 86400, now, None, now, 86400).period == 3600
    assert q.plan_range(now - 3600, now, None, now, 86400).period == 10
    assert q.parse_time("2026-11-29T00:00:00Z", now, "since") == 1_795_910_400
    assert q.parse_time("90", now, "since") == now - 90
    assert q.parse_time(str(T0 - 5), now, "since") == T0 - 5


def test_a_total_reads_days_and_hours_and_adds_up_to_the_minutes(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "m.db")
    day0 = 20_834 * 86400  # a UTC midnight
    minutes = {day0 + 60 * m: 1 + m % 7 for m in range(3 * 1440)}  # three days
    sid = store.series_id(ECHO)
    with store.transaction():
        for ts, n in minutes.items():
            store.merge_row(ROLLUP, sid, ts, point(n, 1.0 + n))
    store.set_meta("rolled_until_60", day0 + 3 * 86400)  # as if from 10 s points
    store.maintain(now=day0 + 3 * 86400 + 1, settle_s=0)
    assert [ts for ts, _ in rows(store, DAILY)] == [day0, day0 + 86400, day0 + 2 * 86400]
    since, until = day0 + 90 * 60, day0 + 3 * 86400 - 7 * 60 - 30  # ragged at both ends
    spans = q.cover(store, since, until)
    assert spans == [(ROLLUP, since, day0 + 7200), (HOURLY, day0 + 7200, day0 + 86400),
                     (DAILY, day0 + 86400, day0 + 2 * 86400),
                     (HOURLY, day0 + 2 * 86400, day0 + 3 * 86400 - 3600),
                     (ROLLUP, day0 + 3 * 86400 - 3600, day0 + 3 * 86400 - 480),
                     (FINE, day0 + 3 * 86400 - 480, until)]
    expected = sum(n for ts, n in minutes.items() if since <= ts < until - 30)
    r = q.Range(since, until, ROLLUP)
    live = {ECHO: point(4, 2.0)}
    bill = q.total(store, live, until - 1, ECHO, r, hists=False)
    assert bill.counts[s.INVOCATIONS] == expected + 4 and not bill.hists
    whole = q.total(store, live, until - 1, ECHO, r)
    assert whole.counts[s.INVOCATIONS] == whole.hists[s.DURATION].count == expected + 4
