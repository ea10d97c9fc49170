"""Ray workers with the real parts: parallel trials, pinned cores, and every fault a study must survive."""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import psutil
import pytest
import ray
from optuna.trial import TrialState

from tuner.config import StudyConfig, parse_config
from tuner.storage import Store, read_trial
from tuner.study import StudyRunner
from tuner.workers._ray_init import init_ray


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module, started as the tuner starts it: pools reuse a running Ray and leave it running."""
    init_ray(None, num_cpus=2)
    yield
    ray.shutdown()


def _config(folder: Path, onnx: Path, name: str, *, count: int = 2, n_trials: int = 6, **extra: dict) -> StudyConfig:
    data: dict = {
        "study": name,
        "storage": "sqlite:///tuner.db",
        "model": {"name": "digits_forest", "path": str(onnx)},
        "workers": {"count": count, "cpus_per_worker": 1},
        "search": {
            "n_trials": n_trials,
            "seed": 11,
            "space": {"max_batch_size": [1, 4, 8], "instance_count": [1, 2], "max_queue_delay_us": [0, 500, 1000]},
        },
        "load": {"remeasure": {"top": 0}, "concurrency": [2], "measurement_window_ms": 400, "max_windows": 3,
                 "stability_percentage": 50, "warmup_requests": 2,
                 "early_stop": {"enabled": False}},  # the tests count trials measured in full
    }
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value}
    return parse_config(data, folder)


def _run(cfg: StudyConfig, fault: Callable[[StudyRunner], None] | None = None) -> optuna.Study:
    store = Store(cfg.storage)
    runner = StudyRunner(cfg, store)
    if fault is not None:
        threading.Thread(target=fault, args=(runner,), daemon=True).start()
    runner.run()
    return optuna.load_study(study_name=cfg.study, storage=cfg.storage)


def _wait_busy(runner: StudyRunner, worker: int = 0, after_trial: int = 0, timeout_s: float = 120) -> int:
    """Waits until ``worker`` runs a trial numbered at least ``after_trial``; returns the trial number."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pool = runner.pool
        if pool is not None and pool.status[worker].ticket is not None and pool.status[worker].ticket >= after_trial:
            return pool.status[worker].ticket
        time.sleep(0.05)
    raise AssertionError("the worker never got a trial")


def _server_of(actor_pid: int) -> psutil.Process:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in psutil.Process(actor_pid).children():
            if child.name() == "tritonserver":
                return child
        time.sleep(0.05)
    raise AssertionError("no tritonserver under the worker")


