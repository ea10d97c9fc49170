"""The report's main charts as PNG files, drawn with matplotlib (no browser needed).

    paths = write_pngs(gather(study, store), Path("report"))
    # report/pareto.png, curves.png, breakdown.png, batches.png (and importances.png where there are some)

As in the HTML report, the Pareto chart has one marker per config (its medians) and the other
charts draw each top config's representative load; curves.png is left out where every config was
measured at one concurrency (there is no curve).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, whatever the environment says

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from tuner.reports import _charts as charts
from tuner.reports._data import ConfigData, StudyData


def write_pngs(data: StudyData, folder: Path) -> list[Path]:
    """Writes the main charts of ``data`` into ``folder``; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    top = data.top()
    figures = {"pareto": _pareto(data)}
    if top:
        if len({p.concurrency for c in top for p in c.curve}) > 1:
            figures["curves"] = _curves(top)
        figures |= {"breakdown": _breakdown(top), "batches": _batches(top)}
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


def _xy(configs: list[ConfigData]) -> tuple[list[float], list[float]]:
    return ([c.metric("latency_p99_ms") or 0.0 for c in configs], [c.metric("throughput") or 0.0 for c in configs])


def _pareto(data: StudyData) -> Figure:
    fig, ax = _axes(
        "Pareto front of configs: median throughput against median p99 latency",
        "p99 latency (ms)",
        "throughput (infer/s)",
    )
    ax.scatter(*_xy([c for c in data.configs if c.feasible]), color=charts.FEASIBLE, label="feasible", zorder=3)
    ax.scatter(*_xy([c for c in data.configs if not c.feasible]), color=charts.INFEASIBLE, label="infeasible", zorder=3)
    front = sorted((c for c in data.configs if c.number in data.front), key=lambda c: c.metric("latency_p99_ms") or 0.0)
    if front:
        ax.step(*_xy(front), where="post", color=charts.FEASIBLE, linestyle=":", label="Pareto front")
    for number, text, colour in (
        (data.recommended, "recommended", charts.RECOMMENDED),
        (data.default, "default", charts.DEFAULT),
    ):
        config = data.config(number)
        if config is not None:
            x, y = config.metric("latency_p99_ms"), config.metric("throughput")
            ax.annotate(
                f"{text} (trial {config.number})",
                (x, y),
                xytext=(20, -55 if text == "default" else -30),  # below the point: the best configs are at the top
                textcoords="offset points",
                color=colour,
                arrowprops={"arrowstyle": "->", "color": colour},
            )
    budget = data.bounds.get("latency_p99_ms", {}).get("max")
    if budget is not None:
        ax.axvline(budget, color=charts.INFEASIBLE, linestyle="--", label=f"p99 limit {budget:g} ms")
    ax.legend()
    return fig


def _curves(top: list[ConfigData]) -> Figure:
    fig, ax = _axes("Throughput against latency across concurrency", "p99 latency (ms)", "throughput (infer/s)")
    for trial in top:
        curve = trial.curve
        ax.plot([p.latency_p99_ms for p in curve], [p.throughput for p in curve], marker="o", label=trial.label)
        for p in curve:
            ax.annotate(
                f"c={p.concurrency}",
                (p.latency_p99_ms, p.throughput),
                fontsize=8,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.legend()
    return fig


def _breakdown(top: list[ConfigData]) -> Figure:
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


def _batches(top: list[ConfigData]) -> Figure:
    fig, ax = _axes("Batch sizes the server formed", "batch size", "executions")
    sizes = sorted({int(s) for t in top for s in ((t.server or {}).get("batch_sizes") or {})})
    width = 0.8 / max(1, len(top))
    for index, trial in enumerate(top):
        counts = (trial.server or {}).get("batch_sizes") or {}
        ax.bar(
            [i + index * width for i in range(len(sizes))],
            [counts.get(str(s), 0) for s in sizes],
            width=width,
            label=trial.label,
        )
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))], [str(s) for s in sizes])
    ax.legend()
    return fig


def _importances(data: StudyData) -> Figure:
    fig, ax = _axes("Parameter importances (Optuna, fANOVA)", "importance", "")
    names = sorted({p for values in data.importances.values() for p in values})
    height = 0.8 / max(1, len(data.importances))
    for index, (objective, values) in enumerate(data.importances.items()):
        ax.barh(
            [i + index * height for i in range(len(names))],
            [values.get(n, 0.0) for n in names],
            height=height,
            label=objective,
        )
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(names))], names)
    ax.legend()
    return fig
