"""What the `tuner` commands print: progress while a study runs, tables of configs, one trial in full."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from tuner.config import StudyConfig
from tuner.pool import Pool
from tuner.reports import params_text, step_compute_ms
from tuner.storage import Bounds, StoredTrial, read_trial
from tuner.study import (
    ConfigResult,
    Recommendation,
    RunSummary,
    StudyRunner,
    TrialEvent,
    baseline_doubt,
    gain,
    interrupted_trials,
    nearest_misses,
    nothing_measured,
)

# Outside a terminal (CI logs, pipes) rich would wrap at 80 columns; tables read better wider.
console = Console(width=None if sys.stdout.isatty() else 160)


@contextmanager
def study_progress(runner: StudyRunner, cfg: StudyConfig, total: int | None) -> Iterator[None]:
    """Shows the study's progress and every worker's while the block runs the runner."""
    with progress() as bar:
        task = bar.add_task("starting workers and their Triton servers", total=total, best="")
        screen = StudyDisplay(bar, task, cfg)

        def on_event(event: TrialEvent) -> None:
            screen.runner_pool = runner.pool
            screen.show(event)

        runner.on_event = on_event
        try:
            yield
        finally:
            screen.forget_workers()  # the last frame stays on screen: the study's bar, not idle workers
            if not screen.shown:  # a study with nothing left to measure started nothing
                bar.remove_task(task)


def progress() -> Progress:
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


class StudyDisplay:
    """The progress of a study: one bar for the study, one line for each worker."""

    def __init__(self, progress: Progress, task: TaskID, cfg: StudyConfig) -> None:
        self.progress = progress
        self.task = task
        self.cfg = cfg
        self.workers: dict[int, TaskID] = {}
        self.params: dict[int, dict] = {}
        self.runner_pool: Pool | None = None  # the study's pool once it runs; its workers' lines follow it
        self.shown = False  # whether any trial event came

    def show(self, event: TrialEvent) -> None:
        self.shown = True
        progress = self.progress
        # The phase sets the bar: trials of the budget while searching, then the loads planned to confirm.
        progress.update(self.task, description=event.phase, total=event.total, completed=event.done)
        if event.kind == "started":
            self.params[event.number] = event.params
        else:
            trial = event.trial
            assert trial is not None
            progress.update(self.task, best=best_text(event.best, self.cfg))
            progress.console.print(
                f"  trial {trial.number:>3} {params_text(trial.params):<48} {result_text(trial, self.cfg)}"
            )
        self._show_workers()

    def forget_workers(self) -> None:
        """Takes the workers' lines off the display."""
        for task in self.workers.values():
            self.progress.remove_task(task)
        self.workers.clear()

    def _show_workers(self) -> None:
        pool = self.runner_pool
        statuses = pool.status if pool is not None else []
        for status in statuses:
            if status.index not in self.workers:
                self.workers[status.index] = self.progress.add_task("", total=None, best="")
            now = (
                "idle"
                if status.ticket is None
                else (f"trial {status.ticket}: {params_text(self.params.get(status.ticket, {}))}")
            )
            cores = ",".join(map(str, status.cores))
            self.progress.update(
                self.workers[status.index],
                description=escape(f"  worker {status.index} [{status.node} cores {cores}] {now}"),
                best=f"{status.done} done, {status.failed} failed",
            )


