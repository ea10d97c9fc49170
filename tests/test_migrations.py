"""The tuner's tables come from its Alembic migrations, on SQLite and on a fresh PostgreSQL database."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tuner.storage import Store, migrations
from tuner.storage._store import metadata
from tuner.trial import LoadPoint, TrialOutcome, TrialSpec


def _tuner_tables(engine: sa.Engine) -> set[str]:
    return {t for t in sa.inspect(engine).get_table_names() if t.startswith("tuner_")}


def test_a_fresh_database_is_migrated_to_the_head(fresh_url: str) -> None:
    store = Store(fresh_url)
    try:
        with store.engine.connect() as conn:
            assert migrations.current(conn) == migrations.head()
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() != migrations.head()
        assert _tuner_tables(store.engine) == {
            "tuner_alembic_version", "tuner_trial_configs", "tuner_trial_points", "tuner_study_leases"
        }
        assert "trials" in sa.inspect(store.engine).get_table_names()  # Optuna's, migrated by Optuna
    finally:
        store.close()


def test_the_migrations_make_exactly_the_tables_the_store_declares(fresh_url: str) -> None:
    store = Store(fresh_url)
    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_name": lambda name, kind, _: kind != "table" or name.startswith("tuner_")}
            )
            differences = [d for d in compare_metadata(context, metadata) if "tuner_alembic_version" not in str(d)]
        assert differences == [], "tuner.storage._store's tables and tuner/storage/migrations disagree: add a revision"
    finally:
        store.close()


def test_downgrade_to_nothing_and_back(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'tuner.db'}")
    try:
        with store.engine.begin() as conn:
            command.downgrade(migrations.alembic_config(conn), "base")
        assert _tuner_tables(store.engine) == {"tuner_alembic_version"}
        assert "trials" in sa.inspect(store.engine).get_table_names()  # Optuna's tables are not ours to drop
        migrations.upgrade(store.engine)
        assert _tuner_tables(store.engine) == {
            "tuner_alembic_version", "tuner_trial_configs", "tuner_trial_points", "tuner_study_leases"
        }
    finally:
        store.close()


def test_tables_made_before_migrations_are_adopted_with_their_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    # What tuner.storage._store made with metadata.create_all before migrations existed.
    old = sa.MetaData()
    sa.Table("tuner_trial_configs", old, sa.Column("trial_id", sa.Integer, primary_key=True),
             sa.Column("study_name", sa.String(512), nullable=False, index=True),
             sa.Column("trial_number", sa.Integer, nullable=False), sa.Column("config_pbtxt", sa.Text, nullable=False),
             sa.Column("spec_json", sa.Text, nullable=False), sa.Column("error", sa.Text),
             sa.Column("timings_json", sa.Text, nullable=False))
    floats = ["throughput", "latency_avg_ms", "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
              "client_send_ms", "client_recv_ms", "server_queue_ms", "server_compute_input_ms",
              "server_compute_infer_ms", "server_compute_output_ms"]
    points = sa.Table("tuner_trial_points", old, sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                      sa.Column("trial_id", sa.Integer, nullable=False, index=True),
                      sa.Column("study_name", sa.String(512), nullable=False),
                      sa.Column("trial_number", sa.Integer, nullable=False), sa.Column("concurrency", sa.Integer),
                      *[sa.Column(f, sa.Float) for f in floats], sa.Column("stable", sa.Boolean))
    engine = sa.create_engine(url)
    old.create_all(engine)
    spec = TrialSpec(max_batch_size=4, dynamic_batching=False, max_queue_delay_us=0, instance_count=1)
    with engine.begin() as conn:
        conn.execute(old.tables["tuner_trial_configs"].insert().values(
            trial_id=1, study_name="old", trial_number=0, config_pbtxt='name: "m"', spec_json=spec.key(),
            timings_json="{}"))
        conn.execute(points.insert().values(trial_id=1, study_name="old", trial_number=0, concurrency=2,
                                            stable=True, **{f: 1.5 for f in floats}))
    engine.dispose()

    store = Store(url)
    try:
        with store.engine.connect() as conn:
            assert migrations.current(conn) == migrations.head()
        record = store.records([1])[1]
        assert record.config_pbtxt == 'name: "m"' and record.points[0].concurrency == 2
        assert record.points[0].latency_p99_ms == 1.5
    finally:
        store.close()


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(fresh_url: str) -> None:
    engines = [sa.create_engine(fresh_url, connect_args={"timeout": 30} if "sqlite" in fresh_url else {})
               for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def open_one(engine: sa.Engine) -> None:
        try:
            barrier.wait()
            migrations.upgrade(engine)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        with engines[0].connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM tuner_alembic_version")).scalars().all()
        assert versions == [migrations.head()]
    finally:
        for engine in engines:
            engine.dispose()


@dataclass(frozen=True)
class _PointWithCpu(LoadPoint):
    """A point with a field that has no column yet (as a new measurement would add)."""

    cpu_percent: float = 0.0


def test_a_point_field_without_a_column_is_kept_in_extra_json(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'tuner.db'}")
    try:
        study = optuna.create_study(storage=store.optuna)
        trial = study.ask()
        spec = TrialSpec(max_batch_size=4, dynamic_batching=False, max_queue_delay_us=0, instance_count=1)
        point = _PointWithCpu(concurrency=1, throughput=10.0, latency_avg_ms=1.0, latency_p50_ms=1.0,
                              latency_p90_ms=1.0, latency_p95_ms=1.0, latency_p99_ms=2.0, cpu_percent=73.5)
        store.save_outcome(study.study_name, trial._trial_id, trial.number, TrialOutcome(spec, "", points=(point,)))
        with store.engine.connect() as conn:
            extra = conn.execute(sa.text("SELECT extra_json FROM tuner_trial_points")).scalar()
        assert json.loads(extra)["cpu_percent"] == 73.5
        assert "throughput" not in json.loads(extra)  # it has a column
        read = store.records([trial._trial_id])[trial._trial_id].points[0]
        assert read.latency_p99_ms == 2.0  # LoadPoint has no cpu_percent: left out, nothing fails
    finally:
        store.close()
