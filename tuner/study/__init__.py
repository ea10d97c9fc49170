"""The study loop: ask the sampler, measure on the workers, tell Optuna, recommend.

    summary = StudyRunner(cfg, store).run()
    recommendation = recommend(config_results(stored.trials, stored.info), stored.info)

``plan`` is its set-up, built once; ``transfer`` the configs of earlier studies it starts from;
``runner`` the loop (reuse of measured configs, interrupted trials, Ctrl-C); ``results`` a
trial's values; ``remeasure`` confirms the contenders; ``verdict`` judges configs by the median
of their loads (the front, the one recommendation rule); ``record`` writes landscapes.
"""

from __future__ import annotations

from tuner.study._plan import StudyPlan, plan_study
from tuner.study._record import record_landscape, recording_config
from tuner.study._runner import RunSummary, StudyRunner, TrialEvent
from tuner.study._trials import interrupted_trials
from tuner.study._verdict import (
    ConfigResult,
    Recommendation,
    baseline_doubt,
    by_number,
    config_results,
    default_result,
    gain,
    nearest_misses,
    nothing_measured,
    pareto_front,
    ranked,
    recommend,
)

__all__ = [
    "ConfigResult",
    "Recommendation",
    "RunSummary",
    "StudyPlan",
    "StudyRunner",
    "TrialEvent",
    "baseline_doubt",
    "by_number",
    "config_results",
    "default_result",
    "gain",
    "interrupted_trials",
    "nearest_misses",
    "nothing_measured",
    "pareto_front",
    "plan_study",
    "ranked",
    "recommend",
    "record_landscape",
    "recording_config",
]
