"""The report's charts as Plotly figures, drawn from a StudyData.

    fig = pareto_figure(data)      # configs' median throughput against median p99: feasible, infeasible, marks

Every figure is built from the study's stored numbers: the Pareto chart from each config's medians,
the detailed charts (curves, breakdown, batches, resources) from each top config's representative
load. ``tuner.reports._html`` puts them in one HTML file and ``tuner.reports._png`` draws the main
ones again with matplotlib for PNG files.
"""

from __future__ import annotations

import plotly.graph_objects as go

from tuner.reports._data import GPU_FIELDS, ConfigData, StudyData

#: Colours: feasible trials, infeasible ones (greyed), the recommendation and the default config.
FEASIBLE = "#1f77b4"
INFEASIBLE = "#aaaaaa"
RECOMMENDED = "#2ca02c"
DEFAULT = "#d62728"

#: The parts of a request's latency, in the order they happen, with their LoadPoint fields.
BREAKDOWN = (
    ("client send", "client_send_ms"),
    ("queue", "server_queue_ms"),
    ("compute input", "server_compute_input_ms"),
    ("compute infer", "server_compute_infer_ms"),
    ("compute output", "server_compute_output_ms"),
    ("client receive", "client_recv_ms"),
)
BREAKDOWN_COLOURS = ("#9edae5", "#ff7f0e", "#c5b0d5", "#9467bd", "#8c564b", "#17becf", "#dddddd")

_LAYOUT = {"template": "plotly_white", "height": 420, "margin": {"l": 60, "r": 20, "t": 50, "b": 50}}


def _hover(config: ConfigData) -> str:
    lines = [f"<b>{config.label}</b>", config.params_text()]
    throughput, p99 = config.metric("throughput"), config.metric("latency_p99_ms")
    if throughput is not None and p99 is not None:
        lines.append(f"median {throughput:.4g} infer/s, p99 {p99:.3g} ms ({config.loads_text()})")
    if config.failed:
        lines.append(config.failed_text())
    lines += [e.text[:120] for e in config.explanations[:2]]
    return "<br>".join(lines)


def pareto_figure(data: StudyData) -> go.Figure:
    """Median throughput against median p99 of every config; the front joined; default and recommendation marked.

    One marker per config (the marks are annotations, not extra markers), so the chart's markers
    count the measured configs; a config with several loads has its interval as an error bar.
    """
    fig = go.Figure()
    bars = data.metric_names[:1] == ["throughput"]  # the interval is the first objective's
    for name, configs, colour in (
        ("feasible", [c for c in data.configs if c.feasible], FEASIBLE),
        ("infeasible", [c for c in data.configs if not c.feasible], INFEASIBLE),
    ):
        y = [c.metric("throughput") for c in configs]
        fig.add_trace(
            go.Scatter(
                name=name,
                mode="markers",
                x=[c.metric("latency_p99_ms") for c in configs],
                y=y,
                text=[_hover(c) for c in configs],
                hovertemplate="%{text}<extra></extra>",
                marker={"color": colour, "size": 10},
                customdata=[c.number for c in configs],
                error_y=_interval_bars(configs, y) if bars else None,
            )
        )
    front = sorted((c for c in data.configs if c.number in data.front), key=lambda c: c.metric("latency_p99_ms") or 0.0)
    if front:
        fig.add_trace(
            go.Scatter(
                name="Pareto front",
                mode="lines",
                line={"color": FEASIBLE, "dash": "dot", "shape": "hv"},
                x=[c.metric("latency_p99_ms") for c in front],
                y=[c.metric("throughput") for c in front],
                hoverinfo="skip",
            )
        )
    for number, text, colour in ((data.recommended, "recommended", RECOMMENDED), (data.default, "default", DEFAULT)):
        config = data.config(number)
        if config is not None:
            fig.add_annotation(
                x=config.metric("latency_p99_ms"),
                y=config.metric("throughput"),
                text=f"{text} (trial {config.number})",
                showarrow=True,
                arrowhead=2,
                arrowcolor=colour,
                font={"color": colour},
                ax=40 if text == "default" else -40,
                ay=-35,
            )
    for metric, bound in data.bounds.items():
        if metric == "latency_p99_ms" and bound.get("max") is not None:
            fig.add_vline(
                x=bound["max"],
                line={"color": INFEASIBLE, "dash": "dash"},
                annotation_text=f"p99 limit {bound['max']:g} ms",
            )
    fig.update_layout(
        title="Pareto front of configs: median throughput against median p99 latency",
        xaxis_title="p99 latency (ms)",
        yaxis_title="throughput (infer/s)",
        **_LAYOUT,
    )
    return fig


def _interval_bars(configs: list[ConfigData], y: list[float | None]) -> dict | None:
    """Error bars from each config's interval of throughput, where any is wider than a point."""
    intervals = [c.result.interval for c in configs]
    if all(high <= low for low, high in intervals):
        return None
    return {
        "type": "data",
        "symmetric": False,
        "color": INFEASIBLE,
        "array": [max(0.0, high - (v or 0.0)) for (_, high), v in zip(intervals, y)],
        "arrayminus": [max(0.0, (v or 0.0) - low) for (low, _), v in zip(intervals, y)],
    }


