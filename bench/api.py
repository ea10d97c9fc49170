"""Latency of the API's `/pareto` and `/recommendation` on a study of 1,000 trials.

    python bench/api.py [--trials 1000] [--requests 400] [--clients 8] [--out bench/results/api.json]

For each storage (a SQLite file, and PostgreSQL at 127.0.0.1:5432 database `test`), writes a
study the way the tuner does (Optuna ask/tell with constraints, the measured curve through
Store.save_outcome), starts the real API (`tuner api`, uvicorn) on it, and sends each route's
requests from 8 concurrent HTTP clients, after a warm-up. Prints p50/p99 per route and storage,
once with the API's default ``TUNER_API_REFRESH_S`` (reads up to 0.5 s behind the database,
answered from memory in between) and once with 0 (every request reads the database).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.storage import Store
from tuner.trial import LoadPoint, TrialOutcome, TrialSpec

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CONCURRENCY = (1, 4, 8, 16)
P99_BUDGET_MS = 50.0
ROUTES = {
    "pareto": "/studies/{name}/pareto",
    "recommendation": "/studies/{name}/recommendation?max_p99_ms=40&min_throughput=100",
}


def measured_points(spec: TrialSpec, rng: random.Random) -> tuple[LoadPoint, ...]:
    """A plausible curve: throughput saturates with concurrency, latency grows past saturation."""
    per_instance = 70.0 * (1.0 + 0.4 * spec.dynamic_batching * min(spec.max_batch_size, 8) / 8)
    capacity = per_instance * min(spec.instance_count, 2) * (0.85 if spec.instance_count > 2 else 1.0)
    service_ms = 1000.0 / per_instance + spec.max_queue_delay_us / 1000.0 * spec.dynamic_batching
    points = []
    for c in CONCURRENCY:
        throughput = min(capacity, c * 1000.0 / service_ms) * rng.uniform(0.95, 1.05)
        p50 = c * 1000.0 / throughput
        points.append(LoadPoint(
            concurrency=c, throughput=throughput, latency_avg_ms=p50 * 1.05, latency_p50_ms=p50,
            latency_p90_ms=p50 * 1.3, latency_p95_ms=p50 * 1.45, latency_p99_ms=p50 * rng.uniform(1.6, 2.2),
            client_send_ms=0.02, client_recv_ms=0.03, server_queue_ms=max(0.0, p50 - service_ms),
            server_compute_input_ms=0.05, server_compute_infer_ms=service_ms, server_compute_output_ms=0.04,
            stable=rng.random() > 0.05,
        ))
    return tuple(points)


def write_study(store: Store, name: str, n_trials: int, seed: int = 0) -> None:
    """A finished study of ``n_trials`` trials, ~5% of them FAIL, as the tuner stores one."""
    rng = random.Random(seed)
    study = optuna.create_study(
        study_name=name, storage=store.optuna, directions=["maximize", "minimize"],
        sampler=optuna.samplers.RandomSampler(seed=seed),
    )
    study.set_metric_names(["throughput", "latency_p99_ms"])
    study.set_user_attr("study_file", {
        "study": name, "search": {"n_trials": n_trials},
        "objectives": [{"metric": "throughput", "direction": "maximize"},
                       {"metric": "latency_p99_ms", "direction": "minimize"}],
        "constraints": {"latency_p99_ms": {"max": P99_BUDGET_MS}},
    })
    study.set_user_attr("workers", [{"index": 0, "node": platform.node(), "cores": [0, 1]}])
    for _ in range(n_trials):
        trial = study.ask()
        batching = trial.suggest_categorical("dynamic_batching", [False, True])
        spec = TrialSpec(
            max_batch_size=trial.suggest_categorical("max_batch_size", [1, 4, 8, 16, 32]),
            dynamic_batching=batching,
            max_queue_delay_us=trial.suggest_int("max_queue_delay_us", 0, 20000, step=100) if batching else 0,
            instance_count=trial.suggest_int("instance_count", 1, 4),
        )
        config = f'name: "digits_forest"\nmax_batch_size: {spec.max_batch_size}\n'
        if rng.random() < 0.05:
            store.save_outcome(name, trial._trial_id, trial.number, TrialOutcome(spec, config, error="load failed"))
            trial.set_user_attr("fail_reason", "load failed")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        points = measured_points(spec, rng)
        store.save_outcome(name, trial._trial_id, trial.number, TrialOutcome(spec, config, points=points))
        within = [p for p in points if p.latency_p99_ms <= P99_BUDGET_MS]
        point = max(within, key=lambda p: p.throughput) if within else min(points, key=lambda p: p.latency_p99_ms)
        trial.set_user_attr("metrics", point.as_dict())
        trial.set_constraint("latency_p99_ms", point.latency_p99_ms - P99_BUDGET_MS)
        study.tell(trial, [point.throughput, point.latency_p99_ms])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_api(url: str, port: int, folder: Path, refresh_s: float | None = None) -> subprocess.Popen[bytes]:
    """`tuner api` on the storage, its output in FOLDER/api-PORT.log; returns once /healthz answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNER_API_")}
    env["TUNER_API_WORK_DIR"] = str(folder / "api")
    if refresh_s is not None:
        env["TUNER_API_REFRESH_S"] = str(refresh_s)
    log = folder / f"api-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tuner.cli", "api", "--storage", url, "--port", str(port)],
            cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the API exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the API did not start within 60 s:\n{log.read_text()}")


