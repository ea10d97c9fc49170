"""The sampler contract: what the study loop needs of a sampler, beyond Optuna's own.

A sampler is an ``optuna.samplers.BaseSampler`` made by ``make_sampler(name, seed, space)``.
The study loop (tuner.study) uses it only through the Optuna study, and relies on this
(tests/contracts runs one suite against every name in ``SAMPLERS``):

- Enqueued configs come first and as given: a trial from ``study.enqueue_trial(params)`` has
  exactly those params (the default config and the warm start of ``initial_params``, the
  configs an interrupted run left, the re-measurements).
- Every trial it proposes is a config of the space: ``space.suggest(trial)`` asks each searched
  knob (the queue delay only under dynamic batching) and gets a value of its distribution.
- Trials in flight: several trials may be asked before any is told (one per worker), and are
  told in any order, COMPLETE with one value per objective and the constraints set by
  ``trial.set_constraint``, PRUNED (a config its screen showed hopeless: the constraints of the
  screen's point, and with one objective its value there as an intermediate value), or FAIL (a
  config that failed, or one interrupted and enqueued again).
- It keeps in the study whatever it must know: each run of a study makes a new sampler, and a
  new sampler on a reopened study goes on where the old one stopped.
- The same seed on the same history gives the same proposals.
- Where it promises new configs (``DISTINCT``: bo, grid, quick, and tpe and gp through
  ``UnmeasuredFirst``), no trial it plans is a config another trial of the study has, runs or
  waits for, while the space has one left.
- A sampler that can run out keeps ``Exhaustible``: the loop asks ``is_exhausted(study)``
  before each trial and stops asking once it is True, saying ``exhausted_reason`` in its summary.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from optuna.study import Study

#: Samplers that plan a config no trial of the study has while the space has one left.
DISTINCT: tuple[str, ...] = ("bo", "grid", "quick", "tpe", "gp")


@runtime_checkable
class Exhaustible(Protocol):
    """A sampler that ends the study when it has nothing left to propose (bo, grid, quick)."""

    #: What the study's summary says when the sampler ends it.
    exhausted_reason: str

    def is_exhausted(self, study: Study) -> bool:
        """True when no trial waits in the queue and the sampler has no config left to propose."""
        ...
