"""The commands on what a study gives: report, export, compare, serve, verify, and the API and dashboard servers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from tuner.cli._app import StorageOption, app, err_console, open_store, storage_url
from tuner.errors import ConfigError, ExitCode


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

    if fmt not in ("html", "png"):
        raise ConfigError(f"--format: {fmt!r} is not one of html, png")
    store = open_store(storage)
    data = gather(store.load_study(study_name), store)
    if fmt == "png":
        from tuner.reports import write_pngs

        for path in write_pngs(data, output or Path(f"{study_name}-report")):
            display.console.print(f"wrote {path}", markup=False)
        return
    from tuner.reports import write_html

    display.console.print(f"wrote {write_html(data, output or Path(f'{study_name}-report.html'))}", markup=False)


@app.command("export")
def export_command(
    study_name: Annotated[str, typer.Argument(metavar="STUDY", help="Study name.")],
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="The model repository folder to write.")],
    storage: StorageOption = None,
    trial: Annotated[int | None, typer.Option("--trial", min=0, help="Export this trial.")] = None,
    max_p99_ms: Annotated[
        float | None,
        typer.Option(
            "--max-p99-ms",
            min=0,
            help="Export the config with the highest median throughput whose median p99 is within this limit.",
        ),
    ] = None,
) -> None:
    """Write a deployable model repository of a trial (by default the recommended one), with a README."""
    from tuner.cli import _display as display
    from tuner.reports import export_trial

    if trial is not None and max_p99_ms is not None:
        raise ConfigError("--trial and --max-p99-ms: give one of them")
    store = open_store(storage)
    exported = export_trial(store.load_study(study_name), store, out_dir, number=trial, max_p99_ms=max_p99_ms)
    point, config = exported.point, exported.config
    loads = ""
    median = config.metric("throughput") if config is not None and len(config.loads) > 1 else None
    # the study judged the config by its loads' median, which this load may not be
    if config is not None and median is not None and f"{median:.4g}" != f"{point.throughput:.4g}":
        loads = f" (this load; the config's median over {len(config.loads)} loads: {median:.4g} infer/s)"
    if config is not None and not config.feasible:  # asked for by --trial: exported, and said
        loads += "; infeasible under the study's constraints, as its README says"
    display.console.print(
        f"exported trial {exported.trial} to {exported.model_dir}: {point.throughput:.4g} infer/s, "
        f"p99 {point.latency_p99_ms:.3g} ms at concurrency {point.concurrency}{loads}; see {out_dir / 'README.md'}",
        markup=False,
        soft_wrap=True,  # one line, for scripts
    )


@app.command("compare")
def compare_command(
    study_a: Annotated[str, typer.Argument(metavar="STUDY_A", help="The first study (the baseline).")],
    study_b: Annotated[str, typer.Argument(metavar="STUDY_B", help="The second study.")],
    storage: StorageOption = None,
    storage_b: Annotated[
        str | None, typer.Option("--storage-b", help="Storage of STUDY_B where it differs (default: --storage).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Two studies' Pareto fronts and recommendations side by side (CPU against GPU, before and after)."""
    from tuner.cli import _display as display
    from tuner.reports import comparison, comparison_json, gather

    store_a = open_store(storage)
    store_b = open_store(storage_b) if storage_b else store_a
    a = gather(store_a.load_study(study_a), store_a, importances=False)
    b = gather(store_b.load_study(study_b), store_b, importances=False)
    if as_json:
        print(json.dumps(comparison_json(a, b), indent=2))
        return
    for renderable in comparison(a, b):
        display.console.print(renderable)


HostOption = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOption = Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")]


def _refuse_used_port(host: str, port: int) -> None:
    """A port another process listens on is one error line, not a server's traceback."""
    from tuner.triton import port_is_free

    if ":" not in host and not port_is_free(port, host):  # IPv6 addresses: left to the server
        raise ConfigError(f"--port: port {port} is already in use on {host}")


@app.command()
def api(
    storage: StorageOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
) -> None:
    """Serve the REST API on a storage (settings: $TUNER_API_TOKEN, $TUNER_API_READ_TOKEN_REQUIRED, ...)."""
    from api import ApiSettings, serve

    _refuse_used_port(host, port)
    serve(ApiSettings.from_env(storage_url(storage)), host=host, port=port)


@app.command()
def dashboard(
    storage: StorageOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8080,
) -> None:
    """Serve optuna-dashboard on a storage, with each study's metric names set."""
    from api.dashboard import serve_dashboard
    from tuner.storage import Store

    _refuse_used_port(host, port)
    serve_dashboard(Store(storage_url(storage)), host=host, port=port)


@app.command("serve")
def serve_command(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER", help="A model repository, as `tuner export` writes.")],
    host: HostOption = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65533, help="HTTP port; gRPC and metrics take the next two.")
    ] = 8000,
) -> None:
    """Serve a model repository (an export) on the embedded Triton server, as the study measured it, until Ctrl-C."""
    from tuner.cli import _display as display
    from tuner.triton import Ports, serve_repository

    ports = Ports(port, port + 1, port + 2)
    for used in (ports.http, ports.grpc, ports.metrics):
        _refuse_used_port(host, used)

    def ready(models: list[str]) -> None:
        display.console.print(
            f"serving {', '.join(models)} from {folder}: HTTP {host}:{ports.http}, gRPC {host}:{ports.grpc}, "
            f"metrics {host}:{ports.metrics}; Ctrl-C stops it",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip

    try:
        serve_repository(folder, host, ports, ready)
    except KeyboardInterrupt:  # how a server is stopped: not an error
        display.console.print("stopped", highlight=False)


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
    config's interval or within 10% of its stored median, and the study's bounds on latency and
    throughput hold by the runs' medians); 1: it does not; 2: bad input; 3: the server,
    perf_analyzer or the storage failed, or it did not hold on runs that shared the CPU with other
    processes (inconclusive: run it again on a quiet machine).
    """
    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from tuner.cli import _display as display
    from tuner.reports import record, verify_study
    from tuner.storage import live_driver

    store = open_store(storage)
    study = store.load_study(study_name)
    driver = live_driver(store, study_name)
    if driver is not None:  # its trials would share the cores with the measurement
        raise ConfigError(f"study {study_name!r} is being run by {driver.describe(time.time())}: verify it after")
    steps = {"export": "exporting the config", "server": "starting a fresh server"}
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    # Where no one watches a terminal (the API's runs, CI), each step is a line of the log instead.
    live = err_console.is_terminal
    with Progress(*columns, console=err_console, transient=True, disable=not live) as progress:
        task = progress.add_task(escape(f"verifying {study_name}"))

        def show(step: str) -> None:
            text = escape(f"{study_name}: {steps.get(step, step)}")
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
    display.console.print(verification.line(), highlight=False, markup=False, soft_wrap=True)
    if verification.inconclusive:  # the machine may be to blame: measure again once it is quiet
        raise typer.Exit(ExitCode.ENVIRONMENT)
    raise typer.Exit(ExitCode.OK if verification.holds else ExitCode.DOES_NOT_HOLD)