def test_two_workers_share_a_study_on_their_own_cores(tmp_path: Path, digits_onnx: Path, local_ray: None) -> None:
    study = _run(_config(tmp_path, digits_onnx, "two"))
    trials = study.trials
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    measured = [t for t in trials if "reused_from" not in t.user_attrs]
    assert {t.user_attrs["worker"] for t in measured} == {0, 1}
    workers = study.user_attrs["workers"]
    assert [len(w["cores"]) for w in workers] == [1, 1]
    assert set(workers[0]["cores"]).isdisjoint(workers[1]["cores"])
    # Trials overlapped in time: the two workers measured in parallel.
    spans = sorted((t.datetime_start, t.datetime_complete) for t in measured)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def _kill_measured_server(actor_pid: int) -> None:
    """SIGKILLs the worker's server while perf_analyzer measures it; returns once that perf_analyzer is gone."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        loads = [child for child in psutil.Process(actor_pid).children() if child.name() == "perf_analyzer"]
        if loads:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("no perf_analyzer under the worker")
    _server_of(actor_pid).send_signal(signal.SIGKILL)
    psutil.wait_procs(loads, timeout=60)


def test_a_killed_server_is_restarted_and_the_config_measured_again(
    tmp_path: Path, digits_onnx: Path, local_ray: None
) -> None:
    victims: dict[str, int] = {}

    def kill_servers(runner: StudyRunner) -> None:
        victims["once"] = _wait_busy(runner, after_trial=1)
        victims["nice"] = _server_of(runner.pool.status[0].pid).nice()  # Ray's workers run at nice 15 unless told
        _kill_measured_server(runner.pool.status[0].pid)
        victims["twice"] = _wait_busy(runner, after_trial=victims["once"] + 1)
        for _ in range(2):  # the trial's server, then the one restarted for its second try
            _kill_measured_server(runner.pool.status[0].pid)

    study = _run(_config(tmp_path, digits_onnx, "server-killed", count=1, n_trials=4), kill_servers)
    assert victims["nice"] == 0, "a server measured at another niceness than a deployed one reads otherwise"
    once = study.trials[victims["once"]]
    assert once.state == TrialState.COMPLETE  # measured again on the restarted server, and it says so
    assert once.user_attrs["server_restarted"].startswith("tritonserver died during the trial: killed by SIGKILL")
    assert read_trial(once).server_restarted == once.user_attrs["server_restarted"], "as show, the report and the API read it"
    failed = study.trials[victims["twice"]]
    assert failed.state == TrialState.FAIL
    reason = failed.user_attrs["fail_reason"]
    assert reason.count("tritonserver died during the trial: killed by SIGKILL; last log line:") == 2
    assert "(and on the first try: tritonserver died" in reason
    assert not re.search(r"last log line: E\d{4} .*CudaDriverHelper", reason)  # start-up news, not why it died
    later = [t for t in study.trials if t.number > victims["twice"]]
    assert later and all(t.state == TrialState.COMPLETE for t in later)
    assert sum(t.state == TrialState.FAIL for t in study.trials) == 1


def test_dead_worker_trial_runs_again_elsewhere(tmp_path: Path, digits_onnx: Path, local_ray: None) -> None:
    victim: dict[str, int] = {}

    def kill_actor(runner: StudyRunner) -> None:
        victim["trial"] = _wait_busy(runner, worker=1, after_trial=1)
        victim["pid"] = runner.pool.status[1].pid
        time.sleep(1.0)
        os.kill(victim["pid"], signal.SIGKILL)

    cfg = _config(tmp_path, digits_onnx, "actor-killed", n_trials=4)
    store = Store(cfg.storage)
    runner = StudyRunner(cfg, store)
    threading.Thread(target=kill_actor, args=(runner,), daemon=True).start()
    runner.run()
    study = optuna.load_study(study_name=cfg.study, storage=cfg.storage)
    assert all(t.state == TrialState.COMPLETE for t in study.trials), [t.user_attrs for t in study.trials]
    assert len(study.trials) == 4
    assert runner.pool.status[1].pid != victim["pid"], "the dead worker was replaced"
    assert not psutil.pid_exists(victim["pid"]) or psutil.Process(victim["pid"]).status() == psutil.STATUS_ZOMBIE


@pytest.mark.serial  # its 12 s trial timeout must not catch a healthy trial slowed by other tests' load
def test_hung_trial_is_stopped_after_the_timeout(tmp_path: Path, digits_onnx: Path, local_ray: None) -> None:
    victim: dict[str, int] = {}

    def freeze_server(runner: StudyRunner) -> None:
        victim["trial"] = _wait_busy(runner, after_trial=1)
        time.sleep(0.5)
        server = _server_of(runner.pool.status[0].pid)
        victim["server"] = server.pid
        server.send_signal(signal.SIGSTOP)

    cfg = _config(tmp_path, digits_onnx, "hung", count=1, n_trials=3, load={"trial_timeout_s": 12})
    started = time.monotonic()
    study = _run(cfg, freeze_server)
    hung = study.trials[victim["trial"]]
    assert hung.state == TrialState.FAIL and "timed out after 12 s" in hung.user_attrs["fail_reason"]
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 2
    assert not psutil.pid_exists(victim["server"]) or psutil.Process(victim["server"]).status() == psutil.STATUS_ZOMBIE
    assert time.monotonic() - started < 120


def test_trials_run_on_both_nodes_of_a_cluster(tmp_path: Path, digits_onnx: Path) -> None:
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        cfg = _config(tmp_path, digits_onnx, "cluster", n_trials=2, workers={"ray_address": cluster.address})
        study = _run(cfg)
        assert all(t.state == TrialState.COMPLETE for t in study.trials)
        nodes = {w["node"] for w in study.user_attrs["workers"]}
        assert len(nodes) == 2, nodes
        assert {t.user_attrs["worker"] for t in study.trials if "worker" in t.user_attrs} == {0, 1}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def test_a_config_is_measured_once_even_when_proposed_twice_at_once(
    tmp_path: Path, digits_onnx: Path, local_ray: None
) -> None:
    cfg = _config(tmp_path, digits_onnx, "twins", n_trials=5, search={
        "sampler": "random", "space": {"max_batch_size": 4, "dynamic_batching": False, "instance_count": [1, 2]}})
    study = _run(cfg)
    assert len(study.trials) == 5 and all(t.state == TrialState.COMPLETE for t in study.trials)
    measured = [t for t in study.trials if "reused_from" not in t.user_attrs]
    keys = [t.user_attrs["spec_key"] for t in measured]
    assert len(keys) == len(set(keys)) <= 2
    waited = 0
    for trial in study.trials:
        if "reused_from" in trial.user_attrs:
            source = study.trials[trial.user_attrs["reused_from"]]
            assert trial.values == source.values and trial.params == source.params
            waited += trial.datetime_start < source.datetime_complete
    assert waited, "no duplicate was proposed while its config was being measured"