def result_text(trial: FrozenTrial, cfg: StudyConfig) -> str:
    """One finished trial in a line, in rich's markup: its objectives and what to know about the load. A
    reason is an error's own text, escaped: brackets in it ("[/tmp/model.onnx]") are not markup."""
    stored = read_trial(trial)
    study = cfg.study if cfg is not None else None
    if stored.pruned:
        return f"[yellow]PRUNED[/] {escape(brief(stored.pruned_reason or '', study, trial.number))}"
    if not stored.complete:
        return f"[red]FAIL[/] {escape(brief(stored.fail_reason or '', study, trial.number))}"
    metrics = stored.metrics
    text = ", ".join(f"{o.metric} {metrics.get(o.metric, float('nan')):.4g}" for o in cfg.objectives)
    point, levels = stored.point, cfg.load.concurrency
    if point and (levels == "auto" or len(levels) > 1):
        text += f" at concurrency {point.concurrency}"
    flags = []
    if not stored.feasible:
        flags.append("[yellow]infeasible[/]")
    if stored.reused_from is not None:
        flags.append(f"reused from {stored.reused_from}")
    if stored.remeasure_of is not None:
        flags.append(f"again of {stored.remeasure_of}")
    if stored.server_restarted:
        flags.append("[yellow]server restarted[/]")
    if metrics.get("stable") is False:
        flags.append("[yellow]unstable[/]")
    if metrics.get("contaminated"):
        flags.append("[yellow]contaminated[/]")
    if metrics.get("loadgen_saturated"):
        flags.append("[yellow]load generator saturated[/]")
    return " ".join([text, *flags])


def best_text(best: Recommendation | None, cfg: StudyConfig) -> str:
    if best is None:
        return "no feasible trial yet"
    metric = cfg.objectives[0].metric
    return f"best: trial {best.number}, {metric} {best.config.values[0]:.4g}"


def print_summary(summary: RunSummary, cfg: StudyConfig) -> None:
    trials = summary.study.trials
    states = [t.state for t in trials]
    interrupted = interrupted_trials(trials)
    counts = [
        (states.count(TrialState.COMPLETE), "complete"),
        (states.count(TrialState.FAIL) - interrupted, "failed"),
        (states.count(TrialState.PRUNED), "stopped after their screen (pruned)"),
        (interrupted, "interrupted (not counted against n_trials)"),
        (states.count(TrialState.WAITING), "waiting to run"),
    ]
    shown = [f"{n} {what}" for i, (n, what) in enumerate(counts) if n or i < 2]
    console.print(f"\n{len(states)} trials: {', '.join(shown)}")
    if summary.stopped:
        console.print(summary.stopped)
    if summary.nothing_left:
        budget = summary.stored.counted()
        console.print(
            f"nothing left to measure: the study has its {budget} trials (--n-trials above {budget} extends it)"
        )
    if not summary.pareto:
        if summary.interrupted:  # the constraints are not to blame for what the run had no time to measure
            console.print("no feasible config measured yet")
            return
        if (nothing := nothing_measured(states)) is not None:
            console.print(f"[yellow]{nothing}[/]")
            return
        console.print(
            "[yellow]no feasible trial: no config held the constraints by the median of its loads; "
            "loosen the constraints or widen the search space[/]"
        )
        nearest = nearest_misses(summary.results, summary.stored.info.bounds, summary.stored.trials)
        for near in nearest:
            console.print(f"  {near.miss.metric}: no config held it; {near.text()}", highlight=False, markup=False)
        if not nearest:
            console.print("  each constraint held in some config, but no config held them all")
        return
    bounds = summary.stored.info.bounds
    rec = summary.recommendation
    rows, title = summary.pareto, "Pareto front (feasible configs, by the median of their loads)"
    if rec is not None and all(result.key != rec.config.key for result in rows):
        # a config that ties with a front config and is cheaper: the recommendation, off the front
        rows, title = [*rows, rec.config], f"{title}, and the recommended config"
    console.print(configs_table(title, rows, rec, bounds))
    print_recommendation(rec, summary.default, [o.metric for o in cfg.objectives])


