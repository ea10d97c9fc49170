"""The report's charts as Plotly figures, drawn from a StudyData.

    fig = pareto_figure(data)      # throughput against p99: feasible, infeasible (grey), the marks

Every figure is built from the study's stored numbers; ``tuner.html_report`` puts them in one
HTML file and ``tuner.png_report`` draws the main ones again with matplotlib for PNG files.
"""

from __future__ import annotations

import plotly.graph_objects as go

from tuner.report_data import StudyData, TrialData

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


def _hover(trial: TrialData) -> str:
    metrics = trial.metrics
    lines = [f"<b>{trial.label}</b>", trial.params_text()]
    if metrics:
        lines.append(f"{metrics.get('throughput', 0):.4g} infer/s, p99 {metrics.get('latency_p99_ms', 0):.3g} ms "
                     f"at concurrency {metrics.get('concurrency')}")
    lines += [e.text[:120] for e in trial.explanations[:2]]
    return "<br>".join(lines)


def pareto_figure(data: StudyData) -> go.Figure:
    """Throughput against p99 of every COMPLETE trial; the front joined; default and recommendation marked.

    One marker per COMPLETE trial (the marks are annotations, not extra markers), so the chart's
    markers count the measured configs.
    """
    fig = go.Figure()
    for name, trials, colour in (
        ("feasible", [t for t in data.complete if t.feasible], FEASIBLE),
        ("infeasible", [t for t in data.complete if not t.feasible], INFEASIBLE),
    ):
        fig.add_trace(go.Scatter(
            name=name, mode="markers", x=[t.metrics.get("latency_p99_ms") for t in trials],
            y=[t.metrics.get("throughput") for t in trials], text=[_hover(t) for t in trials],
            hovertemplate="%{text}<extra></extra>", marker={"color": colour, "size": 10},
            customdata=[t.number for t in trials],
        ))
    front = sorted(
        (t for t in data.complete if t.number in data.front), key=lambda t: t.metrics.get("latency_p99_ms", 0)
    )
    if front:
        fig.add_trace(go.Scatter(
            name="Pareto front", mode="lines", line={"color": FEASIBLE, "dash": "dot", "shape": "hv"},
            x=[t.metrics.get("latency_p99_ms") for t in front], y=[t.metrics.get("throughput") for t in front],
            hoverinfo="skip",
        ))
    for number, text, colour in ((data.recommended, "recommended", RECOMMENDED), (data.default, "default", DEFAULT)):
        trial = data.trial(number)
        if trial is not None and trial.complete:
            fig.add_annotation(
                x=trial.metrics.get("latency_p99_ms"), y=trial.metrics.get("throughput"),
                text=f"{text} (trial {trial.number})", showarrow=True, arrowhead=2, arrowcolor=colour,
                font={"color": colour}, ax=40 if text == "default" else -40, ay=-35,
            )
    for metric, bound in data.bounds.items():
        if metric == "latency_p99_ms" and bound.get("max") is not None:
            fig.add_vline(x=bound["max"], line={"color": INFEASIBLE, "dash": "dash"},
                          annotation_text=f"p99 limit {bound['max']:g} ms")
    fig.update_layout(title="Pareto front: throughput against p99 latency", xaxis_title="p99 latency (ms)",
                      yaxis_title="throughput (infer/s)", **_LAYOUT)
    return fig


def curves_figure(data: StudyData, top: list[TrialData]) -> go.Figure:
    """Throughput against p99 across the concurrencies measured, one line per top config."""
    fig = go.Figure()
    for trial in top:
        curve = trial.curve
        fig.add_trace(go.Scatter(
            name=trial.label, mode="lines+markers+text", x=[p.latency_p99_ms for p in curve],
            y=[p.throughput for p in curve], text=[f"c={p.concurrency}" for p in curve], textposition="top left",
            hovertemplate="concurrency %{text}: %{y:.4g} infer/s, p99 %{x:.3g} ms<extra>" + trial.label + "</extra>",
        ))
    fig.update_layout(title="Throughput against latency across concurrency (top configs)",
                      xaxis_title="p99 latency (ms)", yaxis_title="throughput (infer/s)", **_LAYOUT)
    return fig


def breakdown_figure(top: list[TrialData]) -> go.Figure:
    """Where a request's mean latency goes, per top config, at the point it was judged by."""
    labels = [t.label for t in top]
    points = [t.point for t in top]
    fig = go.Figure()
    for (name, attr), colour in zip(BREAKDOWN, BREAKDOWN_COLOURS):
        fig.add_trace(go.Bar(name=name, y=labels, x=[getattr(p, attr) if p else 0 for p in points],
                             orientation="h", marker_color=colour))
    rest = [
        max(0.0, p.latency_avg_ms - sum(getattr(p, attr) for _, attr in BREAKDOWN)) if p else 0 for p in points
    ]
    fig.add_trace(go.Bar(name="other (network, protocol)", y=labels, x=rest, orientation="h",
                         marker_color=BREAKDOWN_COLOURS[-1]))
    fig.update_layout(barmode="stack", title="Where the time goes: mean latency per request (ms)",
                      xaxis_title="ms per request", yaxis={"autorange": "reversed"}, **_LAYOUT)
    return fig


def batches_figure(top: list[TrialData]) -> go.Figure:
    """The batch sizes the server formed: executions at each size, per top config."""
    fig = go.Figure()
    for trial in top:
        server = trial.server or {}
        sizes = server.get("batch_sizes") or {}
        mean = server.get("mean_batch")
        suffix = f" (mean {mean:.2f})" if mean else ""
        fig.add_trace(go.Bar(name=trial.label + suffix, x=[str(s) for s in sizes], y=list(sizes.values())))
    fig.update_layout(barmode="group", title="Batch sizes the server formed (executions per batch size)",
                      xaxis_title="batch size", xaxis_type="category", yaxis_title="executions", **_LAYOUT)
    return fig


RESOURCES = (
    ("server CPU %", "server_cpu_pct"),
    ("server CPU peak %", "server_cpu_max_pct"),
    ("load generator CPU %", "loadgen_cpu_pct"),
    ("other processes CPU %", "other_cpu_pct"),
    ("GPU util %", "gpu_util_pct"),
    ("GPU util peak %", "gpu_util_max_pct"),
)


def resources_figure(top: list[TrialData]) -> go.Figure:
    """CPU and GPU use during each top config's judged measurement (percent of one core / of the GPU)."""
    labels = [t.label for t in top]
    fig = go.Figure()
    for name, attr in RESOURCES:
        fig.add_trace(go.Bar(name=name, x=labels, y=[getattr(t.point, attr) if t.point else 0 for t in top]))
    memory = [t.point.gpu_memory_mb if t.point else 0 for t in top]
    title = "CPU and GPU use while measured"
    if any(memory):
        title += " · GPU memory " + ", ".join(f"{t.label} {m:.0f} MB" for t, m in zip(top, memory))
    fig.update_layout(barmode="group", title=title, yaxis_title="percent", **_LAYOUT)
    return fig


def importances_figure(data: StudyData) -> go.Figure:
    """Optuna's parameter importances, one group of bars per objective."""
    fig = go.Figure()
    for objective, values in data.importances.items():
        ordered = sorted(values.items(), key=lambda item: item[1])
        fig.add_trace(go.Bar(name=objective, orientation="h", y=[k for k, _ in ordered], x=[v for _, v in ordered]))
    fig.update_layout(barmode="group", title="Parameter importances (Optuna, fANOVA)", xaxis_title="importance",
                      **_LAYOUT)
    return fig
