"""`tuner optimize` end to end: the real server, perf_analyzer, SQLite, and the stored study."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest
import yaml
from factories import QUICK_LOAD, digits_study
from optuna.trial import TrialState
from sqlalchemy.exc import OperationalError

from tuner.storage import ATTR_SPEC_KEY, read_study
from tuner.study import config_results, recommend
from tuner.triton._process import triton_processes

TUNER = [sys.executable, "-m", "tuner.cli"]


def study_file(folder: Path, onnx: Path, name: str = "digits", **overrides: object) -> Path:
    """A short digits_forest study on SQLite in ``folder``: small windows so a trial takes a few seconds."""
    data = digits_study(name, str(onnx), storage="sqlite:///tuner.db", **overrides)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_tuner(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TUNER, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False, stdin=subprocess.DEVNULL)


def load(folder: Path, name: str = "digits") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'tuner.db'}")


def servers_under(folder: Path) -> list[psutil.Process]:
    return triton_processes(folder)


def test_the_default_sampler_models_real_measurements(tmp_path: Path, digits_onnx: Path) -> None:
    path = study_file(tmp_path, digits_onnx, name="default-sampler")
    data = yaml.safe_load(path.read_text())
    del data["search"]["sampler"]  # the default: bo
    data["search"]["n_trials"] = 5
    path.write_text(yaml.safe_dump(data))

    result = run_tuner("optimize", path, cwd=tmp_path)

    assert result.returncode == 0, result.stderr + result.stdout
    assert "sampler bo" in result.stdout and "recommended: trial" in result.stdout
    assert "Pareto front" in result.stdout
    study = load(tmp_path, "default-sampler")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 5
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) == 5  # a new config each trial
    # the default, then the two known-good changes alone and together (the space has no accelerator to
    # choose), then the sampler's
    warm = [t for t in study.trials if "fixed_params" in t.system_attrs]
    assert [t.number for t in warm] == [0, 1, 2, 3]
    assert study.trials[4:] and all("tuner:planned" in t.system_attrs for t in study.trials[4:])
    assert not servers_under(tmp_path)

    # What is stored of each trial, in Optuna's tables and the tuner's own.
    first = study.trials[0]
    assert first.user_attrs["default_config"] is True
    assert first.params["dynamic_batching"] is False and first.params["instance_count"] == 1
    for trial in study.trials:
        throughput, p99 = trial.values
        assert throughput > 0 and p99 > 0
        assert trial.user_attrs["metrics"]["throughput"] == throughput
        assert set(trial.constraints) == {"latency_p99_ms"}
    assert study.best_trials, "the feasible Pareto front is empty"
    assert study.metric_names == ["throughput", "latency_p99_ms"]

    shown = run_tuner("show", "default-sampler", "--storage", "sqlite:///tuner.db", "--json", cwd=tmp_path)
    document = json.loads(shown.stdout)
    assert document["directions"] == ["maximize", "minimize"]
    trial = document["trials"][0]
    assert 'backend: "python"' in trial["config_pbtxt"]
    assert "dynamic_batching" not in trial["config_pbtxt"]  # the default config has no batcher
    for key in ("throughput", "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
                "server_queue_ms", "server_compute_infer_ms"):
        assert trial["metrics"][key] > 0, key
    assert trial["points"][0]["concurrency"] == 2
    # That running the command again continues the study: test_sigterm_keeps_the_study_and_stops_the_server.


def test_a_study_searches_concurrency_and_measures_the_best_again(tmp_path: Path, digits_onnx: Path) -> None:
    """The concurrency search and the fresh loads of the contenders, in one short study."""
    path = study_file(
        tmp_path, digits_onnx, name="confirmed", workers={"backend": "local"},
        load={"engine": "builtin", "concurrency": "auto", "concurrency_search": {"max": 8},
              "measurement_window_ms": 300, "max_windows": 4, "stability_percentage": 50, "warmup_requests": 2,
              "contamination_retries": 0, "early_stop": {"enabled": False},
              "remeasure": {"loads": 2, "max_loads_per_config": 3}},
    )
    result = run_tuner("optimize", path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    stored = read_study(load(tmp_path, "confirmed"))
    assert stored.counted() == 3
    again = [t for t in stored.trials if t.remeasure_of is not None]
    assert len(again) == 2, "the 2 fresh loads of the budget"
    for trial in again:
        assert trial.complete and trial.params == stored.trial(trial.remeasure_of).params
    results = config_results(stored.trials, stored.info)
    assert max(len(r.loads) for r in results) >= 2 and all(len(r.loads) <= 3 for r in results)
    rec = recommend(results, stored.info)
    assert rec is not None and f"recommended: trial {rec.number}" in result.stdout
    # The search measured a curve: several concurrencies per trial, in the project's own table.
    show = run_tuner("show", "confirmed", "--storage", "sqlite:///tuner.db", "--json", cwd=tmp_path)
    trials = json.loads(show.stdout)["trials"]
    assert max(len(t["points"]) for t in trials if t["state"] == "COMPLETE") >= 2
    assert all("server_cpu_pct" in p for t in trials for p in t["points"])
    # Its steps were screens; each trial was measured to stability where the search settled, and judged there.
    for trial in trials:
        if trial["state"] == "COMPLETE":
            full = {p["concurrency"] for p in trial["points"] if not p["screened"]}
            assert full and trial["metrics"]["concurrency"] in full, trial["points"]
    assert any(p["screened"] for t in trials for p in t["points"])


def test_sigterm_keeps_the_study_and_stops_the_server(tmp_path: Path, digits_onnx: Path) -> None:
    """SIGTERM (timeout, systemd, Kubernetes, docker stop) does what Ctrl-C does; Ray's own handler does not run.

    The CLI turns SIGTERM into the KeyboardInterrupt that Ctrl-C raises, so one real signal tests
    the path of both; the study loop's handling of Ctrl-C is tested in-process in
    tests/test_study_interrupt.py.
    """
    path = study_file(tmp_path, digits_onnx, name="interrupted", load=QUICK_LOAD | {"measurement_window_ms": 800},
                      workers={"backend": "ray"})
    process = subprocess.Popen([*TUNER, "optimize", str(path)], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    _wait_for_running_trial(tmp_path, "interrupted", process)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "interrupted: the study is stored" in stderr and "Traceback" not in stderr, stderr
    assert not servers_under(tmp_path)
    with sqlite3.connect(tmp_path / "tuner.db") as conn:
        assert conn.execute("SELECT * FROM tuner_study_leases").fetchall() == [], "the lease outlived its driver"

    study = load(tmp_path, "interrupted")
    assert TrialState.RUNNING not in [t.state for t in study.trials]
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "interrupted" in failed[0].user_attrs["fail_reason"]
    # The interrupted config waits to run again; the warm start's later configs are queued as the search asks.
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].number == len(study.trials) - 1, "the interrupted config is queued again"

    # Running the study again continues it; a larger budget (--n-trials) adds trials. (Its worker runs in
    # the tuner's process: a second Ray start would test nothing more.)
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, "workers": {"backend": "local"}}))
    resumed = run_tuner("optimize", path, "--n-trials", "4", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    study = load(tmp_path, "interrupted")
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 4
    assert study.trials[waiting[0].number].params == failed[0].params
    assert study.user_attrs["study_file"]["search"]["n_trials"] == 4, "the budget it ran to, for the API's state"


def test_a_model_onnx_runtime_cannot_load_is_refused_before_any_trial(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    import onnx
    from onnx import TensorProto, helper

    # A valid graph whose node ONNX Runtime does not know: every trial's accuracy check would fail on it.
    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="tuner.test")
    graph = helper.make_graph([node], "broken", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("tuner.test", 1)])
    onnx.save(model, str(broken))
    path = study_file(tmp_path, broken, name="broken", model={"name": "broken", "path": str(broken)})
    result = run_tuner("optimize", path, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "ONNX Runtime's CPU provider cannot load the model" in result.stderr and "NoSuchOp" in result.stderr
    assert not (tmp_path / ".tuner" / "broken").exists(), "no worker, no server started"


def _tritonservers_under(folder: Path) -> list[psutil.Process]:
    return [p for p in servers_under(folder) if p.name() == "tritonserver"]


def _wait_for_running_trial(folder: Path, name: str, process: subprocess.Popen, minimum_number: int = 0) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "the tuner exited early"
        try:
            trials = load(folder, name).trials
        except (KeyError, OperationalError):  # the study or its tables do not exist yet
            trials = []
        # a whole config: the tuner stores its spec key once every knob is proposed
        if any(t.state == TrialState.RUNNING and t.number >= minimum_number and ATTR_SPEC_KEY in t.user_attrs
               for t in trials):
            return
        time.sleep(0.3)
    pytest.fail("no trial started within 120 s")