def print_recommendation(
    rec: Recommendation | None,
    default: ConfigResult | None,
    metrics: Sequence[str],
    states: Sequence[TrialState] = (),
    verified: bool = False,
) -> None:
    """The recommended config, why, and its gain over the default config (by medians); ``states``, those of the
    study's trials, say why there is none where none was measured; ``verified``: `tuner verify` measured the
    config again (no need to say it could)."""
    if rec is None:
        nothing = nothing_measured(states)
        console.print(f"[yellow]{nothing or 'no feasible config: loosen the constraints or widen the search space'}[/]")
        return
    point = rec.config.representative.point
    at = f" at concurrency {point.concurrency}" if point else ""
    console.print(f"recommended: trial {rec.number} {params_text(rec.config.params)}{at}")
    console.print(f"  {rec.reason}", highlight=False, markup=False)
    if len(rec.config.loads) == 1 and not verified:
        console.print(
            "  measured on one load: a fresh load can differ by more than its windows did; "
            "`tuner verify` measures it again on fresh loads",
            highlight=False, markup=False, soft_wrap=True,
        )  # fmt: skip
    if default is not None and default.key != rec.config.key:
        parts = []
        for metric in metrics:
            ratio = gain(rec.config, default, metric)
            if ratio is not None:
                parts.append(f"{metric} x{ratio:.2f}")
        theirs = default.representative.point
        where = f"trial {default.number}"
        if point and theirs and theirs.concurrency != point.concurrency:  # each is judged where its study chose
            where += f", judged at concurrency {theirs.concurrency}; this one at {point.concurrency}"
        console.print(f"  vs the default config ({where}): " + ", ".join(parts))
        if default.doubts:
            console.print(f"  {baseline_doubt(default)}", highlight=False, markup=False)


#: The columns of a configs table: header, the metric whose median it shows (None: not a metric).
_CONFIG_COLUMNS = (
    ("trial", None),
    ("params", None),
    ("infer/s", "throughput"),
    ("p50 ms", "latency_p50_ms"),
    ("p99 ms", "latency_p99_ms"),
    ("queue ms", "server_queue_ms"),
    ("infer ms", "server_compute_infer_ms"),
    ("loads", None),
    ("note", None),
)


def configs_table(
    title: str,
    results: Sequence[ConfigResult],
    rec: Recommendation | None = None,
    bounds: Bounds | None = None,
) -> Table:
    """One row per config: the trial that stands for it, the medians of its loads, how many and how far apart.

    The note names each failed constraint and by how much; it wraps rather than being cut.
    """
    table = Table(title=title)
    # Every column may wrap: a column that may not pushes the table past a narrow terminal, which crops the note.
    for header, metric in _CONFIG_COLUMNS:
        if header == "note":
            table.add_column(header, min_width=16, overflow="fold")
        elif header == "params":
            table.add_column(header, overflow="fold")
        else:
            table.add_column(header, justify="right" if metric or header == "trial" else "left", overflow="fold")
    # where configs were judged at different concurrencies, a throughput needs the load it was read under; it
    # goes with the params, whose column wraps, as a column of its own would widen the table past a terminal
    in_flight = [point.concurrency if (point := result.representative.point) else None for result in results]
    by_concurrency = len(set(in_flight) - {None}) > 1
    for result, concurrency in zip(results, in_flight):
        params = params_text(result.params)
        if by_concurrency and concurrency:
            params += f" (at concurrency {concurrency})"
        cells = [str(result.number), params]
        cells += [_fmt(result.metric(metric)) for _, metric in _CONFIG_COLUMNS if metric is not None]
        cells += [_loads_text(result), config_note(result, rec, bounds or {})]
        table.add_row(*cells)
    return table


def failed_table(title: str, trials: Sequence[StoredTrial], study: str) -> Table:
    """Trials not measured in full (FAIL, PRUNED, RUNNING), each with its reason (``brief``)."""
    table = Table(title=title)
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("params", overflow="fold")
    table.add_column("reason", min_width=24, overflow="fold")
    for trial in trials:
        table.add_row(
            str(trial.number),
            trial.state.name,
            params_text(trial.params),
            Text(brief(trial.reason or "", study, trial.number)),
        )
    return table


#: The most characters ``brief`` keeps of a reason's first line, and of its end where it is one line.
BRIEF_HEAD, BRIEF_TAIL = 160, 120


