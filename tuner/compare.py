"""Two studies side by side: their Pareto fronts and recommendations (CPU against GPU, before and after).

    a, b = gather(study_a, store_a), gather(study_b, store_b)
    for renderable in comparison(a, b): console.print(renderable)
    comparison_json(a, b)        # the same as one JSON document
"""

from __future__ import annotations

from typing import Any

from rich.columns import Columns
from rich.console import RenderableType
from rich.table import Table

from tuner.report_data import StudyData, TrialData

#: The numbers each front row shows, with their headers.
_COLUMNS = (("infer/s", "throughput"), ("p50 ms", "latency_p50_ms"), ("p99 ms", "latency_p99_ms"),
            ("conc.", "concurrency"))
#: Ratios B/A shown for the two recommendations.
_RATIOS = ("throughput", "latency_p50_ms", "latency_p99_ms")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def front_table(data: StudyData) -> Table:
    """The study's feasible front, best first, the recommendation marked."""
    table = Table(title=f"{data.name}: Pareto front ({len(data.front)} of {len(data.trials)} trials)")
    table.add_column("trial", justify="right")
    table.add_column("config")
    for header, _ in _COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("note")
    for trial in data.front_trials():
        note = "[green]recommended[/]" if trial.number == data.recommended else ""
        if trial.is_default:
            note = (note + " default").strip()
        table.add_row(str(trial.number), trial.params_text(), *(_fmt(trial.metrics.get(k)) for _, k in _COLUMNS), note)
    if not data.front:
        table.add_row("", "[yellow]no feasible trial[/]", *("" for _ in _COLUMNS), "")
    return table


def recommendation_table(a: StudyData, b: StudyData) -> Table:
    """The two recommendations, and B's numbers as a multiple of A's."""
    ra, rb = a.trial(a.recommended), b.trial(b.recommended)
    table = Table(title="Recommendations")
    table.add_column("")
    table.add_column(f"A: {a.name}")
    table.add_column(f"B: {b.name}")
    table.add_column("B / A", justify="right")
    table.add_row("trial", _number(ra), _number(rb), "")
    table.add_row("config", ra.params_text() if ra else "", rb.params_text() if rb else "", "")
    for metric in _RATIOS:
        va = ra.metrics.get(metric) if ra else None
        vb = rb.metrics.get(metric) if rb else None
        ratio = f"x{vb / va:.2f}" if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va else ""
        table.add_row(metric, _fmt(va), _fmt(vb), ratio)
    table.add_row("model", _model(a), _model(b), "")
    table.add_row("trials (complete)", f"{len(a.trials)} ({len(a.complete)})", f"{len(b.trials)} ({len(b.complete)})",
                  "")
    return table


def comparison(a: StudyData, b: StudyData) -> list[RenderableType]:
    """What `tuner compare` prints: both fronts side by side, then the recommendations."""
    return [Columns([front_table(a), front_table(b)], expand=False), recommendation_table(a, b)]


def comparison_json(a: StudyData, b: StudyData) -> dict[str, Any]:
    """Both fronts and recommendations, and B's recommendation as a multiple of A's."""
    ra, rb = a.trial(a.recommended), b.trial(b.recommended)
    ratios = {}
    for metric in _RATIOS:
        va = ra.metrics.get(metric) if ra else None
        vb = rb.metrics.get(metric) if rb else None
        ratios[metric] = vb / va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va else None
    return {"a": _study_json(a), "b": _study_json(b), "b_over_a": ratios}


def _study_json(data: StudyData) -> dict[str, Any]:
    return {
        "study": data.name,
        "model": _model(data),
        "recommended_trial": data.recommended,
        "pareto_front": [
            {"number": t.number, "params": t.trial.params, "metrics": t.metrics} for t in data.front_trials()
        ],
    }


def _number(trial: TrialData | None) -> str:
    return str(trial.number) if trial else "none feasible"


def _model(data: StudyData) -> str:
    return str((data.study_file.get("model") or {}).get("name", "?"))
