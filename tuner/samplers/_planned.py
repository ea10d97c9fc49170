"""A sampler that picks whole configs itself, for the grid and the quick search.

Optuna asks a sampler one parameter at a time; these samplers decide the whole config in
``before_trial`` and keep it in the trial's system attributes (as Optuna's GridSampler does),
then answer each parameter from it. A trial enqueued with fixed params is left to those.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from tuner.samplers._space import Space
from tuner.storage import ATTR_INTERRUPTED, ATTR_NO_VARIANT

ATTR_PLANNED = "tuner:planned"


class PlannedSampler(BaseSampler):
    """Base class: subclasses say which config a trial gets (``plan``) and when they are done.

    Args:
        space: The study's search space.
        seed: Seeds the order of proposals and the fallback random sampler.
    """

    #: What the study's summary says when the sampler ends it (``is_exhausted``).
    exhausted_reason = "the sampler has nothing left to propose"

    def __init__(self, space: Space, seed: int | None = None) -> None:
        self.space = space
        self.seed = seed
        self._fallback = RandomSampler(seed=seed)

    def plan(self, study: Study, trial: FrozenTrial) -> dict[str, Any] | None:
        """The params of the next config, or None when there is nothing left to propose."""
        raise NotImplementedError

    def has_proposal(self, study: Study) -> bool:
        """True when ``plan`` would propose a config now."""
        raise NotImplementedError

    def is_exhausted(self, study: Study) -> bool:
        """True when no trial waits in the queue and ``plan`` has nothing to propose now."""
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        return not waiting and not self.has_proposal(study)

    def visited(self, study: Study, exclude: int | None = None) -> set[str]:
        """Spec keys of every config a trial of the study has, runs or will run."""
        keys = set()
        for trial in study.get_trials(deepcopy=False):
            if trial.number == exclude:
                continue
            params = trial_params(trial)
            if params:
                keys.add(self.space.key_of(params))
        return keys

    def unmade(self, study: Study) -> Callable[[dict[str, Any]], bool]:
        """Whether a config's variant is one the model cannot have, as a failed trial found
        (``ATTR_NO_VARIANT``): its precision failed to build, and every config that builds it fails
        the same way. TensorRT counts apart: where the server runs it natively, it takes the precision
        as its own setting and builds no variant."""
        lost = {
            (precision, _on_tensorrt(self.space, trial_params(t)))
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if (precision := t.user_attrs.get(ATTR_NO_VARIANT)) is not None and trial_params(t)
        }
        if not lost:
            return lambda params: False
        return lambda params: (self.space.to_spec(params).precision, _on_tensorrt(self.space, params)) in lost

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if "fixed_params" in trial.system_attrs or ATTR_PLANNED in trial.system_attrs:
            return
        params = self.plan(study, trial)
        if params is not None:
            # Optuna offers no public setter; its own GridSampler does the same
            study._storage.set_trial_system_attr(trial._trial_id, ATTR_PLANNED, params)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        planned = trial.system_attrs.get(ATTR_PLANNED) or {}
        if param_name in planned:
            return planned[param_name]
        # Nothing planned (the sampler was asked past its end): a random config.
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        return None


def _on_tensorrt(space: Space, params: dict[str, Any]) -> bool:
    return space.to_spec(params).accelerator == "tensorrt"


def trial_params(trial: FrozenTrial) -> dict[str, Any]:
    """The params a trial has or is bound to have (enqueued, planned, or suggested)."""
    return {
        **trial.system_attrs.get("fixed_params", {}),
        **trial.system_attrs.get(ATTR_PLANNED, {}),
        **trial.params,
    }


def accelerators_of(params: Mapping[str, Any]) -> set[str]:
    """The accelerators a config's params name: its own, or (a pipeline's) each model's."""
    return {str(value) for knob, value in params.items() if is_accelerator(knob)}


def is_accelerator(knob: str) -> bool:
    return knob == "accelerator" or knob.endswith(".accelerator")


def unusable_accelerators(trials: Sequence[FrozenTrial]) -> set[str]:
    """Accelerators that failed a config and ran none (of a pipeline: as any of its models' accelerator). An
    interrupted trial did not fail, and one whose variant could not be built (``ATTR_NO_VARIANT``) failed
    before any accelerator had it."""
    ran: set[str] = set()
    failed: set[str] = set()
    for trial in trials:
        accelerators = accelerators_of(trial_params(trial))
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            ran |= accelerators
        elif trial.state == TrialState.FAIL and not (
            trial.user_attrs.get(ATTR_INTERRUPTED) or trial.user_attrs.get(ATTR_NO_VARIANT) is not None
        ):
            failed |= accelerators
    return failed - ran