def hammer(base: str, path: str, requests: int, clients: int) -> list[float]:
    """Latencies (ms) of ``requests`` GETs of ``path`` sent by ``clients`` threads, each its own client."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                start = time.perf_counter()
                response = http.get(path)
                elapsed = (time.perf_counter() - start) * 1000.0
                if response.status_code != 200:
                    with lock:
                        errors.append(f"{path}: {response.status_code} {response.text[:200]}")
                    return
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(errors[0])
    return latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def bench_storage(kind: str, url: str, folder: Path, args: argparse.Namespace) -> dict:
    name = f"bench-api-{uuid.uuid4().hex[:8]}"
    store = Store(url)
    start = time.perf_counter()
    write_study(store, name, args.trials)
    written_s = time.perf_counter() - start
    print(f"{kind}: wrote {args.trials} trials in {written_s:.1f} s", flush=True)
    results: dict = {"storage": kind, "trials": args.trials, "write_s": round(written_s, 1), "runs": []}
    try:
        for refresh_s in (None, 0.0):
            results["runs"].append(bench_api(kind, url, folder, name, refresh_s, args))
    finally:
        store.delete_study(name)
        store.close()
    return results


def bench_api(kind: str, url: str, folder: Path, name: str, refresh_s: float | None, args: argparse.Namespace) -> dict:
    """Starts the API with the given TUNER_API_REFRESH_S (None: its default) and times each route."""
    port = free_port()
    api = start_api(url, port, folder, refresh_s)
    base = f"http://127.0.0.1:{port}"
    label = "default" if refresh_s is None else f"{refresh_s:g}"
    # The clients' own process holds the study it wrote: keep its collector from pausing the clients.
    gc.collect()
    gc.freeze()
    run: dict = {"refresh_s": label, "routes": {}}
    try:
        for route, template in ROUTES.items():
            path = template.format(name=name)
            hammer(base, path, args.clients * 5, args.clients)  # warm-up: the API opens the study
            start = time.perf_counter()
            latencies = hammer(base, path, args.requests, args.clients)
            elapsed = time.perf_counter() - start
            figures = {
                "requests": len(latencies),
                "per_s": round(len(latencies) / elapsed, 1),
                "p50_ms": round(percentile(latencies, 50), 2),
                "p99_ms": round(percentile(latencies, 99), 2),
                "max_ms": round(max(latencies), 2),
            }
            run["routes"][route] = figures
            print(f"{kind:<10} refresh {label:<8} {route:<15} p50 {figures['p50_ms']:7.2f} ms  "
                  f"p99 {figures['p99_ms']:7.2f} ms  {figures['per_s']:6.1f} req/s", flush=True)
    finally:
        api.terminate()
        api.wait(timeout=30)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000, help="Per route, storage and setting.")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--storage", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "api.json")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.storage in ("sqlite", "both"):
            runs.append(bench_storage("sqlite", f"sqlite:///{folder / 'bench.db'}", folder, args))
        if args.storage in ("postgresql", "both"):
            runs.append(bench_storage("postgresql", POSTGRES_URL, folder, args))
    document = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "clients": args.clients,
        "results": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