def brief(reason: str, study: str | None, number: int) -> str:
    """A trial's reason in one line, where it takes several (a server's load error: the backend's
    message, a stack of C++ frames, a Python traceback after ``At:``): its first line, cut at
    ``BRIEF_HEAD`` characters, and its last line before the traceback, where the cause usually is (the
    end of the first, where it is the only one), with the command that shows all of it."""
    if "\n" not in reason.strip():
        return reason
    lines = []
    for line in reason.splitlines():
        if line.strip() == "At:":
            break
        if line.strip():
            lines.append(" ".join(line.split()))
    head, tail = (lines[0], lines[-1] if len(lines) > 1 else "") if lines else ("", "")
    if not tail and len(head) > BRIEF_HEAD + BRIEF_TAIL:
        tail = head[-BRIEF_TAIL:].split(" ", 1)[-1]
    if len(head) > BRIEF_HEAD:
        head = head[:BRIEF_HEAD].rsplit(" ", 1)[0]
    return f"{head}{f' ... {tail}' if tail else ''} (all of it: tuner show {study or 'STUDY'} --trial {number})"


def config_note(result: ConfigResult, rec: Recommendation | None, bounds: Bounds) -> str:
    """``recommended``, ``default``, ``infeasible: latency_p99_ms 61.2 > max 50 (+22%)``, as they apply."""
    note = []
    if rec is not None and result.key == rec.config.key:
        note.append("[green]recommended[/]")
    if result.is_default:
        note.append("default")
    if not result.feasible:
        missed = "; ".join(m.text() for m in result.failed_constraints(bounds)) or "a constraint failed"
        note.append(f"[yellow]infeasible: {missed}[/]")
    if any(t.metrics.get("contaminated") for t in result.loads):
        note.append("contaminated")
    return " ".join(note)


def _loads_text(result: ConfigResult) -> str:
    low, high = result.interval
    if len(result.loads) == 1:
        return "1"
    return f"{len(result.loads)} ({low:.4g}-{high:.4g}, spread {result.spread_pct:.0f}%)"


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def usage_text(point: dict) -> str:
    """CPU/GPU use, window spread and trust flags of one measured point."""
    text = (
        f"CPU: server {point.get('server_cpu_pct', 0):.0f}% (max {point.get('server_cpu_max_pct', 0):.0f}%), "
        f"load generator {point.get('loadgen_cpu_pct', 0):.0f}%, other processes {point.get('other_cpu_pct', 0):.0f}% "
        f"(100% = one core); windows spread {point.get('throughput_spread_pct', 0):.1f}%"
    )
    if point.get("gpu_util_max_pct") or point.get("gpu_memory_mb"):
        text += (
            f"\n  GPU: {point['gpu_util_pct']:.0f}% busy (max {point['gpu_util_max_pct']:.0f}%), "
            f"{point['gpu_memory_mb']:.0f} MiB, {point.get('gpu_power_w', 0):.0f} W"
        )
    if point.get("loadgen_saturated"):
        text += "\n  [yellow]the load generator was saturated: the throughput is a floor, not the server's limit[/]"
    if point.get("contaminated"):
        text += "\n  [yellow]other processes used material CPU during the window: not trusted[/]"
    return text


def _window_text(window: dict) -> str:
    sizes = ", ".join(f"{size}: {count}" for size, count in window["batch_sizes"].items())
    return (
        f"{window['requests']} requests in {window['executions']} executions "
        f"(mean batch {window['mean_batch']:.2f}; executions by batch size {{{sizes}}})"
    )


#: The explanations (tuner.reports.explain_trial's rules) that say why a trial failed or stopped.
_WHY_RULES = ("failed", "pruned")


