"""One self-contained HTML file about a study: charts, readings and the recommended config.

    write_html(gather(study, store), Path("report.html"))

Plotly's JavaScript is embedded once in the page, so the file opens offline. Each chart is a
``div`` with a fixed id (``pareto``, ``curves``, ``breakdown``, ``batches``, ``resources``,
``importances``), which the tests look for in the rendered page.
"""

from __future__ import annotations

import html
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from tuner import charts
from tuner.report_data import StudyData, TrialData

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 4px 8px; border-bottom: 1px solid #eee;
text-align: left; vertical-align: top; } td.num { text-align: right; } tr.infeasible, tr.fail { color: #888; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; } .note { color: #666; }
ul.explain { margin: 0; padding-left: 1.2em; }
"""


def write_html(data: StudyData, path: Path) -> Path:
    """Writes the report of ``data`` to ``path`` and returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
    return path


def render(data: StudyData) -> str:
    """The whole HTML page."""
    top = data.top()
    sections = [_summary(data), _section("Pareto front", _figure(charts.pareto_figure(data), "pareto"))]
    sections.append(_recommendation(data))
    if top:
        sections += [
            _section("Throughput and latency across concurrency", _figure(charts.curves_figure(data, top), "curves")),
            _section("Where the time goes", _figure(charts.breakdown_figure(top), "breakdown")),
            _section("Batch sizes the server formed", _figure(charts.batches_figure(top), "batches")),
            _section("CPU and GPU use", _resources(top)),
        ]
    sections.append(_section("Accuracy against FP32", _accuracy(data)))
    sections.append(_section("Parameter importances", _importances(data)))
    sections.append(_section("All trials", _trials_table(data)))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Study {html.escape(data.name)}</title><style>{_STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )


def _figure(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False})


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _summary(data: StudyData) -> str:
    states: dict[str, int] = {}
    for trial in data.trials:
        states[trial.trial.state.name] = states.get(trial.trial.state.name, 0) + 1
    model = (data.study_file.get("model") or {}).get("name", "?")
    objectives = ", ".join(f"{m} ({d})" for m, d in zip(data.metric_names, data.directions))
    constraints = ", ".join(
        f"{m} " + " ".join(f"{k} {v:g}" for k, v in b.items() if v is not None) for m, b in data.bounds.items()
    ) or "none"
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
    infeasible = sum(1 for t in data.complete if not t.feasible)
    return (
        f"<h1>Study {html.escape(data.name)}</h1><p>model <b>{html.escape(str(model))}</b> · objectives "
        f"{html.escape(objectives)} · constraints {html.escape(constraints)}</p>"
        f"<p>{len(data.trials)} trials: {html.escape(counts)} ({infeasible} complete but infeasible, greyed "
        "below)</p>"
    )


def _recommendation(data: StudyData) -> str:
    best = data.trial(data.recommended)
    if best is None:
        return _section("Recommendation", "<p>No feasible trial: loosen the constraints or widen the search space.</p>")
    default = data.trial(data.default)
    gain = ""
    if default is not None and default.number != best.number:
        parts = []
        for name in ("throughput", "latency_p99_ms"):
            a, b = best.metrics.get(name), default.metrics.get(name)
            if a is not None and b:
                parts.append(f"{name} x{a / b:.2f}")
        gain = f"<p>Against the default config (trial {default.number}): {html.escape(', '.join(parts))}</p>"
    pbtxt = best.record.config_pbtxt if best.record else ""
    return _section(
        "Recommendation",
        f"<p><b>Trial {best.number}</b>: {html.escape(best.params_text())} · {_numbers(best)}</p>{gain}"
        f"{_explanations(best)}<details><summary>config.pbtxt</summary><pre>{html.escape(pbtxt)}</pre></details>",
    )


def _numbers(trial: TrialData) -> str:
    m = trial.metrics
    if not m:
        return ""
    return html.escape(
        f"{m.get('throughput', 0):.4g} infer/s, p50 {m.get('latency_p50_ms', 0):.3g} ms, "
        f"p99 {m.get('latency_p99_ms', 0):.3g} ms at concurrency {m.get('concurrency')}"
    )


def _explanations(trial: TrialData) -> str:
    if not trial.explanations:
        return ""
    items = "".join(f"<li data-rule='{e.rule}'>{html.escape(e.text)}</li>" for e in trial.explanations)
    return f"<ul class='explain'>{items}</ul>"


def _resources(top: list[TrialData]) -> str:
    measured = any(
        getattr(t.point, attr) for t in top if t.point for _, attr in charts.RESOURCES
    ) or any(t.point.gpu_memory_mb for t in top if t.point)
    note = "" if measured else "<p class='note'>This study recorded no CPU or GPU use (all zero).</p>"
    return note + _figure(charts.resources_figure(top), "resources")


def _accuracy(data: StudyData) -> str:
    rows = []
    for trial in data.trials:
        accuracy = trial.accuracy
        if not accuracy:
            continue
        outputs = "; ".join(
            f"{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in numbers.items() if isinstance(v, (int, float)))
            for name, numbers in (accuracy.get("outputs") or {}).items()
        )
        precision = (trial.record.spec.get("precision") if trial.record else None) or trial.trial.params.get(
            "precision", "fp32")
        rows.append(
            f"<tr><td>{trial.number}</td><td>{html.escape(str(precision))}</td>"
            f"<td class='num'>{accuracy.get('accuracy_drop', 0):.4g}</td><td class='num'>{accuracy.get('samples')}</td>"
            f"<td>{html.escape(outputs)}</td></tr>"
        )
    if not rows:
        return "<p class='note'>No trial checked its answers (no validation batch).</p>"
    return ("<table id='accuracy'><tr><th>trial</th><th>precision</th><th>accuracy drop</th><th>samples</th>"
            "<th>per output</th></tr>" + "".join(rows) + "</table>")


def _importances(data: StudyData) -> str:
    if not data.importances:
        return f"<p class='note'>{html.escape(data.importance_note or 'no parameter importances')}</p>"
    return _figure(charts.importances_figure(data), "importances")


def _trials_table(data: StudyData) -> str:
    rows = []
    for trial in data.trials:
        marks = []
        if trial.number == data.recommended:
            marks.append("recommended")
        if trial.is_default:
            marks.append("default")
        state = trial.trial.state.name
        css = "fail" if state == "FAIL" else "" if trial.feasible or not trial.complete else "infeasible"
        if css == "infeasible":
            marks.append("infeasible")
        m = trial.metrics
        rows.append(
            f"<tr class='{css}' id='trial-{trial.number}'><td>{trial.number}</td><td>{state}</td>"
            f"<td>{html.escape(trial.params_text())}</td>"
            f"<td class='num'>{_fmt(m.get('throughput'))}</td><td class='num'>{_fmt(m.get('latency_p99_ms'))}</td>"
            f"<td class='num'>{_fmt(m.get('concurrency'))}</td><td>{' '.join(marks)}</td>"
            f"<td>{_explanations(trial)}</td></tr>"
        )
    return ("<table id='trials'><tr><th>trial</th><th>state</th><th>config</th><th>infer/s</th><th>p99 ms</th>"
            "<th>concurrency</th><th></th><th>reading</th></tr>" + "".join(rows) + "</table>")


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else ""
