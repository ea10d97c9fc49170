"""Stopping runs: all at once when the API shuts down, and a run whose process is gone shows as stopped; and
how many may run at once."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from api_helpers import REPO_ROOT, digits_study, unique

from api import views
from api.errors import ConflictError
from api.runs import RunManager, RunSlots, validate_study
from api.schemas import StudyState
from api.settings import ApiSettings
from api.studies import StudyCache
from api.verify_runs import VerifyManager
from tuner.storage import Store, StudyLease

#: A run that, like `tuner optimize`, takes a while to stop on SIGTERM (it interrupts its trials and stops its
#: servers) and then exits with 143. Starting the real tuner twice would take minutes; its own handling of
#: SIGTERM is tested with the CLI.
SLOW_TO_STOP = """
import signal, sys, time
from pathlib import Path

def stop(*_):
    time.sleep(3)
    sys.exit(143)

signal.signal(signal.SIGTERM, stop)
Path(sys.argv[1]).with_suffix(".started").touch()
time.sleep(600)
"""


def test_stop_all_stops_the_runs_at_once(tmp_path: Path, digits_onnx: Path) -> None:
    settings = ApiSettings.from_env(f"sqlite:///{tmp_path / 'tuner.db'}", {
        "TUNER_API_WORK_DIR": str(tmp_path / "work"), "TUNER_API_STUDY_ROOT": str(REPO_ROOT),
    })
    script = tmp_path / "run.py"
    script.write_text(SLOW_TO_STOP)
    folder = settings.work_dir / "studies"
    runs = RunManager(settings, lambda name: (folder / f"{name}.started").exists(), RunSlots(2),
                      [sys.executable, str(script)])
    started = [runs.start(validate_study(digits_study(unique("api-stop-all"), digits_onnx), settings))
               for _ in range(2)]
    assert all(run.alive for run in started)
    begun = time.monotonic()
    runs.stop_all()
    took = time.monotonic() - begun
    assert [run.process.returncode for run in started] == [143, 143]  # each got SIGTERM and stopped itself
    assert took < 5.5, f"stopping two runs of 3 s each took {took:.1f} s: one after the other"


def test_a_study_whose_run_is_gone_is_stopped_not_running(storage_url: str, own_small_study: str) -> None:
    store = Store(storage_url)
    try:
        opened = StudyCache(store).get(own_small_study)
        assert opened.trials()[-1].state.name == "RUNNING"  # left behind by a run that died
        assert views.summary(opened, store, run_alive=False).state == StudyState.STOPPED
        assert views.summary(opened, store, run_alive=True).state == StudyState.RUNNING
        # Not started by this API: running while a tuner holds the study's lease, not after.
        assert views.summary(opened, store, run_alive=None).state == StudyState.STOPPED
        with StudyLease(store, own_small_study):
            assert views.summary(opened, store, run_alive=None).state == StudyState.RUNNING
        assert views.summary(opened, store, run_alive=None).state == StudyState.STOPPED
    finally:
        store.close()


def test_runs_beyond_max_runs_are_refused_studies_and_verifications_alike(
    tmp_path: Path, digits_onnx: Path, storage_url: str
) -> None:
    """Runs on the same cores spoil each other's measurements: the API runs at most TUNER_API_MAX_RUNS at once."""
    settings = ApiSettings.from_env(storage_url, {
        "TUNER_API_WORK_DIR": str(tmp_path / "work"), "TUNER_API_STUDY_ROOT": str(REPO_ROOT),
        "TUNER_API_STOP_TIMEOUT_S": "10",
    })
    assert settings.max_runs == 1  # the default
    script = tmp_path / "run.py"
    script.write_text(SLOW_TO_STOP)
    folder = settings.work_dir / "studies"
    slots = RunSlots(settings.max_runs)
    runs = RunManager(settings, lambda name: (folder / f"{name}.started").exists(), slots, [sys.executable, str(script)])
    verifier = VerifyManager(settings, slots, command=[sys.executable, "-c", "import time; time.sleep(60)"])
    first, second = (validate_study(digits_study(unique("api-max-runs"), digits_onnx), settings) for _ in range(2))
    store = Store(storage_url)
    try:
        runs.start(first)
        with pytest.raises(ConflictError, match=rf"study '{first.study}' is measuring .* at most 1 at a time"):
            runs.start(second)
        with pytest.raises(ConflictError, match="TUNER_API_MAX_RUNS"):
            verifier.start("another-study", store, study_running=False, trial=None, repeats=1)
        assert not (folder / f"{second.study}.yaml").exists(), "nothing of a refused run is written"
        runs.stop(first.study)
        assert runs.start(second).alive  # its slot is free once the first has ended
    finally:
        runs.stop_all()
        verifier.stop_all()
        store.close()