def print_trial(trial: dict) -> None:
    console.print(f"[bold]trial {trial['number']}[/] {trial['state']} {params_text(trial['params'])}")
    if trial.get("remeasure_of") is not None:
        console.print(f"a fresh load of trial {trial['remeasure_of']}'s config, measured again to confirm it")
    if trial.get("reused_from") is not None:
        console.print(f"the result of trial {trial['reused_from']}, which measured the same config")
    if trial.get("server_restarted"):
        console.print(
            f"its server was restarted while it ran ({trial['server_restarted']}); the config was measured again "
            "from the start", highlight=False, markup=False,
        )  # fmt: skip
    # why a trial failed or stopped comes first, once: as its explanation says it (with a hint), where it has one
    explanations = trial.get("explanations") or []
    why = [e for e in explanations if e["rule"] in _WHY_RULES]
    for explanation in why:
        console.print(explanation["text"], highlight=False, markup=False)
    told = {e["rule"] for e in why}
    if trial["fail_reason"] and "failed" not in told:
        console.print(f"failed: {trial['fail_reason']}", highlight=False, markup=False)
    if trial.get("pruned_reason") and "pruned" not in told:
        console.print(f"stopped after its screen: {trial['pruned_reason']}", highlight=False, markup=False)
    if trial.get("failed_constraints"):
        console.print("infeasible: " + "; ".join(trial["failed_constraints"]), highlight=False, markup=False)
    config = trial.get("config")
    if config is not None and config != trial["number"]:
        console.print(f"one load of the config that trial {config} stands for (the load nearest its median)")
    for point in sorted(trial["points"], key=lambda p: p["concurrency"]):
        server_total = sum(
            point[k]
            for k in (
                "server_queue_ms",
                "server_compute_input_ms",
                "server_compute_infer_ms",
                "server_compute_output_ms",
            )
        )
        console.print(
            f"Concurrency {point['concurrency']}: {point['throughput']:.2f} infer/sec"
            f"{'' if point['stable'] else ' (unstable)'}\n"
            f"  Client: p50 {point['latency_p50_ms']:.3f} ms, p90 {point['latency_p90_ms']:.3f} ms, "
            f"p95 {point['latency_p95_ms']:.3f} ms, p99 {point['latency_p99_ms']:.3f} ms, "
            f"avg {point['latency_avg_ms']:.3f} ms (send {point['client_send_ms']:.3f} ms, "
            f"recv {point['client_recv_ms']:.3f} ms)\n"
            f"  Server: {server_total:.3f} ms (queue {point['server_queue_ms']:.3f} ms + compute input "
            f"{point['server_compute_input_ms']:.3f} ms + compute infer {point['server_compute_infer_ms']:.3f} ms "
            f"+ compute output {point['server_compute_output_ms']:.3f} ms)\n"
            f"  {usage_text(point)}"
        )
    for concurrency, server in (trial.get("server") or {}).items():
        console.print(f"Server at concurrency {concurrency}: {_window_text(server)}")
        for step, window in (server.get("steps") or {}).items():
            console.print(
                f"  step {step}: queue {window['queue_ms']:.3f} ms + compute {step_compute_ms(window):.3f} ms; "
                + _window_text(window),
                highlight=False,
            )
    accuracy = trial.get("accuracy")
    if accuracy:
        basis = {"top1_agreement": " (1 - top-1 agreement)", "cosine_similarity": " (1 - cosine similarity)"}
        console.print(
            f"Accuracy against FP32 on {accuracy['samples']} samples: drop {accuracy['accuracy_drop']:.4f}"
            + basis.get(accuracy.get("judged_by", ""), "")  # older trials do not say
        )
        for name, numbers in accuracy["outputs"].items():
            # an output's name is the model's own: printed as it is
            console.print("  " + name + ": " + ", ".join(f"{k} {v:.4g}" for k, v in numbers.items()), markup=False)
    if trial.get("timings_s"):
        console.print("Time: " + ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in trial["timings_s"].items()))
    rest = [e for e in explanations if e["rule"] not in _WHY_RULES]
    if rest:
        console.print("What the numbers say:", style="bold")
        for explanation in rest:
            console.print(f"  - {explanation['text']}", highlight=False, markup=False)
    if trial["config_pbtxt"]:
        console.print("config.pbtxt:", style="bold")
        console.print(trial["config_pbtxt"], highlight=False, markup=False)
