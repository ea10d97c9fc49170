"""The report's main charts as PNG files, drawn with matplotlib (no browser needed).

    paths = write_pngs(gather(study, store), Path("report"))
    # report/pareto.png, curves.png, breakdown.png, batches.png (and importances.png where there are some)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, whatever the environment says

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from tuner import charts
from tuner.report_data import StudyData, TrialData


def write_pngs(data: StudyData, folder: Path) -> list[Path]:
    """Writes the main charts of ``data`` into ``folder``; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    top = data.top()
    figures = {"pareto": _pareto(data)}
    if top:
        figures |= {"curves": _curves(top), "breakdown": _breakdown(top), "batches": _batches(top)}
    if data.importances:
        figures["importances"] = _importances(data)
    written = []
    for name, fig in figures.items():
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _xy(trials: list[TrialData]) -> tuple[list[float], list[float]]:
    return [t.metrics.get("latency_p99_ms", 0) for t in trials], [t.metrics.get("throughput", 0) for t in trials]


def _pareto(data: StudyData) -> Figure:
    fig, ax = _axes("Pareto front: throughput against p99 latency", "p99 latency (ms)", "throughput (infer/s)")
    feasible = [t for t in data.complete if t.feasible]
    infeasible = [t for t in data.complete if not t.feasible]
    ax.scatter(*_xy(feasible), color=charts.FEASIBLE, label="feasible", zorder=3)
    ax.scatter(*_xy(infeasible), color=charts.INFEASIBLE, label="infeasible", zorder=3)
    front = sorted((t for t in data.complete if t.number in data.front), key=lambda t: t.metrics.get("latency_p99_ms"))
    if front:
        ax.step(*_xy(front), where="post", color=charts.FEASIBLE, linestyle=":", label="Pareto front")
    for number, text, colour in ((data.recommended, "recommended", charts.RECOMMENDED),
                                 (data.default, "default", charts.DEFAULT)):
        trial = data.trial(number)
        if trial is not None and trial.complete:
            x, y = trial.metrics.get("latency_p99_ms"), trial.metrics.get("throughput")
            ax.annotate(f"{text} (trial {trial.number})", (x, y), xytext=(15, 15), textcoords="offset points",
                        color=colour, arrowprops={"arrowstyle": "->", "color": colour})
    ax.legend()
    return fig


def _curves(top: list[TrialData]) -> Figure:
    fig, ax = _axes("Throughput against latency across concurrency", "p99 latency (ms)", "throughput (infer/s)")
    for trial in top:
        curve = trial.curve
        ax.plot([p.latency_p99_ms for p in curve], [p.throughput for p in curve], marker="o", label=trial.label)
        for p in curve:
            ax.annotate(f"c={p.concurrency}", (p.latency_p99_ms, p.throughput), fontsize=8,
                        xytext=(3, 3), textcoords="offset points")
    ax.legend()
    return fig


def _breakdown(top: list[TrialData]) -> Figure:
    fig, ax = _axes("Where the time goes: mean latency per request", "ms per request", "")
    labels = [t.label for t in top]
    left = [0.0] * len(top)
    points = [t.point for t in top]
    parts = [(name, [getattr(p, attr) if p else 0.0 for p in points]) for name, attr in charts.BREAKDOWN]
    rest = [max(0.0, p.latency_avg_ms - sum(getattr(p, a) for _, a in charts.BREAKDOWN)) if p else 0.0 for p in points]
    parts.append(("other (network, protocol)", rest))
    for (name, widths), colour in zip(parts, charts.BREAKDOWN_COLOURS):
        ax.barh(labels, widths, left=left, label=name, color=colour)
        left = [a + b for a, b in zip(left, widths)]
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    return fig


def _batches(top: list[TrialData]) -> Figure:
    fig, ax = _axes("Batch sizes the server formed", "batch size", "executions")
    sizes = sorted({int(s) for t in top for s in ((t.server or {}).get("batch_sizes") or {})})
    width = 0.8 / max(1, len(top))
    for index, trial in enumerate(top):
        counts = (trial.server or {}).get("batch_sizes") or {}
        ax.bar([i + index * width for i in range(len(sizes))], [counts.get(str(s), 0) for s in sizes],
               width=width, label=trial.label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))], [str(s) for s in sizes])
    ax.legend()
    return fig


def _importances(data: StudyData) -> Figure:
    fig, ax = _axes("Parameter importances (Optuna, fANOVA)", "importance", "")
    names = sorted({p for values in data.importances.values() for p in values})
    height = 0.8 / max(1, len(data.importances))
    for index, (objective, values) in enumerate(data.importances.items()):
        ax.barh([i + index * height for i in range(len(names))], [values.get(n, 0.0) for n in names],
                height=height, label=objective)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(names))], names)
    ax.legend()
    return fig
