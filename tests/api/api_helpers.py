"""Helpers of the API tests: a `tuner api` server process and the studies the tests read."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import factories
import httpx
import optuna
import pytest

from tuner.storage import ATTR_METRICS, ATTR_REMEASURE_OF, ATTR_REUSED_FROM, ATTR_SPEC_KEY, Store, read_study
from tuner.trial import LoadPoint, TrialOutcome, TrialSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TOKEN = "test-token-0123456789abcdef"
TUNER = [sys.executable, "-m", "tuner.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique(prefix: str) -> str:
    """A study name no other test (or earlier run on the shared PostgreSQL) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 180) -> None:
    """Waits until GET url answers 200, failing the test if the process exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"{url} did not answer within {timeout_s:.0f} s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes] | None, timeout_s: float = 90) -> None:
    """SIGTERM (uvicorn then stops the runs it started), then SIGKILL after ``timeout_s``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@dataclass
class ApiServer:
    """A `tuner api` process on a storage, started in ``folder``; ``env`` adds TUNER_API_* settings; ``verbose``
    logs INFO lines; ``own_paths`` False leaves its work folder and study root to their defaults."""

    storage: str
    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    verbose: bool = False
    own_paths: bool = True
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNER_API_")}
        if self.own_paths:
            env.update({"TUNER_API_WORK_DIR": str(self.folder / "api-work"), "TUNER_API_STUDY_ROOT": str(REPO_ROOT)})
        # tests post studies that no test times, and some leave theirs running for the next to read
        env.update({"TUNER_API_REFRESH_S": "0", "TUNER_API_MAX_RUNS": "8", **self.env})
        self.log = self.folder / f"api-{self.port}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*TUNER, *(["-v"] if self.verbose else []), "api", "--storage", self.storage, "--port", str(self.port)],
                cwd=self.folder, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        wait_for(f"{self.url}/healthz", self.process, self.log)
        return self

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def stop(self) -> None:
        stop(self.process)


def digits_study(name: str, onnx: Path, n_trials: int = 3) -> dict:
    """A short digits_forest study file (small windows: a trial takes a few seconds), at two loads.

    The model path is relative: the API takes it from its study root, the repository.
    """
    return factories.digits_study(name, str(onnx.relative_to(REPO_ROOT)), n_trials,
                                  load=factories.QUICK_LOAD | {"concurrency": [1, 2]})


@dataclass
class RealStudy:
    """A study started over HTTP and run to its end, with what was read while it ran."""

    server: ApiServer
    name: str
    started: dict
    during: list[tuple[str, int]]  # (path, status) of every read while it ran
    states_seen: set[str]
    running_trials_seen: int


#: Trial i of the small study: (throughput, p99) at concurrency 1, 2 and 4.
SMALL_CURVES = [
    [(100.0 + 10 * i, 5.0 + i), (180.0 + 10 * i, 9.0 + i), (220.0 + 10 * i, 30.0 + 2 * i)] for i in range(10)
]
BUDGET_MS = 25.0


def write_small_study(store: Store, name: str) -> None:
    """10 COMPLETE trials (judged at their best point under a 25 ms p99), then one FAIL and one RUNNING."""
    study = optuna.create_study(study_name=name, storage=store.optuna, directions=["maximize", "minimize"])
    study.set_metric_names(["throughput", "latency_p99_ms"])
    study.set_user_attr("study_file", {
        "study": name, "search": {"n_trials": 12}, "storage": "postgresql+psycopg://tuner:s3cret@db.example/tuner",
        "objectives": [{"metric": "throughput", "direction": "maximize"},
                       {"metric": "latency_p99_ms", "direction": "minimize"}],
        "constraints": {"latency_p99_ms": {"max": BUDGET_MS}},
    })
    study.set_user_attr("workers", [{"index": 0, "node": "test-node", "cores": [0, 1]}])
    study.set_user_attr("worker_cores", 2)
    distributions = {"max_batch_size": optuna.distributions.IntDistribution(1, 32),
                     "instance_count": optuna.distributions.IntDistribution(1, 4)}
    for i, curve in enumerate(SMALL_CURVES):
        # Ten configs of their own: trials of one config would be one result, judged by their median.
        study.enqueue_trial({"max_batch_size": i + 1, "instance_count": 1 + i % 4})
        trial = study.ask(distributions)
        spec = TrialSpec(max_batch_size=trial.params["max_batch_size"], dynamic_batching=False,
                         max_queue_delay_us=0, instance_count=trial.params["instance_count"])
        points = tuple(
            LoadPoint(concurrency=c, throughput=t, latency_avg_ms=p / 2, latency_p50_ms=p / 2, latency_p90_ms=p * 0.8,
                      latency_p95_ms=p * 0.9, latency_p99_ms=p, server_queue_ms=0.1 * i, server_compute_infer_ms=1.0)
            for c, (t, p) in zip((1, 2, 4), curve)
        )
        config = f'name: "m{i}"\nmax_batch_size: {spec.max_batch_size}\n'
        store.save_outcome(name, trial._trial_id, trial.number, TrialOutcome(spec, config, points=points))
        judged = max((p for p in points if p.latency_p99_ms <= BUDGET_MS), key=lambda p: p.throughput)
        trial.set_user_attr("metrics", judged.as_dict())
        trial.set_user_attr(ATTR_SPEC_KEY, spec.key())
        trial.set_user_attr("accuracy", {"accuracy_drop": 0.0})
        trial.set_constraint("latency_p99_ms", judged.latency_p99_ms - BUDGET_MS)
        study.tell(trial, [judged.throughput, judged.latency_p99_ms])
    failed = study.ask()
    failed.set_user_attr("fail_reason", "Triton refused the config")
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    study.ask()  # left RUNNING


