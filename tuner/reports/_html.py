"""One self-contained HTML file about a study: charts, readings and the recommended config.

    write_html(gather(study, store), Path("report.html"))

Plotly's JavaScript is embedded once in the page, so the file opens offline. Each chart is a
``div`` with a fixed id (``pareto``, ``curves``, ``breakdown``, ``batches``, ``resources``,
``importances``), and each table a ``table`` with one (``configs``, ``accuracy``, ``trials``),
which the tests look for in the rendered page. The page shows only what was measured: no GPU
series on a CPU study, no concurrency curve where one concurrency was measured.
"""

from __future__ import annotations

import html
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from tuner.reports import _charts as charts
from tuner.reports._data import ConfigData, StudyData, TrialData
from tuner.reports._verify import verifications_html
from tuner.study import baseline_doubt, nothing_measured
from tuner.study import gain as verdict_gain

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 4px 8px; border-bottom: 1px solid #eee;
text-align: left; vertical-align: top; } td.num { text-align: right; } tr.infeasible, tr.fail, tr.pruned { color: #888; }
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
    if data.info is not None:
        sections.append(verifications_html(data.info))
    if top:
        gpu = data.gpu_measured()
        sections += [
            _section("Throughput and latency across concurrency", _curves(data, top)),
            _section("Where the time goes", _described(top) + _figure(charts.breakdown_figure(top), "breakdown")),
            _section("Batch sizes the server formed", _figure(charts.batches_figure(top), "batches")),
            _section("CPU and GPU use" if gpu else "CPU use", _resources(top, gpu)),
        ]
    sections.append(_section("Accuracy against FP32", _accuracy(data)))
    sections.append(_section("Parameter importances", _importances(data)))
    sections.append(_section("Configs", _configs_table(data)))
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
        states[trial.state] = states.get(trial.state, 0) + 1
    model = (data.study_file.get("model") or {}).get("name", "?")
    objectives = ", ".join(f"{m} ({d})" for m, d in zip(data.metric_names, data.directions))
    constraints = (
        ", ".join(
            f"{m} " + " ".join(f"{k} {v:g}" for k, v in b.items() if v is not None) for m, b in data.bounds.items()
        )
        or "none"
    )
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
    infeasible = sum(1 for c in data.configs if not c.feasible)
    return (
        f"<h1>Study {html.escape(data.name)}</h1><p>model <b>{html.escape(str(model))}</b> · objectives "
        f"{html.escape(objectives)} · constraints {html.escape(constraints)}</p>"
        f"<p>{len(data.trials)} trials: {html.escape(counts)}; {len(data.configs)} configs measured "
        f"({infeasible} infeasible by the median of their loads, greyed below)</p>"
    )


def _recommendation(data: StudyData) -> str:
    rec, best = data.recommendation, data.config(data.recommended)
    if rec is None or best is None:
        said = nothing_measured([t.stored.state for t in data.trials], reasons="in the table of trials")
        said = said or "no feasible config: loosen the constraints or widen the search space"
        return _section("Recommendation", f"<p>{html.escape(said.capitalize())}.</p>")
    default = data.config(data.default)
    gain = ""
    if default is not None and default.result.key != best.result.key:
        parts = []
        for name in ("throughput", "latency_p99_ms"):
            ratio = verdict_gain(best.result, default.result, name)
            if ratio is not None:
                parts.append(f"{name} x{ratio:.2f}")
        gain = f"<p>Against the default config (trial {default.number}, medians): {html.escape(', '.join(parts))}</p>"
        if default.result.doubts:
            gain += f"<p class='doubt'>{html.escape(baseline_doubt(default.result).capitalize())}.</p>"
    pbtxt = best.trial.record.config_pbtxt if best.trial.record else ""
    return _section(
        "Recommendation",
        f"<p><b>Trial {best.number}</b>: {html.escape(best.params_text())} · {_numbers(best)}</p>"
        f"<p id='reason'>{html.escape(rec.reason)}</p>{gain}"
        f"{_explanations(best.trial)}<details><summary>config.pbtxt</summary><pre>{html.escape(pbtxt)}</pre></details>",
    )


def _numbers(config: ConfigData) -> str:
    throughput, p50, p99 = (config.metric(m) for m in ("throughput", "latency_p50_ms", "latency_p99_ms"))
    if throughput is None or p50 is None or p99 is None:
        return ""
    point = config.point
    at = f" at concurrency {point.concurrency}" if point else ""
    return html.escape(
        f"median {throughput:.4g} infer/s, p50 {p50:.3g} ms, p99 {p99:.3g} ms{at} ({config.loads_text()})"
    )


def _explanations(trial: TrialData) -> str:
    if not trial.explanations:
        return ""
    items = "".join(f"<li data-rule='{e.rule}'>{html.escape(e.text)}</li>" for e in trial.explanations)
    return f"<ul class='explain'>{items}</ul>"


def _described(top: list[ConfigData]) -> str:
    """Which load each chart bar stands for: a config's representative load, not one chosen by chance."""
    parts = []
    for config in top:
        if config.loads > 1:
            parts.append(f"{config.label} stands for its config's {config.loads} loads (the one nearest the median)")
    if not parts:
        return ""
    return f"<p class='note'>{html.escape('; '.join(parts))}.</p>"


def _curves(data: StudyData, top: list[ConfigData]) -> str:
    concurrencies = sorted({p.concurrency for c in top for p in c.curve})
    if len(concurrencies) > 1:
        return _figure(charts.curves_figure(data, top), "curves")
    measured = f"concurrency {concurrencies[0]}" if concurrencies else "one concurrency"
    return (
        f"<p class='note' id='no-curves'>Each config was measured at {html.escape(measured)} only: there is no "
        "curve to draw. To measure one, set <code>load.concurrency: auto</code> (the tuner looks for the highest "
        "throughput within the latency budget) or a list such as <code>load.concurrency: [1, 4, 16]</code> in "
        "the study file.</p>"
    )


def _resources(top: list[ConfigData], gpu: bool) -> str:
    measured = any(getattr(c.point, attr) for c in top if c.point for _, attr in charts.measured_resources(gpu))
    what = "CPU or GPU" if gpu else "CPU"
    note = "" if measured else f"<p class='note'>This study recorded no {what} use (all zero).</p>"
    return note + _figure(charts.resources_figure(top, gpu), "resources")


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
        precision = trial.stored.spec.get("precision", "fp32")
        rows.append(
            f"<tr><td>{trial.number}</td><td>{html.escape(str(precision))}</td>"
            f"<td class='num'>{accuracy.get('accuracy_drop', 0):.4g}</td><td class='num'>{accuracy.get('samples')}</td>"
            f"<td>{html.escape(outputs)}</td></tr>"
        )
    if not rows:
        return "<p class='note'>No trial checked its answers (no validation batch).</p>"
    return (
        "<table id='accuracy'><tr><th>trial</th><th>precision</th><th>accuracy drop</th><th>samples</th>"
        "<th>per output</th></tr>" + "".join(rows) + "</table>"
    )


def _importances(data: StudyData) -> str:
    if not data.importances:
        return f"<p class='note'>{html.escape(data.importance_note or 'no parameter importances')}</p>"
    return _figure(charts.importances_figure(data), "importances")


def _configs_table(data: StudyData) -> str:
    """One row per config: the trial that stands for it, the medians of its loads, their interval, the marks."""
    rows = []
    for config in data.configs:
        marks = []
        if config.number == data.recommended:
            marks.append("recommended")
        if config.is_default:
            marks.append("default")
        if config.number in data.front:
            marks.append("front")
        css = "" if config.feasible else "infeasible"
        numbers = [str(t.number) for t in config.result.loads]
        loads = f"trial {numbers[0]}" if len(numbers) == 1 else f"trials {', '.join(numbers)}"
        rows.append(
            f"<tr class='{css}' id='config-{config.number}'><td>{config.number}</td>"
            f"<td>{html.escape(config.params_text())}</td>"
            f"<td class='num'>{_fmt(config.metric('throughput'))}</td>"
            f"<td class='num'>{_fmt(config.metric('latency_p99_ms'))}</td>"
            f"<td class='num'>{config.point.concurrency if config.point else ''}</td>"
            f"<td class='num'>{config.loads}</td><td>{html.escape(config.loads_text())} ({loads})</td>"
            f"<td>{' '.join(marks)}</td><td>{html.escape(config.failed_text())}</td></tr>"
        )
    if not rows:
        return "<p class='note'>No config was measured.</p>"
    return (
        "<table id='configs'><tr><th>trial</th><th>config</th><th>median infer/s</th><th>median p99 ms</th>"
        "<th>concurrency</th><th>loads</th><th>interval</th><th></th><th>constraints</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _trials_table(data: StudyData) -> str:
    """One row per trial (one load each); a re-measurement or a reused result says of which config."""
    rows = []
    for trial in data.trials:
        marks = []
        if trial.number == data.recommended:
            marks.append("recommended")
        if trial.is_default:
            marks.append("default")
        stored = trial.stored
        if stored.remeasure_of is not None:
            marks.append(f"again of {stored.remeasure_of}")
        if stored.reused_from is not None:
            marks.append(f"reused {stored.reused_from}")
        css = {"FAIL": "fail", "PRUNED": "pruned"}.get(trial.state, "")
        css = css or ("" if trial.feasible or not trial.complete else "infeasible")
        if css == "infeasible":
            marks.append("infeasible")
        m = trial.metrics
        rows.append(
            f"<tr class='{css}' id='trial-{trial.number}'><td>{trial.number}</td><td>{trial.state}</td>"
            f"<td>{html.escape(trial.params_text())}</td>"
            f"<td class='num'>{_fmt(m.get('throughput'))}</td><td class='num'>{_fmt(m.get('latency_p99_ms'))}</td>"
            f"<td class='num'>{_fmt(m.get('concurrency'))}</td><td>{' '.join(marks)}</td>"
            f"<td>{_explanations(trial)}</td></tr>"
        )
    return (
        "<table id='trials'><tr><th>trial</th><th>state</th><th>config</th><th>infer/s</th><th>p99 ms</th>"
        "<th>concurrency</th><th></th><th>reading</th></tr>" + "".join(rows) + "</table>"
    )


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
