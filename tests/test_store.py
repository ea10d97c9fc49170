"""The storage contract, on SQLite and on PostgreSQL (127.0.0.1:5432, a database made for each test)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import optuna
import pytest

from tuner.errors import StorageError
from tuner.storage import Store, no_trial
from tuner.trial import LoadPoint, TrialOutcome, TrialSpec


@pytest.fixture
def store(fresh_url: str):
    opened = Store(fresh_url)
    yield opened
    opened.close()


def _outcome(throughputs: list[float]) -> TrialOutcome:
    spec = TrialSpec(max_batch_size=8, dynamic_batching=True, max_queue_delay_us=500, instance_count=2)
    points = tuple(
        LoadPoint(concurrency=c, throughput=t, latency_avg_ms=1.5, latency_p50_ms=1.4, latency_p90_ms=2.0,
                  latency_p95_ms=2.2, latency_p99_ms=3.0 + c, server_queue_ms=0.4, stable=c != 4)
        for c, t in zip((1, 2, 4), throughputs)
    )
    return TrialOutcome(spec=spec, config_pbtxt='name: "m"\n', points=points, timings_s={"load_s": 1.25})


def test_outcome_round_trip(store: Store) -> None:
    name = f"store-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=store.optuna, directions=["maximize", "minimize"])
    trial = study.ask()
    outcome = _outcome([100.0, 180.0, 210.0])
    store.save_outcome(name, trial._trial_id, trial.number, outcome)
    record = store.records([trial._trial_id])[trial._trial_id]
    assert record.points == outcome.points
    assert record.config_pbtxt == outcome.config_pbtxt
    assert record.spec["instance_count"] == 2 and record.timings_s == {"load_s": 1.25}
    assert record.error is None

    # Saving again replaces, never duplicates.
    store.save_outcome(name, trial._trial_id, trial.number, _outcome([1.0]))
    assert [p.throughput for p in store.records([trial._trial_id])[trial._trial_id].points] == [1.0]
    assert name in store.study_names()
    assert store.load_study(name).study_name == name


def test_unknown_study_names_the_known_ones(store: Store) -> None:
    name = f"known-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=store.optuna)
    with pytest.raises(StorageError, match=name):
        store.load_study("never-created")


def test_read_only_open_of_a_missing_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no study database"):
        Store(f"sqlite:///{tmp_path / 'absent.db'}", must_exist=True)
    assert not (tmp_path / "absent.db").exists()


def test_unreachable_database_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="cannot open storage"):
        Store("postgresql+psycopg://postgres@127.0.0.1:1/none")


def test_stores_opened_at_once_on_a_new_postgresql_database_all_open(fresh_postgres_url: str) -> None:
    """Two drivers (or a driver and the API) starting together on an empty database: Optuna creates
    its tables and types without a lock, and one of them failed with a duplicate type."""
    opened: list[Store] = []
    errors: list[StorageError] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(Store(fresh_postgres_url))
        except StorageError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in opened:
        store.close()
    assert errors == []
    assert len(opened) == 4


@pytest.mark.parametrize(("count", "said"), [
    (0, "it has no trials"), (1, "its one trial is 0"), (10, "its trials are 0-9"),
])
def test_a_trial_number_a_study_lacks_is_told_with_the_numbers_it_has(count: int, said: str) -> None:
    assert no_trial("s", 10, count) == f"study 's' has no trial 10 ({said})"