#: The loads of the re-measured study: (config, throughput, p99 ms, what the trial is).
#: Config "a" (2 instances) has the best single load (trial 4, 150 infer/s) but the worse median
#: (102); "b" (1 instance) leads by its median (121), and "a" does not tie with it: though their
#: intervals overlap, a's median lies below b's loads. "c" is dominated by "b", "d" breaks the 25 ms budget by 5 ms (+20%),
#: trial 8 copies trial 2's result (no load of its own) and trial 9 failed.
REMEASURED_CONFIGS = {
    "a": TrialSpec(max_batch_size=8, dynamic_batching=False, max_queue_delay_us=0, instance_count=2),
    "b": TrialSpec(max_batch_size=8, dynamic_batching=False, max_queue_delay_us=0, instance_count=1),
    "c": TrialSpec(max_batch_size=16, dynamic_batching=False, max_queue_delay_us=0, instance_count=1),
    "d": TrialSpec(max_batch_size=16, dynamic_batching=False, max_queue_delay_us=0, instance_count=2),
}
REMEASURED_LOADS: list[tuple[str, float, float, dict[str, int]]] = [
    ("a", 100.0, 8.0, {}), ("b", 120.0, 12.0, {}), ("c", 110.0, 20.0, {}), ("d", 130.0, 30.0, {}),
    ("a", 150.0, 8.0, {ATTR_REMEASURE_OF: 0}), ("a", 102.0, 9.0, {ATTR_REMEASURE_OF: 0}),
    ("b", 121.0, 12.0, {ATTR_REMEASURE_OF: 1}), ("b", 122.0, 13.0, {ATTR_REMEASURE_OF: 1}),
    ("c", 110.0, 20.0, {ATTR_REUSED_FROM: 2}),
]


def _remeasured_trial(config: str, throughput: float, p99: float, flags: dict[str, int]) -> optuna.trial.FrozenTrial:
    spec = REMEASURED_CONFIGS[config]
    distributions = {"max_batch_size": optuna.distributions.IntDistribution(1, 32),
                     "instance_count": optuna.distributions.IntDistribution(1, 4)}
    point = LoadPoint(concurrency=2, throughput=throughput, latency_avg_ms=p99 / 2, latency_p50_ms=p99 / 2,
                      latency_p90_ms=p99 * 0.8, latency_p95_ms=p99 * 0.9, latency_p99_ms=p99)
    return optuna.trial.create_trial(
        values=[throughput, p99],
        params={"max_batch_size": spec.max_batch_size, "instance_count": spec.instance_count},
        distributions=distributions,
        user_attrs={ATTR_METRICS: point.as_dict(), ATTR_SPEC_KEY: spec.key(), **flags},
        constraints={"latency_p99_ms": p99 - BUDGET_MS},
    )


def write_remeasured_study(store: Store, name: str) -> None:
    """The loads of ``REMEASURED_LOADS`` (trials 0-8) and one FAIL (9), with the tuner's rows for each load."""
    study = optuna.create_study(study_name=name, storage=store.optuna, directions=["maximize", "minimize"])
    study.set_metric_names(["throughput", "latency_p99_ms"])
    study.set_user_attr("study_file", {
        "study": name, "search": {"n_trials": 6},
        "objectives": [{"metric": "throughput", "direction": "maximize"},
                       {"metric": "latency_p99_ms", "direction": "minimize"}],
        "constraints": {"latency_p99_ms": {"max": BUDGET_MS}},
    })
    add_loads(store, study, REMEASURED_LOADS)
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))


def add_loads(store: Store, study: optuna.Study, loads: list[tuple[str, float, float, dict[str, int]]]) -> None:
    """COMPLETE trials of ``REMEASURED_CONFIGS``, as the tuner stores them: Optuna's trial and the tuner's rows."""
    first = len(study.get_trials(deepcopy=False))
    study.add_trials([_remeasured_trial(*load) for load in loads])
    for trial, (config, *_) in zip(read_study(study).trials[first:], loads):
        spec = REMEASURED_CONFIGS[config]
        text = f'name: "{config}"\nmax_batch_size: {spec.max_batch_size}\n'
        assert trial.point is not None
        store.save_outcome(study.study_name, trial.trial_id, trial.number, TrialOutcome(spec, text, points=(trial.point,)))
