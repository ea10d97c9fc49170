"""One driver per study: a lease row in the study's database.

    with StudyLease(store, "ocr"):      # StudyLockedError where another live driver holds it
        runner = StudyRunner(cfg, store)
        runner.run()

A driver takes the lease before it opens (and so recovers) the study, renews it from a
background thread every ``renew_s`` seconds and deletes it on the way out. Another driver refuses
to start while the lease is live; it takes it over at once when the holder ran on this same host and
its process is gone, and when the holder's heartbeat is older than ``ttl_s`` (a host that died, a
driver killed with SIGKILL elsewhere) and stays unchanged for two more heartbeats: a holder that
could not renew only because the database was down (a restart longer than ``ttl_s``) renews as soon
as it is back, and keeps its lease. A holder whose lease was taken over all the same learns it at
its next heartbeat (``lost``), and its study loop stops without writing more.

Taking and renewing are compare-and-swap writes in one transaction (an INSERT that the primary
key makes fail for the second of two, an UPDATE conditional on the holder and heartbeat read), so
of two drivers racing for a lease exactly one gets it, in SQLite and in PostgreSQL alike.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import psutil
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from tuner.errors import StudyLockedError, StudyNotFoundError
from tuner.storage._store import Store, study_leases

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11; only the checker reads it here

logger = logging.getLogger(__name__)

#: A lease whose heartbeat is older than this many seconds is stale.
DEFAULT_TTL_S = 30.0


@dataclass(frozen=True)
class Holder:
    """Who holds a study's lease (a row of ``tuner_study_leases``)."""

    holder: str
    host: str
    pid: int
    started: float
    heartbeat: float

    def describe(self, now: float) -> str:
        since = datetime.fromtimestamp(self.started, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"pid {self.pid} on {self.host} since {since} (last heartbeat {max(0.0, now - self.heartbeat):.0f} s ago)"
        )


def is_gone(holder: Holder, now: float, ttl_s: float = DEFAULT_TTL_S, host: str | None = None) -> bool:
    """True where the lease's driver is gone: its heartbeat is stale, or it ran on ``host``
    (default: this host), where a driver whose process has exited is known at once."""
    return now - holder.heartbeat > ttl_s or _exited_here(holder, host)


def _exited_here(holder: Holder, host: str | None = None) -> bool:
    """True where the lease's driver ran on ``host`` (default: this host) and its process has exited."""
    return holder.host == (host or socket.gethostname()) and not psutil.pid_exists(holder.pid)


def live_driver(store: Store, study: str, ttl_s: float = DEFAULT_TTL_S) -> Holder | None:
    """The driver running ``study`` now, or None where none holds a live lease."""
    with store.engine.connect() as conn:
        holder = _read_holder(conn, study)
    return None if holder is None or is_gone(holder, time.time(), ttl_s) else holder


def refuse_if_driven(url: str, study: str) -> None:
    """Raises StudyLockedError where a live driver runs ``study`` in the storage at ``url``, writing
    nothing: a second driver is told before it spends seconds preparing a run it cannot take. A
    SQLite file that does not exist has no driver; ``StudyLease`` still decides, as two may race."""
    try:
        store = Store(url, must_exist=True)
    except StudyNotFoundError:
        return
    try:
        holder = live_driver(store, study)
    finally:
        store.close()
    if holder is not None:
        raise locked_error(study, holder, time.time(), DEFAULT_TTL_S)


def locked_error(study: str, holder: Holder, now: float, ttl_s: float) -> StudyLockedError:
    """What a driver refused ``study`` is told: who runs it, and when it may be taken over."""
    return StudyLockedError(
        f"study {study!r} is being run by another tuner: {holder.describe(now)}; "
        f"stop it first, or wait {ttl_s:.0f} s after it stops renewing its lease"
    )


def _read_holder(conn: sa.Connection, study: str) -> Holder | None:
    """The lease row of ``study``, or None where nobody holds it."""
    row = conn.execute(sa.select(study_leases).where(study_leases.c.study_name == study)).mappings().first()
    return None if row is None else Holder(**{field.name: row[field.name] for field in dataclasses.fields(Holder)})


class _Raced(Exception):
    """Another driver changed the row between our read and our write: read again."""


@dataclass(frozen=True)
class _Stale:
    """A holder whose heartbeat is older than the TTL, not yet seen to stay so."""

    holder: Holder


