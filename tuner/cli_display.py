"""What the `tuner` commands print: progress while a study runs, tables of trials, one trial in full."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tuner import report
from tuner import results as rs
from tuner import study as st
from tuner.config import StudyConfig

# Outside a terminal (CI logs, pipes) rich would wrap at 80 columns; tables read better wider.
console = Console(width=None if sys.stdout.isatty() else 160)


@contextmanager
def study_progress(runner: st.StudyRunner, cfg: StudyConfig, total: int | None) -> Iterator[None]:
    """Shows the study's progress and every worker's while the block runs the runner."""
    with progress() as bar:
        task = bar.add_task("starting workers and their Triton servers", total=total, best="")
        screen = StudyDisplay(bar, task, cfg)

        def on_event(event: st.TrialEvent) -> None:
            screen.runner_pool = runner.pool
            screen.show(event)

        runner.on_event = on_event
        yield


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
            progress.update(self.task, completed=event.done, best=best_text(event.best, self.cfg))
            progress.console.print(
                f"  trial {trial.number:>3} {params_text(trial.params):<48} {result_text(trial, self.cfg)}"
            )
        self._show_workers()

    def _show_workers(self) -> None:
        pool = getattr(self, "runner_pool", None)
        statuses = pool.status if pool is not None else []
        for status in statuses:
            if status.index not in self.workers:
                self.workers[status.index] = self.progress.add_task("", total=None, best="")
            now = "idle" if status.ticket is None else (
                f"trial {status.ticket}: {params_text(self.params.get(status.ticket, {}))}"
            )
            cores = ",".join(map(str, status.cores))
            self.progress.update(
                self.workers[status.index],
                description=f"  worker {status.index} [{status.node} cores {cores}] {now}",
                best=f"{status.done} done, {status.failed} failed",
            )


def params_text(params: dict) -> str:
    short = {"max_batch_size": "mbs", "dynamic_batching": "batching", "max_queue_delay_us": "delay_us",
             "instance_count": "instances", "cpu_threads": "threads"}
    parts = []
    for key, value in params.items():
        if isinstance(value, bool):
            value = "on" if value else "off"
        parts.append(f"{short.get(key, key)}={value}")
    return " ".join(parts) or "default"


def result_text(trial: FrozenTrial, cfg: StudyConfig) -> str:
    if trial.state != TrialState.COMPLETE:
        return f"[red]FAIL[/] {trial.user_attrs.get(rs.ATTR_FAIL_REASON, '')}"
    metrics = trial.user_attrs.get(rs.ATTR_METRICS, {})
    text = ", ".join(f"{o.metric} {metrics.get(o.metric, float('nan')):.4g}" for o in cfg.objectives)
    flags = []
    if not rs.is_feasible(trial):
        flags.append("[yellow]infeasible[/]")
    if trial.user_attrs.get(rs.ATTR_REUSED_FROM) is not None:
        flags.append(f"reused from {trial.user_attrs[rs.ATTR_REUSED_FROM]}")
    if trial.user_attrs.get(rs.ATTR_REMEASURE_OF) is not None:
        flags.append(f"again of {trial.user_attrs[rs.ATTR_REMEASURE_OF]}")
    if metrics.get("stable") is False:
        flags.append("[yellow]unstable[/]")
    if metrics.get("contaminated"):
        flags.append("[yellow]contaminated[/]")
    if metrics.get("loadgen_saturated"):
        flags.append("[yellow]load generator saturated[/]")
    return " ".join([text, *flags])


def best_text(best: FrozenTrial | None, cfg: StudyConfig) -> str:
    if best is None:
        return "no feasible trial yet"
    metric = cfg.objectives[0].metric
    return f"best: trial {best.number}, {metric} {best.values[0]:.4g}"


def print_summary(summary: st.StudySummary, cfg: StudyConfig) -> None:
    study = summary.study
    states = [t.state for t in study.trials]
    console.print(
        f"\n{len(states)} trials: {states.count(TrialState.COMPLETE)} complete, {states.count(TrialState.FAIL)} failed"
    )
    if summary.stopped:
        console.print(summary.stopped)
    if not summary.pareto:
        console.print("[yellow]no feasible trial: loosen the constraints or widen the search space[/]")
        return
    console.print(trials_table("Pareto front (feasible trials)", summary.pareto, summary.recommended))
    rec = summary.recommended
    if rec is not None:
        console.print(f"recommended: trial {rec.number} {params_text(rec.params)}")
        if summary.default is not None and summary.default.number != rec.number:
            parts = []
            for o in cfg.objectives:
                ratio = report.gain(rec, summary.default, o.metric)
                if ratio is not None:
                    parts.append(f"{o.metric} x{ratio:.2f}")
            console.print(f"  vs the default config (trial {summary.default.number}): " + ", ".join(parts))


def trials_table(title: str, trials: list[FrozenTrial], marked: FrozenTrial | None = None) -> Table:
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
        if trial.user_attrs.get(rs.ATTR_REMEASURE_OF) is not None:
            note.append(f"again of {trial.user_attrs[rs.ATTR_REMEASURE_OF]}")
        if metrics.get("contaminated"):
            note.append("contaminated")
        if trial.user_attrs.get(rs.ATTR_FAIL_REASON):
            note.append(str(trial.user_attrs[rs.ATTR_FAIL_REASON])[:80])

        def fmt(key: str) -> str:
            value = metrics.get(key)
            return "" if value is None else f"{value:.4g}"

        table.add_row(
            str(trial.number), trial.state.name, params_text(trial.params), fmt("throughput"),
            fmt("latency_p50_ms"), fmt("latency_p99_ms"), fmt("server_queue_ms"), fmt("server_compute_infer_ms"),
            " ".join(note),
        )
    return table


def usage_text(point: dict) -> str:
    """CPU/GPU use, window spread and trust flags of one measured point."""
    text = (
        f"CPU: server {point.get('server_cpu_pct', 0):.0f}% (max {point.get('server_cpu_max_pct', 0):.0f}%), "
        f"load generator {point.get('loadgen_cpu_pct', 0):.0f}%, other processes {point.get('other_cpu_pct', 0):.0f}% "
        f"(100% = one core); windows spread {point.get('throughput_spread_pct', 0):.1f}%"
    )
    if point.get("gpu_util_max_pct") or point.get("gpu_memory_mb"):
        text += (f"\n  GPU: {point['gpu_util_pct']:.0f}% busy (max {point['gpu_util_max_pct']:.0f}%), "
                 f"{point['gpu_memory_mb']:.0f} MiB, {point.get('gpu_power_w', 0):.0f} W")
    if point.get("loadgen_saturated"):
        text += "\n  [yellow]the load generator was saturated: the throughput is a floor, not the server's limit[/]"
    if point.get("contaminated"):
        text += "\n  [yellow]other processes used material CPU during the window: not trusted[/]"
    return text


def print_trial(trial: dict) -> None:
    console.print(f"[bold]trial {trial['number']}[/] {trial['state']} {params_text(trial['params'])}")
    if trial["fail_reason"]:
        console.print(f"failed: {trial['fail_reason']}")
    for point in sorted(trial["points"], key=lambda p: p["concurrency"]):
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
            f"+ compute output {point['server_compute_output_ms']:.3f} ms)\n"
            f"  {usage_text(point)}"
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
    if trial.get("explanations"):
        console.print("What the numbers say:", style="bold")
        for explanation in trial["explanations"]:
            console.print(f"  - {explanation['text']}", highlight=False, markup=False)
    if trial["config_pbtxt"]:
        console.print("config.pbtxt:", style="bold")
        console.print(trial["config_pbtxt"], highlight=False, markup=False)
