"""The commands that run studies: optimize, studies, show, models prepare, landscape record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from tuner.cli._app import (
    FileStorageOption,
    Interrupted,
    StorageOption,
    app,
    env_storage,
    landscape_app,
    models_app,
    open_store,
)
from tuner.errors import ConfigError

if TYPE_CHECKING:
    from tuner.config import StudyConfig
    from tuner.study import StudyPlan


@app.command()
def optimize(
    study_file: Annotated[Path, typer.Argument(help="The study YAML file.")],
    storage: FileStorageOption = None,
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
    from tuner.storage import Store, StudyLease, redact_url, refuse_if_driven
    from tuner.study import StudyRunner

    cfg = load_config(study_file)
    updates: dict[str, object] = {}
    storage = storage or env_storage()  # where a password can be kept off files and argv
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
    search: dict[str, object] = {}
    if replay:
        if not replay.is_file():
            raise ConfigError(f"--replay: landscape file {replay} does not exist")
        search["replay"] = replay.resolve()
    # into the study file the study stores: the API judges whether the study is complete by its n_trials
    if n_trials is not None:
        search["n_trials"] = n_trials
    if timeout is not None:
        search["timeout_s"] = timeout
    if search:
        updates["search"] = cfg.search.model_copy(update=search)
    cfg = cfg.model_copy(update=updates)
    refuse_if_driven(cfg.storage, cfg.study)  # before the preflight's seconds of work, which a second driver spares
    study_plan = _preflight(cfg)
    store = Store(cfg.storage)
    with StudyLease(store, cfg.study) as lease:  # before the study is opened: a second driver touches nothing
        runner = StudyRunner(cfg, store, plan=study_plan, lease=lease)
        total = n_trials or cfg.search.n_trials
        workers = study_plan.workers
        gpus = f", {workers.gpus_per_worker:g} GPU" if workers.on_gpu else ""
        display.console.print(
            f"study [bold]{cfg.study}[/] · model {cfg.model.name} · sampler {cfg.search.sampler} · "
            f"{_count(workers.count, f'{cfg.workers.backend} worker')} of {_count(workers.cpus_per_worker, 'core')}"
            f"{' each' if workers.count > 1 else ''}{gpus} · "
            f"storage {escape(redact_url(cfg.storage))}"
        )
        seeds = study_plan.seeds
        if not runner.study.trials:  # a study run again was told these at its start
            _print_notes(study_plan)
            if seeds is not None:
                display.console.print(
                    f"starting from {len(seeds.params)} config(s) of {', '.join(seeds.studies)}, "
                    "after the default config"
                )
        with display.study_progress(runner, cfg, total):
            summary = runner.run(n_trials=n_trials, timeout_s=timeout)
    display.print_summary(summary, cfg)
    if summary.interrupted:
        raise Interrupted("interrupted: the study is stored; run the same command to continue it")


def _count(n: float, thing: str) -> str:
    """``1 core``, ``2 cores``."""
    return f"{n:g} {thing}{'' if n == 1 else 's'}"


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
    from tuner.study import interrupted_trials

    store = open_store(storage)
    summaries = optuna.get_all_study_summaries(store.optuna, include_best_trial=False)
    if not summaries:
        display.console.print(f"no studies in {store.url}", markup=False)
        return
    table = Table(title=escape(f"studies in {store.url}"))
    columns = ("study", "trials", "complete", "failed", "pruned", "interrupted", "running", "waiting", "started")
    for column in (*columns, "objectives"):
        table.add_column(column)
    for summary in summaries:
        study = store.load_study(summary.study_name)
        trials = study.get_trials(deepcopy=False)
        states = [t.state for t in trials]
        interrupted = interrupted_trials(trials)
        started = summary.datetime_start.strftime("%Y-%m-%d %H:%M") if summary.datetime_start else ""
        table.add_row(
            escape(summary.study_name),  # a storage may hold studies that other tools named
            str(len(states)),
            str(states.count(TrialState.COMPLETE)),
            str(states.count(TrialState.FAIL) - interrupted),
            str(states.count(TrialState.PRUNED)),
            str(interrupted),
            str(states.count(TrialState.RUNNING)),
            str(states.count(TrialState.WAITING)),  # queued: they run when the study is run again
            started,
            escape(", ".join(study.metric_names or [])),
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
    from tuner.reports import stored_verifications, study_document
    from tuner.storage import no_trial, read_study
    from tuner.study import config_results, default_result, recommend

    store = open_store(storage)
    stored = read_study(store.load_study(study_name), store)
    document = study_document(stored)
    if trial is not None:
        matches = [t for t in document["trials"] if t["number"] == trial]
        if not matches:
            raise ConfigError(f"--trial: {no_trial(study_name, trial, len(document['trials']))}")
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
    display.console.print(display.configs_table(escape(title), results, rec, info.bounds))
    unmeasured = [t for t in stored.trials if not t.complete]
    if unmeasured:
        display.console.print(display.failed_table("trials not measured in full", unmeasured, study_name))
    verifications = stored_verifications(info)
    verified = rec is not None and any(v.config_key == rec.config.key for v in verifications)
    states = [t.state for t in stored.trials]
    display.print_recommendation(rec, default_result(results), info.metric_names, states, verified)
    if verifications:
        shown = verifications[-_SHOWN_VERIFICATIONS:]
        display.console.print(f"verified with `tuner verify` ({len(shown)} of {len(verifications)}, latest last):")
        for v in shown:
            display.console.print(
                f"  {v.when} trial {v.trial}: {v.line()}", highlight=False, markup=False, soft_wrap=True
            )


#: The latest verifications `tuner show` prints (--json and the report have every one).
_SHOWN_VERIFICATIONS = 5


@models_app.command("prepare")
def models_prepare(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Models to prepare (default: those that need no extra; minilm needs the transformer extra)."
        ),
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
    storage: FileStorageOption = None,
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
    storage = storage or env_storage()  # as `tuner optimize` takes it
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
            f"storage {escape(redact_url(cfg.storage))}"
        )
        _print_notes(study_plan)
        with display.study_progress(runner, cfg, total):
            landscape, summary = record_landscape(cfg, store, runner=runner)
    landscape.save(output)
    failed = sum(outcome.failed for outcome in landscape.outcomes.values())
    display.console.print(
        f"{len(landscape.outcomes)} of {total} configs ({failed} failed) written to {output}", markup=False
    )
    if summary.interrupted:
        raise Interrupted("interrupted: run the same command to measure the configs still missing")