def curves_figure(data: StudyData, top: list[ConfigData]) -> go.Figure:
    """Throughput against p99 across the concurrencies measured, one line per top config's representative load."""
    fig = go.Figure()
    for trial in top:
        curve = trial.curve
        fig.add_trace(
            go.Scatter(
                name=trial.label,
                mode="lines+markers+text",
                x=[p.latency_p99_ms for p in curve],
                y=[p.throughput for p in curve],
                text=[f"c={p.concurrency}" for p in curve],
                textposition="top left",
                hovertemplate="concurrency %{text}: %{y:.4g} infer/s, p99 %{x:.3g} ms<extra>"
                + trial.label
                + "</extra>",
            )
        )
    fig.update_layout(
        title="Throughput against latency across concurrency (top configs)",
        xaxis_title="p99 latency (ms)",
        yaxis_title="throughput (infer/s)",
        **_LAYOUT,
    )
    return fig


def breakdown_figure(top: list[ConfigData]) -> go.Figure:
    """Where a request's mean latency goes, per top config, at the point it was judged by."""
    labels = [t.label for t in top]
    points = [t.point for t in top]
    fig = go.Figure()
    for (name, attr), colour in zip(BREAKDOWN, BREAKDOWN_COLOURS):
        fig.add_trace(
            go.Bar(
                name=name,
                y=labels,
                x=[getattr(p, attr) if p else 0 for p in points],
                orientation="h",
                marker_color=colour,
            )
        )
    rest = [max(0.0, p.latency_avg_ms - sum(getattr(p, attr) for _, attr in BREAKDOWN)) if p else 0 for p in points]
    fig.add_trace(
        go.Bar(name="other (network, protocol)", y=labels, x=rest, orientation="h", marker_color=BREAKDOWN_COLOURS[-1])
    )
    fig.update_layout(
        barmode="stack",
        title="Where the time goes: mean latency per request (ms)",
        xaxis_title="ms per request",
        yaxis={"autorange": "reversed"},
        **_LAYOUT,
    )
    return fig


def batches_figure(top: list[ConfigData]) -> go.Figure:
    """The batch sizes the server formed: executions at each size, per top config."""
    fig = go.Figure()
    for trial in top:
        server = trial.server or {}
        sizes = server.get("batch_sizes") or {}
        mean = server.get("mean_batch")
        suffix = f" (mean {mean:.2f})" if mean else ""
        fig.add_trace(go.Bar(name=trial.label + suffix, x=[str(s) for s in sizes], y=list(sizes.values())))
    fig.update_layout(
        barmode="group",
        title="Batch sizes the server formed (executions per batch size)",
        xaxis_title="batch size",
        xaxis_type="category",
        yaxis_title="executions",
        **_LAYOUT,
    )
    return fig


RESOURCES = (
    ("server CPU %", "server_cpu_pct"),
    ("server CPU peak %", "server_cpu_max_pct"),
    ("load generator CPU %", "loadgen_cpu_pct"),
    ("other processes CPU %", "other_cpu_pct"),
    ("GPU util %", "gpu_util_pct"),
    ("GPU util peak %", "gpu_util_max_pct"),
)


def measured_resources(gpu: bool) -> list[tuple[str, str]]:
    """The series of RESOURCES to draw: the CPU ones, and the GPU ones only where a GPU was read."""
    return [(name, attr) for name, attr in RESOURCES if gpu or attr not in GPU_FIELDS]


def resources_figure(top: list[ConfigData], gpu: bool) -> go.Figure:
    """CPU (and GPU, where read) use during each top config's representative load (percent of one core / of the GPU)."""
    labels = [t.label for t in top]
    fig = go.Figure()
    for name, attr in measured_resources(gpu):
        fig.add_trace(go.Bar(name=name, x=labels, y=[getattr(t.point, attr) if t.point else 0 for t in top]))
    title = "CPU and GPU use while measured" if gpu else "CPU use while measured"
    memory = [t.point.gpu_memory_mb if t.point else 0 for t in top]
    if gpu and any(memory):
        title += " · GPU memory " + ", ".join(f"{t.label} {m:.0f} MB" for t, m in zip(top, memory))
    fig.update_layout(barmode="group", title=title, yaxis_title="percent", **_LAYOUT)
    return fig


def importances_figure(data: StudyData) -> go.Figure:
    """Optuna's parameter importances, one group of bars per objective."""
    fig = go.Figure()
    for objective, values in data.importances.items():
        ordered = sorted(values.items(), key=lambda item: item[1])
        fig.add_trace(go.Bar(name=objective, orientation="h", y=[k for k, _ in ordered], x=[v for _, v in ordered]))
    fig.update_layout(
        barmode="group", title="Parameter importances (Optuna, fANOVA)", xaxis_title="importance", **_LAYOUT
    )
    return fig
