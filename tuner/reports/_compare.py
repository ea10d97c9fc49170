"""Two studies side by side: their Pareto fronts and recommendations (CPU against GPU, before and after).

a, b = gather(study_a, store_a), gather(study_b, store_b)
for renderable in comparison(a, b): console.print(renderable)
comparison_json(a, b)        # the same as one JSON document
"""

from __future__ import annotations

from typing import Any

from rich.columns import Columns
from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tuner.config import LoadSettings
from tuner.reports._data import ConfigData, StudyData
from tuner.storage import bounds_text

#: The numbers each front row shows (medians over a config's loads), with their headers.
_COLUMNS = (("infer/s", "throughput"), ("p50 ms", "latency_p50_ms"), ("p99 ms", "latency_p99_ms"))
#: Ratios B/A shown for the two recommendations.
_RATIOS = ("throughput", "latency_p50_ms", "latency_p99_ms")
#: The load settings that change what a throughput or a latency means: studies that differ in one
#: measured another path (the tensors' transport, the client), not only another config.
_MEASURED_BY = ("engine", "protocol", "shared_memory", "input_data", "concurrency")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def front_table(data: StudyData) -> Table:
    """The study's feasible front of configs, best first, the recommendation marked."""
    # a storage may hold studies named by other tools: names and reasons are text, not markup
    table = Table(title=escape(f"{data.name}: Pareto front ({len(data.front)} of {len(data.configs)} configs)"))
    table.add_column("trial", justify="right")
    table.add_column("config")
    for header, _ in _COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("conc.", justify="right")
    table.add_column("loads")
    table.add_column("note")
    for config in data.front_configs():
        note = "[green]recommended[/]" if config.number == data.recommended else ""
        if config.is_default:
            note = (note + " default").strip()
        point = config.point
        table.add_row(
            str(config.number),
            config.params_text(),
            *(_fmt(config.metric(k)) for _, k in _COLUMNS),
            str(point.concurrency) if point else "",
            config.loads_text(),
            note,
        )
    if not data.front:
        table.add_row("", "[yellow]no feasible config[/]", *("" for _ in _COLUMNS), "", "", "")
    return table


def _ratios(ra: ConfigData | None, rb: ConfigData | None) -> dict[str, float | None]:
    ratios: dict[str, float | None] = {}
    for metric in _RATIOS:
        va = ra.metric(metric) if ra else None
        vb = rb.metric(metric) if rb else None
        ratios[metric] = vb / va if va is not None and vb is not None and va else None
    return ratios


def recommendation_table(a: StudyData, b: StudyData) -> Table:
    """The two recommendations (medians of their loads), and B's numbers as a multiple of A's."""
    ra, rb = a.config(a.recommended), b.config(b.recommended)
    table = Table(title="Recommendations")
    table.add_column("")
    table.add_column(escape(f"A: {a.name}"))
    table.add_column(escape(f"B: {b.name}"))
    table.add_column("B / A", justify="right")
    table.add_row("trial", _number(ra), _number(rb), "")
    table.add_row("config", ra.params_text() if ra else "", rb.params_text() if rb else "", "")
    table.add_row("loads", ra.loads_text() if ra else "", rb.loads_text() if rb else "", "")
    ratios = _ratios(ra, rb)
    for metric in _RATIOS:
        ratio = ratios[metric]
        table.add_row(
            f"median {metric}",
            _fmt(ra.metric(metric) if ra else None),
            _fmt(rb.metric(metric) if rb else None),
            f"x{ratio:.2f}" if ratio is not None else "",
        )
    table.add_row("why", escape(_reason(a)), escape(_reason(b)), "")
    table.add_row("model", escape(_model(a)), escape(_model(b)), "")
    table.add_row("trials (configs)", f"{len(a.trials)} ({len(a.configs)})", f"{len(b.trials)} ({len(b.configs)})", "")
    return table


def comparison(a: StudyData, b: StudyData) -> list[RenderableType]:
    """What `tuner compare` prints: both fronts side by side, then the recommendations."""
    shown: list[RenderableType] = [Columns([front_table(a), front_table(b)], expand=False), recommendation_table(a, b)]
    differences = measured_differently(a, b)
    if differences:
        note = "measured differently, so B / A is not the configs' doing alone: " + "; ".join(differences)
        shown.append(Text(note, style="yellow"))
    if judged := judged_differently(a, b):
        shown.append(
            Text(f"each recommendation is the best under its own study's constraints: {judged}", style="yellow")
        )
    return shown


def judged_differently(a: StudyData, b: StudyData) -> str | None:
    """``latency_p99_ms <= 20 in A, latency_p99_ms <= 5 in B`` where the two studies' constraints differ."""
    ta, tb = bounds_text(a.bounds), bounds_text(b.bounds)
    return None if ta == tb else f"{ta} in A, {tb} in B"


def measured_differently(a: StudyData, b: StudyData) -> list[str]:
    """The model and the load settings (``_MEASURED_BY``) the two studies ran with that differ, as ``name: A, B``."""
    models = [f"model: {_model(a)} in A, {_model(b)} in B"] if _model(a) != _model(b) else []
    la, lb = _load(a), _load(b)
    if la is None or lb is None:
        return models
    return models + [
        f"load.{name}: {getattr(la, name)} in A, {getattr(lb, name)} in B"
        for name in _MEASURED_BY
        if getattr(la, name) != getattr(lb, name)
    ]


def _load(data: StudyData) -> LoadSettings | None:
    """The study's load settings with their defaults, where it stored a study file that still validates."""
    try:
        return LoadSettings.model_validate(data.study_file.get("load") or {})
    except ValueError:  # pydantic's ValidationError: a file of another version of the tuner
        return None


def comparison_json(a: StudyData, b: StudyData) -> dict[str, Any]:
    """Both fronts and recommendations, and B's recommendation as a multiple of A's (by medians)."""
    ratios = _ratios(a.config(a.recommended), b.config(b.recommended))
    return {
        "a": _study_json(a),
        "b": _study_json(b),
        "b_over_a": ratios,
        "measured_differently": measured_differently(a, b),
        "judged_differently": judged_differently(a, b),
    }


def _study_json(data: StudyData) -> dict[str, Any]:
    return {
        "study": data.name,
        "model": _model(data),
        "recommended_trial": data.recommended,
        "reason": data.recommendation.reason if data.recommendation else None,
        "pareto_front": [
            {
                "number": c.number,
                "params": c.result.params,
                "metrics": c.result.median_metrics(),
                "loads": [t.number for t in c.result.loads],
                "interval": list(c.result.interval),
            }
            for c in data.front_configs()
        ],
    }


def _number(config: ConfigData | None) -> str:
    return str(config.number) if config else "none feasible"


def _reason(data: StudyData) -> str:
    return data.recommendation.reason if data.recommendation else ""


def _model(data: StudyData) -> str:
    return str((data.study_file.get("model") or {}).get("name", "?"))
