"""The study lease on SQLite and on a fresh PostgreSQL database: take, renew, refuse, take over."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tuner.errors import StudyLockedError
from tuner.storage import Store, StudyLease
from tuner.storage._store import study_leases


@pytest.fixture
def store(fresh_url: str) -> Iterator[Store]:
    opened = Store(fresh_url)
    yield opened
    opened.close()


class Clock:
    """Seconds since the epoch that a test moves by hand."""

    def __init__(self, now: float = 1_780_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """A wait: the clock moves by ``seconds`` at once, and the wait is noted."""
        self.slept.append(seconds)
        self.now += seconds


def _rows(store: Store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(study_leases)).mappings()]


def _elsewhere(store: Store, clock: Clock, study: str = "s") -> StudyLease:
    """A driver on another host, which this host cannot see."""
    return StudyLease(store, study, host="node-a", pid=4242, clock=clock)


def test_taken_while_running_and_released_after(store: Store) -> None:
    with StudyLease(store, "s") as lease:
        [row] = _rows(store)
        assert (row["study_name"], row["holder"], row["host"], row["pid"]) == (
            "s", lease.holder, socket.gethostname(), os.getpid())
    assert _rows(store) == []


def test_renew_moves_the_heartbeat(store: Store) -> None:
    clock = Clock()
    lease = StudyLease(store, "s", clock=clock)
    lease.acquire()
    clock.now += 12.5
    assert lease.renew()
    [row] = _rows(store)
    assert row["heartbeat"] == clock.now and row["started"] == clock.now - 12.5


def test_a_live_holder_is_named_and_nothing_is_touched(store: Store) -> None:
    clock = Clock()
    first = _elsewhere(store, clock)
    first.acquire()
    before = _rows(store)
    clock.now += 10
    with pytest.raises(StudyLockedError) as refused:
        StudyLease(store, "s", clock=clock).acquire()
    message = str(refused.value)
    assert "pid 4242 on node-a since 2026-" in message and "10 s ago" in message
    assert _rows(store) == before


def test_other_studies_are_not_held(store: Store) -> None:
    _elsewhere(store, Clock(), "a").acquire()
    StudyLease(store, "b").acquire()
    assert sorted(r["study_name"] for r in _rows(store)) == ["a", "b"]


def test_a_stale_lease_is_taken_over_and_its_old_holder_learns_it(store: Store) -> None:
    clock = Clock()
    first = _elsewhere(store, clock)
    first.acquire()
    clock.now += 29
    with pytest.raises(StudyLockedError):
        StudyLease(store, "s", clock=clock, sleep=clock.advance).acquire()  # within the TTL: still live
    clock.now += 2
    second = StudyLease(store, "s", clock=clock, sleep=clock.advance)
    second.acquire()
    assert clock.slept == [second.confirm_s], "the stale heartbeat was seen to stay stale first"
    assert second.took_over is not None and second.took_over.host == "node-a"
    assert [r["holder"] for r in _rows(store)] == [second.holder]
    assert not first.renew() and first.lost
    first.release()  # releases nothing it no longer holds
    assert [r["holder"] for r in _rows(store)] == [second.holder]


def test_a_holder_that_renews_once_the_database_is_back_keeps_its_lease(store: Store) -> None:
    """A database restart longer than the TTL leaves a live holder's heartbeat stale; it renews within
    a heartbeat of the database's return, before a second driver that saw it stale takes it over."""
    clock = Clock()
    first = _elsewhere(store, clock)
    first.acquire()
    clock.now += 60  # the database was down for a minute: no heartbeat reached it

    def wait(seconds: float) -> None:
        clock.advance(seconds)
        assert first.renew()  # the holder's next heartbeat, meanwhile

    with pytest.raises(StudyLockedError, match="pid 4242 on node-a"):
        StudyLease(store, "s", clock=clock, sleep=wait).acquire()
    assert [r["holder"] for r in _rows(store)] == [first.holder] and not first.lost


def test_a_gone_process_on_this_host_is_taken_over_at_once(store: Store) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    clock = Clock()
    StudyLease(store, "s", pid=finished.pid, clock=clock).acquire()
    second = StudyLease(store, "s", clock=clock)
    second.acquire()
    assert second.took_over is not None and second.took_over.pid == finished.pid


def test_a_live_process_on_this_host_is_not_taken_over(store: Store) -> None:
    clock = Clock()
    StudyLease(store, "s", clock=clock).acquire()  # this very process, another driver
    with pytest.raises(StudyLockedError, match=f"pid {os.getpid()} on {socket.gethostname()}"):
        StudyLease(store, "s", clock=clock).acquire()


def test_of_drivers_racing_for_a_lease_exactly_one_gets_it(fresh_url: str) -> None:
    stores = [Store(fresh_url) for _ in range(6)]
    start = threading.Barrier(len(stores))
    results: list[str] = []

    def race(index: int) -> None:
        lease = StudyLease(stores[index], "s", host=f"node-{index}", pid=1000 + index)
        start.wait()
        try:
            lease.acquire()
            results.append("took")
        except StudyLockedError:
            results.append("refused")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert sorted(results) == ["refused"] * (len(stores) - 1) + ["took"]
        assert len(_rows(stores[0])) == 1
    finally:
        for opened in stores:
            opened.close()


def test_the_heartbeat_outlives_an_unreachable_database(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    lease = StudyLease(store, "s", renew_s=0.1)
    lease.acquire()
    reachable = store.engine
    store.engine = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/nothing")  # nothing listens there
    lease.start_heartbeat()
    try:
        time.sleep(0.6)
        assert lease._thread is not None and lease._thread.is_alive()
        assert sum("cannot renew the lease" in r.getMessage() for r in caplog.records) == 1
        store.engine = reachable
        before = _rows(store)[0]["heartbeat"]
        time.sleep(0.5)
        assert _rows(store)[0]["heartbeat"] > before and not lease.lost
    finally:
        store.engine = reachable
        lease.stop_heartbeat()
        lease.release()
