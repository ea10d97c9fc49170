"""The study driver as an operator meets it: one driver per study, a SIGKILL, a database restart or outage.

SIGTERM is tested in test_optimize.py.

Real `tuner optimize` processes on the digits_forest study (real Triton, perf_analyzer; Ray's
workers where a driver is killed, one worker in the tuner's process elsewhere), on SQLite and on a PostgreSQL database of the test's own at 127.0.0.1:5432.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
import yaml
from factories import QUICK_LOAD
from optuna.trial import TrialState
from test_optimize import (
    TUNER,
    _wait_for_running_trial,
    load,
    run_tuner,
    servers_under,
    study_file,
)


def _lease_rows(folder: Path) -> list[tuple]:
    with sqlite3.connect(folder / "tuner.db") as conn:
        return conn.execute("SELECT study_name, host, pid FROM tuner_study_leases").fetchall()


def _states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.trials]


def test_one_driver_at_a_time_and_a_killed_ones_study_is_taken_over_without_losing_trials(
    tmp_path: Path, digits_onnx: Path
) -> None:
    """A second driver is refused while the first runs; SIGKILL the first, and the next run takes over.

    One study serves the three: the refusal, the lease a SIGKILL leaves behind (and the server that
    must not outlive its tuner), and the run that takes the study over and completes it.
    """
    # Ray as users run it; windows long enough that a trial seen running is still running at the kill
    path = study_file(tmp_path, digits_onnx, name="one-driver", workers={"backend": "ray"},
                      load=QUICK_LOAD | {"measurement_window_ms": 800})
    data = yaml.safe_load(path.read_text())
    data["search"]["n_trials"] = 4  # a trial left for the kill however far the refusal lets the first get
    path.write_text(yaml.safe_dump(data))
    first = subprocess.Popen([*TUNER, "optimize", str(path)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    _wait_for_running_trial(tmp_path, "one-driver", first)

    second = run_tuner("optimize", path, cwd=tmp_path, timeout=120)
    assert second.returncode == 2, second.stderr
    message = second.stderr.strip()
    assert message.startswith("error: study 'one-driver' is being run by another tuner"), message
    assert f"pid {first.pid} on {socket.gethostname()} since " in message
    assert "Traceback" not in second.stderr and len(message.splitlines()) == 1
    assert TrialState.FAIL not in _states(load(tmp_path, "one-driver")), "the second driver failed a running trial"

    _wait_for_running_trial(tmp_path, "one-driver", first, minimum_number=1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    deadline = time.monotonic() + 10
    while servers_under(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    # the server and its python-backend stubs (servers_under finds both)
    assert not servers_under(tmp_path), "the server or its stubs outlived the killed tuner"
    assert [row[2] for row in _lease_rows(tmp_path)] == [first.pid], "a SIGKILL leaves the lease behind"
    killed = load(tmp_path, "one-driver").trials
    completed_before = [t.number for t in killed if t.state == TrialState.COMPLETE]
    running = [t for t in killed if t.state == TrialState.RUNNING]
    assert completed_before and len(running) == 1

    # The next run, with its worker in its own process: what is tested is the lease and the trials, to which
    # a second Ray start adds nothing.
    path.write_text(yaml.safe_dump({**data, "workers": {"backend": "local"}}))
    resumed = run_tuner("-v", "optimize", path, cwd=tmp_path)  # its pid is gone: no TTL to wait for
    assert resumed.returncode == 0, resumed.stderr
    assert f"took over study 'one-driver' from pid {first.pid}" in resumed.stderr
    assert not servers_under(tmp_path)
    assert _lease_rows(tmp_path) == [], "the lease outlived its driver"
    study = load(tmp_path, "one-driver")
    assert TrialState.RUNNING not in _states(study)
    stale = study.trials[running[0].number]
    assert stale.state == TrialState.FAIL and "stopped" in stale.user_attrs["fail_reason"]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    assert set(completed_before) <= {t.number for t in complete}, "a trial completed before the kill was lost"
    assert any(t.params == running[0].params for t in complete if t.number > running[0].number)


@pytest.mark.slow
@pytest.mark.serial  # the restart drops every other test's PostgreSQL connections too
def test_a_postgresql_restart_mid_study_loses_no_trial(tmp_path: Path, digits_onnx: Path,
                                                      fresh_postgres_url: str) -> None:
    name = f"pg-restart-{uuid.uuid4().hex[:8]}"
    process = _start_on(tmp_path, digits_onnx, name, fresh_postgres_url, n_trials=4)
    _wait_for_trials(fresh_postgres_url, name, process, complete=1)
    restart = subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart"],
                             capture_output=True, text=True, timeout=120, check=False)
    assert restart.returncode == 0, restart.stderr
    _, stderr = process.communicate(timeout=600)
    print(stderr)  # what the driver said about the outage, for the record
    assert process.returncode == 0, stderr
    study = optuna.load_study(study_name=name, storage=fresh_postgres_url)
    assert _states(study).count(TrialState.COMPLETE) == 4 and TrialState.FAIL not in _states(study), stderr


@pytest.mark.slow
def test_the_study_database_refusing_connections_for_a_while_loses_no_trial(
    tmp_path: Path, digits_onnx: Path, fresh_postgres_url: str
) -> None:
    """An outage long enough that the driver must write during it; only this test's database is cut off."""
    name = f"pg-outage-{uuid.uuid4().hex[:8]}"
    process = _start_on(tmp_path, digits_onnx, name, fresh_postgres_url, n_trials=4)
    _wait_for_trials(fresh_postgres_url, name, process, complete=1)
    database = sa.make_url(fresh_postgres_url).database
    admin = sa.create_engine(fresh_postgres_url.rsplit("/", 1)[0] + "/test", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                         {"d": database})
            time.sleep(20)  # longer than a trial: a tell and the lease's heartbeats fall in it
            conn.execute(sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
    finally:
        admin.dispose()
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert "the study storage does not answer" in stderr and "answers again" in stderr, stderr
    study = optuna.load_study(study_name=name, storage=fresh_postgres_url)
    assert _states(study).count(TrialState.COMPLETE) == 4 and TrialState.FAIL not in _states(study), stderr


def _start_on(folder: Path, onnx: Path, name: str, storage: str, n_trials: int) -> subprocess.Popen:
    """`tuner optimize` of a digits_forest study of ``n_trials`` on ``storage``."""
    path = study_file(folder, onnx, name=name)
    data = yaml.safe_load(path.read_text())
    data["storage"] = storage
    data["search"]["n_trials"] = n_trials
    path.write_text(yaml.safe_dump(data))
    return subprocess.Popen([*TUNER, "optimize", str(path)], cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_trials(url: str, name: str, process: subprocess.Popen, complete: int) -> None:
    """Waits until the study has ``complete`` finished trials and one running."""
    storage = optuna.storages.RDBStorage(url)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1]
            try:
                states = _states(optuna.load_study(study_name=name, storage=storage))
            except KeyError:
                states = []
            if states.count(TrialState.COMPLETE) >= complete and TrialState.RUNNING in states:
                return
            time.sleep(0.5)
        pytest.fail(f"no {complete} complete trials within 300 s")
    finally:
        storage.remove_session()
        storage.engine.dispose()  # no connection of the test's own left for the outage to cut