class StudyLease:
    """The lease of one study for this driver.

    Args:
        store: The study's storage (its engine and its outage retrier).
        study: The study name.
        ttl_s: A lease whose heartbeat is older than this is stale and may be taken over.
        renew_s: Seconds between two heartbeats.
        host: This driver's host name (tests pretend to be another host).
        pid: This driver's process id.
        clock: Seconds since the epoch.
        sleep: Waits this many seconds (tests move their clock instead).
    """

    def __init__(
        self,
        store: Store,
        study: str,
        ttl_s: float = DEFAULT_TTL_S,
        renew_s: float = 5.0,
        host: str | None = None,
        pid: int | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.study = study
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        self.host = host or socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.clock = clock
        self.sleep = sleep
        self.holder = uuid.uuid4().hex
        self.lost = False
        self.took_over: Holder | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unreachable = False

    def __enter__(self) -> Self:
        self.acquire()
        self.start_heartbeat()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_heartbeat()
        self.release()

    def acquire(self) -> None:
        """Takes the lease, or takes it over from a driver that is gone.

        Raises:
            StudyLockedError: a live driver holds it.
        """
        stale: Holder | None = None
        for _ in range(10):
            try:
                other = self.store.retrier.call(self._take, stale)
            except (IntegrityError, _Raced):
                continue  # another driver wrote first: look at what it wrote
            if isinstance(other, _Stale):
                stale = other.holder
                wait = self.confirm_s
                logger.warning(
                    "study %r: the lease of %s is stale; taking it over if it is not renewed within %.0f s",
                    self.study,
                    stale.describe(self.clock()),
                    wait,
                )
                self.sleep(wait)
                continue
            if other is not None:
                raise locked_error(self.study, other, self.clock(), self.ttl_s)
            if self.took_over is not None:
                logger.warning("took over study %r from %s", self.study, self.took_over.describe(self.clock()))
            return
        raise StudyLockedError(f"study {self.study!r}: other tuners keep taking its lease; try again")

    @property
    def confirm_s(self) -> float:
        """How long a stale heartbeat must stay unchanged before the lease is taken over: two
        heartbeats, and a second for the holder's reconnection."""
        return 2 * self.renew_s + 1

    def _take(self, stale: Holder | None) -> Holder | _Stale | None:
        """One try: None when taken, else the live holder, or a stale one not yet seen before
        (``stale`` is the one seen a wait ago: taken over where it is still the same)."""
        now = self.clock()
        mine = {"holder": self.holder, "host": self.host, "pid": self.pid, "started": now, "heartbeat": now}
        table = study_leases
        with self.store.engine.begin() as conn:
            current = _read_holder(conn, self.study)
            if current is None:
                conn.execute(table.insert().values(study_name=self.study, **mine))
                return None
            if not self._takeable(current, now):
                return current
            if self._unconfirmed(current, stale):
                return _Stale(current)
            taken = conn.execute(
                table.update()
                .where(
                    table.c.study_name == self.study,
                    table.c.holder == current.holder,
                    table.c.heartbeat == current.heartbeat,
                )
                .values(**mine)
            )
            if taken.rowcount != 1:
                raise _Raced()
        self.took_over = current if current.holder != self.holder else None
        return None

    def _unconfirmed(self, current: Holder, stale: Holder | None) -> bool:
        """True where ``current`` is another driver's lease, stale by its heartbeat alone, and not
        the one seen stale a wait ago (a dead process on this host is known at once)."""
        if current.holder == self.holder or _exited_here(current, self.host):
            return False
        return stale is None or (stale.holder, stale.heartbeat) != (current.holder, current.heartbeat)

    def _takeable(self, current: Holder, now: float) -> bool:
        return current.holder == self.holder or is_gone(current, now, self.ttl_s, self.host)

    def renew(self) -> bool:
        """Writes a fresh heartbeat; False (and ``lost`` set) where another driver took the lease.

        Raises:
            SQLAlchemyError: the database did not answer (the caller tries again later).
        """
        table = study_leases
        with self.store.engine.begin() as conn:
            renewed = conn.execute(
                table.update()
                .where(table.c.study_name == self.study, table.c.holder == self.holder)
                .values(heartbeat=self.clock())
            )
        if renewed.rowcount != 1 and not self.lost:
            self.lost = True
            logger.error("study %r: another tuner took over this run's lease; this run stops", self.study)
        return not self.lost

    def release(self) -> None:
        """Deletes the lease if this driver still holds it; a database that does not answer leaves
        it to go stale (or to be taken over on this host at once)."""
        table = study_leases
        try:
            with self.store.engine.begin() as conn:
                conn.execute(table.delete().where(table.c.study_name == self.study, table.c.holder == self.holder))
        except SQLAlchemyError as exc:
            logger.warning(
                "could not release the lease of study %r (%s); it goes stale in %.0f s",
                self.study,
                exc.__class__.__name__,
                self.ttl_s,
            )

    def start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.study}", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.renew_s + 5)
            self._thread = None

    def _beat(self) -> None:
        """Renews until stopped; an unreachable database is noted once and tried again next beat,
        never raised: the study's own writes ride out the outage (tuner.storage._retry)."""
        while not self._stop.wait(self.renew_s):
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 - a dead heartbeat thread would let the lease go stale
                if not self._unreachable:
                    logger.warning(
                        "study %r: cannot renew the lease (%s); trying again every %.0f s",
                        self.study,
                        exc.__class__.__name__,
                        self.renew_s,
                    )
                self._unreachable = True
                continue
            if self._unreachable:
                logger.warning("study %r: lease renewed again", self.study)
                self._unreachable = False
