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
from optuna.trial import TrialState

from tuner.triton.process import triton_processes

TUNER = [sys.executable, "-m", "tuner.cli"]


def study_file(folder: Path, onnx: Path, name: str = "digits", **overrides: object) -> Path:
    """A short digits_forest study: small windows so a trial takes a few seconds."""
    data: dict = {
        "study": name,
        "storage": "sqlite:///tuner.db",
        "model": {"name": "digits_forest", "path": str(onnx)},
        "search": {
            "sampler": "tpe",
            "n_trials": 3,
            "seed": 3,
            "space": {
                "max_batch_size": [1, 8],
                "dynamic_batching": [False, True],
                "max_queue_delay_us": {"low": 0, "high": 2000, "step": 500},
                "instance_count": {"low": 1, "high": 2},
            },
        },
        "constraints": {"latency_p99_ms": {"max": 100}},
        "load": {"remeasure": {"top": 0}, "concurrency": [2], "measurement_window_ms": 400, "max_windows": 5, "warmup_requests": 2},
    }
    data.update(overrides)
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


def test_three_trial_study_is_stored(tmp_path: Path, digits_onnx: Path) -> None:
    path = study_file(tmp_path, digits_onnx)
    result = run_tuner("optimize", path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Pareto front" in result.stdout and "recommended: trial" in result.stdout

    study = load(tmp_path)
    assert len(study.trials) == 3
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
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

    shown = run_tuner("show", "digits", "--storage", "sqlite:///tuner.db", "--json", cwd=tmp_path)
    document = json.loads(shown.stdout)
    assert document["directions"] == ["maximize", "minimize"]
    trial = document["trials"][0]
    assert 'backend: "python"' in trial["config_pbtxt"]
    assert "dynamic_batching" not in trial["config_pbtxt"]  # the default config has no batcher
    for key in ("throughput", "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
                "server_queue_ms", "server_compute_infer_ms"):
        assert trial["metrics"][key] > 0, key
    assert trial["points"][0]["concurrency"] == 2
    assert not servers_under(tmp_path)

    # Running the same command again continues the study; a larger budget adds trials.
    again = run_tuner("optimize", path, "--n-trials", "4", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(load(tmp_path).trials) == 4


def test_the_default_sampler_models_real_measurements(tmp_path: Path, digits_onnx: Path) -> None:
    path = study_file(tmp_path, digits_onnx, name="default-sampler")
    data = yaml.safe_load(path.read_text())
    del data["search"]["sampler"]  # the default: bo
    data["search"]["n_trials"] = 6
    path.write_text(yaml.safe_dump(data))

    result = run_tuner("optimize", path, cwd=tmp_path)

    assert result.returncode == 0, result.stderr + result.stdout
    assert "sampler bo" in result.stdout and "recommended: trial" in result.stdout
    study = load(tmp_path, "default-sampler")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) == 6  # a new config each trial
    # the default and two known-good configs (the space has no accelerator to choose), then the sampler's
    warm = [t for t in study.trials if "fixed_params" in t.system_attrs]
    assert [t.number for t in warm] == [0, 1, 2]
    assert all("tuner:planned" in t.system_attrs for t in study.trials[3:])


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_keeps_the_study_and_stops_the_server(tmp_path: Path, digits_onnx: Path, stop: int, code: int) -> None:
    """SIGTERM (timeout, systemd, Kubernetes, docker stop) does what Ctrl-C does; Ray's own handler does not run."""
    path = study_file(tmp_path, digits_onnx, name="interrupted", load={
        "remeasure": {"top": 0}, "concurrency": [2], "measurement_window_ms": 800, "max_windows": 5, "warmup_requests": 2})
    process = subprocess.Popen([*TUNER, "optimize", str(path)], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    _wait_for_running_trial(tmp_path, "interrupted", process)
    time.sleep(1.0)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "interrupted: the study is stored" in stderr and "Traceback" not in stderr, stderr
    assert not servers_under(tmp_path)
    with sqlite3.connect(tmp_path / "tuner.db") as conn:
        assert conn.execute("SELECT * FROM tuner_study_leases").fetchall() == [], "the lease outlived its driver"

    study = load(tmp_path, "interrupted")
    assert TrialState.RUNNING not in [t.state for t in study.trials]
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "interrupted" in failed[0].user_attrs["fail_reason"]
    # The warm-start configs not yet asked wait too; the interrupted one is queued after them.
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert waiting and waiting[-1].number == len(study.trials) - 1, "the interrupted config is queued again"
    waiting = waiting[-1:]

    resumed = run_tuner("optimize", path, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    study = load(tmp_path, "interrupted")
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 3
    assert study.trials[waiting[0].number].params == failed[0].params


def test_killed_tuner_resumes_without_losing_trials(tmp_path: Path, digits_onnx: Path) -> None:
    path = study_file(tmp_path, digits_onnx, name="killed")
    process = subprocess.Popen([*TUNER, "optimize", str(path)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _wait_for_running_trial(tmp_path, "killed", process, minimum_number=1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _tritonservers_under(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _tritonservers_under(tmp_path), "the server outlived the killed tuner"
    completed_before = [t.number for t in load(tmp_path, "killed").trials if t.state == TrialState.COMPLETE]
    running = [t for t in load(tmp_path, "killed").trials if t.state == TrialState.RUNNING]
    assert len(running) == 1

    resumed = run_tuner("optimize", path, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    # The python-backend stubs of the killed server can outlive it; the next run cleans them up.
    assert not servers_under(tmp_path)
    study = load(tmp_path, "killed")
    stale = study.trials[running[0].number]
    assert stale.state == TrialState.FAIL and "stopped" in stale.user_attrs["fail_reason"]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    assert set(completed_before) <= {t.number for t in complete}
    assert any(t.params == running[0].params for t in complete if t.number > running[0].number)


def test_trials_of_a_model_triton_cannot_load_fail_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    import onnx
    from onnx import TensorProto, helper

    # A valid graph whose node ONNX Runtime does not know: it loads only as far as the session.
    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="tuner.test")
    graph = helper.make_graph([node], "broken", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("tuner.test", 1)])
    onnx.save(model, str(broken))
    path = study_file(tmp_path, broken, name="broken", model={"name": "broken", "path": str(broken)})
    path.write_text(path.read_text().replace("n_trials: 3", "n_trials: 2"))
    result = run_tuner("optimize", path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = load(tmp_path, "broken")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all("NoSuchOp" in t.user_attrs["fail_reason"] for t in study.trials)
    assert "no feasible trial" in result.stdout


def _tritonservers_under(folder: Path) -> list[psutil.Process]:
    return [p for p in servers_under(folder) if p.name() == "tritonserver"]


def _wait_for_running_trial(folder: Path, name: str, process: subprocess.Popen, minimum_number: int = 0) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "the tuner exited early"
        try:
            trials = load(folder, name).trials
        except (KeyError, Exception):  # the study may not exist yet
            trials = []
        if any(t.state == TrialState.RUNNING and t.number >= minimum_number for t in trials):
            return
        time.sleep(0.3)
    pytest.fail("no trial started within 120 s")
