"""Bayesian optimization over the space's configs: the tuner's default sampler.

The space of a study is a few dozen to a few thousand distinct configs, and the question a
study answers is the recommendation: the best config by the first objective within the
constraints. So this sampler models exactly that, over every config the space has:

- each finished trial is a row of features: one column per value of each knob (a long
  numeric range, such as a queue delay in steps of 100 us, is one column scaled to [0, 1]);
  a knob a config lacks (the queue delay with batching off) is all zeros; on a CPU worker, one
  more knob is the threads the config runs against the worker's cores, by powers of two
  (``threads_knob``): 4 instances x 1 thread and 1 x 4 both fill 4 cores, which the instances'
  and the threads' own columns cannot tell the model;
- one model (``surrogate``: by default a Gaussian process, scikit-learn's Matern 5/2 with a noise
  term; tuner.samplers._surrogate) per quantity: the first
  objective (on a log scale where it is positive), each constraint (Optuna's convention:
  <= 0 holds), and whether the config ran at all (a FAIL trial counts as +1, a run as -1);
- where the first objective is the throughput, each reading's own noise (from the spread of the
  windows it was measured over; ``measured_noise``) is added to the objective model's noise term
  for that row, so a reading whose windows disagreed pulls the model less;
- a PRUNED trial (stopped after its screen, tuner.study) ran: its constraints are the screen's,
  and its objective the first objective's metric at the screen's point (the intermediate value
  Optuna keeps for a study of one objective, else the point's stored metrics); so a config pruned
  for its latency reads as infeasible, one pruned for its throughput as poor;
- a variant that failed every config it was tried at may not load at all (a provider lacking an
  operator fails every config): its configs are weighed by the probability that it loads, from how
  often configs of the variants that run fail (``variant_loads``);
- an accuracy bound (``accuracy_drop``) is a variant's (precision x accelerator x device): the
  accuracy check sends one sample per request, so batching and instances do not change a variant's
  answers. Where a measured config of the same variant decided it, it is known; elsewhere
  (``variant_accuracy``) its model's inputs are the variant's three values alone, so that the
  layouts the failing variants happened to be measured in do not read as failing;
- a queue delay that every batch of its config waits out under the study's load (a max batch size
  above the load's requests in flight: ``Space.delay_waited_out``) is proposed only once no other
  config is left (``waited_delays_last``): it adds latency and takes throughput;
- while a variant (precision x accelerator x device) has no trial, the proposal is one of the
  untried variants' configs (``variants_first``): a variant's accuracy is its own, and its speed
  differs from the others' by a factor the model cannot learn from them; but not those of an
  accelerator that failed a config and ran none (``unusable_last``), as the warm start leaves it out;
- every config no trial has, runs or waits for is scored by the log of its expected
  improvement over the best feasible value so far, plus the log of the probability that it
  meets every constraint and runs; the best one is proposed. Before anything is feasible, the
  most probably feasible config is, the constraints' models then taking a config far from every
  trial as on the bound (``unknown_at_bound``) rather than as missing it by the trials' mean.

With the warm start (the default config and three that are often good) the model has its
first rows at once; before ``n_startup_trials`` trials have finished it proposes unmeasured
configs at random, each knob's value drawn among its values (``startup_by_knob``). Once every
config has been measured, it has nothing left to propose and the study ends. Only the first
objective is modelled: the Pareto front is what the measured configs give (docs/benchmarks.md
compares the fronts).
"""

from __future__ import annotations

import functools
import math
import random
from typing import Any

import numpy as np
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tuner.samplers._planned import PlannedSampler, trial_params, unusable_accelerators
from tuner.samplers._space import Space
from tuner.samplers._surrogate import Model, fit, log_expected_improvement, log_prob_at_most_zero
from tuner.storage import ATTR_INTERRUPTED, ATTR_METRICS, ATTR_TIMINGS
from tuner.trial import ACCURACY_METRICS, InstanceKind

# threadpoolctl is imported where a model is fitted, as scipy and scikit-learn are (tuner.samplers._surrogate).

#: A numeric knob with more values than this is one scaled column; fewer, one column per value
#: (in the ``onehot`` surrogate; the ``structured`` one gives every numeric knob one column).
_ONE_HOT_MAX = 8
#: The models' inputs (``FeatureEncoder``) and kinds (tuner.samplers._surrogate): ``onehot``, every
#: knob's values as columns, Gaussian processes under one length scale; ``structured``, ordered knobs
#: as one ordered column each and the cores the config's threads ask for as a column of its own,
#: Gaussian processes with a length scale per column; ``forest``, those columns, random forests.
SURROGATES = {"onehot": "gp", "structured": "gp-ard", "forest": "forest"}
#: The log probability of a bound known not to hold: far below any the models give, yet finite, so
#: that the least bad config is still proposed where every one left is known to miss it.
_NEVER = -1e3
DEFAULT_SURROGATE = "onehot"
#: Whether every variant (precision x accelerator x device) is measured once, at its best-scored
#: config, before the model's proposals range over all of them (``ConfigBOSampler``).
VARIANTS_FIRST = True
#: Whether a candidate's score is its expected improvement per second of measuring it
#: (``ConfigBOSampler``, ``per_second``) rather than its expected improvement.
PER_SECOND = False
#: Whether the startup configs are spread over the space (``ConfigBOSampler``, ``spread``) rather than
#: drawn at random.
SPREAD_STARTUP = False
#: Whether each measured throughput's own noise, as the spread of its windows gives it, enters the
#: objective's model (``ConfigBOSampler``, ``measured_noise``).
MEASURED_NOISE = True
#: Whether a variant that has failed every config it was tried at is taken as one that may not load at
#: all (``ConfigBOSampler``, ``variant_loads``), beside the model of which configs run.
VARIANT_LOADS = True
#: Whether the variants measured first leave out those of an accelerator that failed a config and ran
#: none (``ConfigBOSampler``, ``unusable_last``), as the warm start leaves it out.
UNUSABLE_LAST = True
#: Whether the threads a config runs against the worker's cores are a knob of their own in the one-hot
#: encoding (``ConfigBOSampler``, ``threads_knob``; ``FeatureEncoder``): on, as held out it needed fewer trials
#: on synthetic landscapes of 4 and 16 cores, cold by a half, and on the recorded 2-core ones as many on the
#: whole (docs/benchmarks.md, "Held out: two families unlike any recorded landscape").
THREADS_KNOB = True
#: Whether the Gaussian processes' length scales are bounded by the distance between the space's two
#: farthest configs (``ConfigBOSampler``, ``bounded_scale``) rather than by a fixed 50: off, as it
#: needed more trials on the synthetic landscapes it was judged on (docs/benchmarks.md).
BOUNDED_SCALE = False
#: Whether the Gaussian processes' hyperparameters are the most probable under Optuna's ``GPSampler``
#: priors (``ConfigBOSampler``, ``gp_prior``; tuner.samplers._surrogate.log_prior) rather than the most
#: likely: off, as it needed as many trials as the likelihood's fit on held-out landscapes (docs/benchmarks.md).
GP_PRIOR = False
#: Whether the Gaussian processes' predictions are averaged over their length scales, each fit weighed
#: by its likelihood (``ConfigBOSampler``, ``gp_average``; tuner.samplers._surrogate.fit), rather than
#: taken at the most likely one: off, as held out it needed fewer trials warm-started but traded seeds cold
#: for it, and proposed more configs over a latency budget (docs/benchmarks.md).
GP_AVERAGE = False
#: Whether the configs whose queue delay every batch waits out under the study's load (``Space.delay_waited_out``)
#: are proposed only once no other config is left (``ConfigBOSampler``, ``waited_delays_last``).
WAITED_DELAYS_LAST = True
#: Whether a random startup config is drawn a knob at a time (``ConfigBOSampler``, ``startup_by_knob``) rather
#: than uniformly among the space's configs, of which a knob with many values makes up most.
STARTUP_BY_KNOB = True
#: Whether, before any config is feasible, the constraints' models take a config far from every trial as on its
#: bound (``ConfigBOSampler``, ``unknown_at_bound``) rather than at the mean of the trials, all of which miss it.
UNKNOWN_AT_BOUND = True
#: Whether an accuracy bound's model, for a variant no measured config decided, takes the variant's precision,
#: accelerator and device as its only inputs (``ConfigBOSampler``, ``variant_accuracy``) rather than the config's
#: every knob, from which it learnt that the layout two inaccurate variants were first measured in fails the bound.
VARIANT_ACCURACY = True
#: A measurement's throughput is the mean of its last three windows, and ``throughput_spread_pct`` their
#: range: the standard deviation of such a mean is about the range / 2.93 (a normal sample of three
#: has an expected range of 1.693 standard deviations; the mean of three, 1/sqrt(3) of one).
_RANGE_TO_SD_OF_MEAN = 1.693 * math.sqrt(3.0)


class ConfigBOSampler(PlannedSampler):
    """Proposes the unmeasured config with the highest constrained expected improvement.

    Args:
        space: The study's search space; it must be small enough to enumerate.
        seed: Seeds the random startup configs and the models' fits.
        n_startup_trials: Finished trials (warm start included) before the model is used.
        surrogate: The models' inputs and kind (``SURROGATES``); None takes ``DEFAULT_SURROGATE``.
        variants_first: Once the model is used, propose from the variants no trial has tried yet,
            while there are any (None takes ``VARIANTS_FIRST``). A variant's accuracy, and its
            speed by a factor, are its own: the model cannot tell them from the others' results.
        per_second: Score each candidate by its expected improvement per second of measuring: one
            more model of the same kind models the log of the seconds each finished trial took (its
            ``timings_s``: variant, load, screen, measurement, unload), and its prediction for the
            candidate divides the improvement (None takes ``PER_SECOND``).
        spread: Choose each startup config (those before ``n_startup_trials``) as far as any from
            the configs the study has, by the knobs they differ in, rather than at random (None takes
            ``SPREAD_STARTUP``).
        measured_noise: Where the first objective is the throughput, give the objective's model each
            trial's own noise, from the spread of the windows it was measured over: a reading whose
            windows disagreed pulls the model less than one whose windows agreed (None takes
            ``MEASURED_NOISE``).
        variant_loads: Weigh each candidate by the probability that its variant can be loaded at
            all, where every trial of the variant failed (``_log_prob_variant_loads``): a provider
            that lacks an operator, or a precision the model cannot take, fails every config, which
            the model of which configs run, over all the knobs, learns only a config at a time (None
            takes ``VARIANT_LOADS``).
        unusable_last: Leave out of the variants measured first those of an accelerator that failed
            a config and ran none (``unusable_accelerators``): a provider that cannot load the model
            at one precision seldom loads it at another, and its configs are left to the models,
            which have learnt where it fails (None takes ``UNUSABLE_LAST``).
        bounded_scale: Bound the Gaussian processes' length scales by the distance between the two
            farthest configs of the space (``FeatureEncoder.diameter``): with a longer one, a fit of
            few rows is a smooth surface over the whole space that is next to certain of a config one
            knob from a measured one, and no longer looks there (None takes ``BOUNDED_SCALE``).
        gp_prior: Fit each Gaussian process's amplitude, length scale and noise to their most probable
            values under the priors of Optuna's ``GPSampler``, a length scale measured in knobs changed,
            rather than to the likelihood alone, which on a few rows often makes the model sure of every
            config near a measured one (None takes ``GP_PRIOR``).
        gp_average: Average each Gaussian process's predictions over its length scales, each fit
            weighed by its likelihood, rather than take them at the most likely scale: where a
            shorter scale fits the rows nearly as well, configs far from any row keep its doubt
            (None takes ``GP_AVERAGE``).
        waited_delays_last: Leave for last the configs whose batches can never fill under the study's
            load, at a queue delay above the space's lowest (``Space.delay_waited_out``): Triton's batcher
            holds such a batch for the whole delay, which adds latency and takes throughput whatever the
            model (None takes ``WAITED_DELAYS_LAST``).
        startup_by_knob: Draw each random startup config a knob at a time, each value of a knob as likely
            as another (``_draw``), rather than uniformly among the configs: with the queue delay in
            steps of 100 us, nearly every config of a space is one of batching with a delay, and a draw
            among the configs is nearly always one of them (None takes ``STARTUP_BY_KNOB``).
        unknown_at_bound: Before any config is feasible, fit the constraints' models with a prior mean at
            the bound (``fit``'s ``centered``): a config far from every trial is as likely to meet it as
            not. Centered on the trials, all of which miss it, the models make the most probably
            feasible config a neighbour of the least infeasible one, and the search walks from it a
            step at a time (None takes ``UNKNOWN_AT_BOUND``).
        threads_knob: Give the one-hot encoding one more knob: the threads the config runs against
            the worker's cores, by powers of two (``FeatureEncoder``). Instances and threads per
            instance are knobs of their own, and a model of their columns learns that 4 x 1 and
            1 x 4 both fill 4 cores only by measuring both (None takes ``THREADS_KNOB``).

    Raises:
        ConfigError: the space cannot be enumerated (a log range, or too many configs).
    """

    exhausted_reason = "every config of the space was measured"

    def __init__(
        self,
        space: Space,
        seed: int | None = None,
        n_startup_trials: int = 4,
        surrogate: str | None = None,
        variants_first: bool | None = None,
        per_second: bool | None = None,
        spread: bool | None = None,
        measured_noise: bool | None = None,
        variant_loads: bool | None = None,
        unusable_last: bool | None = None,
        bounded_scale: bool | None = None,
        threads_knob: bool | None = None,
        gp_prior: bool | None = None,
        gp_average: bool | None = None,
        waited_delays_last: bool | None = None,
        startup_by_knob: bool | None = None,
        unknown_at_bound: bool | None = None,
        variant_accuracy: bool | None = None,
    ) -> None:
        super().__init__(space, seed)
        self.n_startup_trials = n_startup_trials
        space.grid()  # raises where the space cannot be enumerated; the configs are listed when first needed
        self.surrogate = surrogate or DEFAULT_SURROGATE
        if self.surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {self.surrogate!r}; valid: {', '.join(SURROGATES)}")
        self.variants_first = VARIANTS_FIRST if variants_first is None else variants_first
        self.per_second = PER_SECOND if per_second is None else per_second
        self.spread = SPREAD_STARTUP if spread is None else spread
        self.measured_noise = MEASURED_NOISE if measured_noise is None else measured_noise
        self.variant_loads = VARIANT_LOADS if variant_loads is None else variant_loads
        self.unusable_last = UNUSABLE_LAST if unusable_last is None else unusable_last
        self.threads_knob = THREADS_KNOB if threads_knob is None else threads_knob
        self._encode = FeatureEncoder(space, structured=self.surrogate != "onehot", threads_knob=self.threads_knob)
        self._model = SURROGATES[self.surrogate]
        bounded = BOUNDED_SCALE if bounded_scale is None else bounded_scale
        self._longest = self._encode.diameter() if bounded else None
        # a length scale's unit: a knob's change, sqrt(2) apart in one-hot columns, 1 across an ordered column
        prior = GP_PRIOR if gp_prior is None else gp_prior
        self._prior_unit = (math.sqrt(2.0) if self.surrogate == "onehot" else 1.0) if prior else None
        self._average = GP_AVERAGE if gp_average is None else gp_average
        self.waited_delays_last = WAITED_DELAYS_LAST if waited_delays_last is None else waited_delays_last
        self.startup_by_knob = STARTUP_BY_KNOB if startup_by_knob is None else startup_by_knob
        self.unknown_at_bound = UNKNOWN_AT_BOUND if unknown_at_bound is None else unknown_at_bound
        self.variant_accuracy = VARIANT_ACCURACY if variant_accuracy is None else variant_accuracy
        self._rng = random.Random(seed)

    @functools.cached_property
    def combinations(self) -> list[dict[str, Any]]:
        """Every config of the space, as trial params."""
        return self.space.combinations()

    @functools.cached_property
    def _keys(self) -> list[str]:
        return [self.space.key_of(params) for params in self.combinations]

    @functools.cached_property
    def _waited(self) -> list[bool]:
        """Per config, whether its batches wait out their whole queue delay (``Space.delay_waited_out``)."""
        return [self.space.delay_waited_out(params) for params in self.combinations]

    @functools.cached_property
    def _features(self) -> np.ndarray:
        return np.array([self._encode(params) for params in self.combinations])

    def plan(self, study: Study, trial: FrozenTrial) -> dict[str, Any] | None:
        visited = self.visited(study, exclude=trial.number)
        unmade = self.unmade(study)
        left = [i for i, key in enumerate(self._keys) if key not in visited and not unmade(self.combinations[i])]
        if not left:
            return None
        if self.waited_delays_last:
            left = [i for i in left if not self._waited[i]] or left
        finished = _finished(study)
        if len(finished) < max(1, self.n_startup_trials):
            return self.combinations[self._startup_choice(left, visited)]
        if self.variants_first:
            unusable = unusable_accelerators(finished) if self.unusable_last else set()
            untried = {v for v in (self._variants[i] for i in left) if v[1] not in unusable}
            untried -= self._tried_variants(study, trial.number)
            if untried:
                left = [i for i in left if self._variants[i] in untried]
        from threadpoolctl import threadpool_limits

        # one thread: the matrices are small, and the cores belong to the measurements
        with threadpool_limits(limits=1):
            scores = self.acquisition(study, finished, self._features[left], [self._variants[i] for i in left])
            if self.per_second:
                scores = scores - self.log_seconds(finished, self._features[left])
        return self.combinations[left[int(np.argmax(scores))]]

    def _startup_choice(self, left: list[int], visited: set[str]) -> int:
        """A startup config: one at random, or (``spread``) one as far as any from the configs the
        study has, by the distance of their feature rows: the knobs they differ in, a long range by
        how far apart (ties at random)."""
        had = [i for i, key in enumerate(self._keys) if key in visited]
        if not self.spread or not had:
            return self._draw(left) if self.startup_by_knob else self._rng.choice(left)
        rows = self._features[had]
        nearest = np.abs(self._features[left][:, None, :] - rows[None, :, :]).sum(axis=2).min(axis=1)
        farthest = [i for i, distance in zip(left, nearest) if distance >= nearest.max() - 1e-9]
        return self._rng.choice(farthest)

    def _draw(self, left: list[int]) -> int:
        """One of ``left`` drawn a knob at a time, as Optuna's ``RandomSampler`` draws: each knob's value
        at random among those the configs still drawn from have (a knob the config lacks, such as the
        queue delay with batching off, as one value), so a knob of many values, such as a queue delay in
        steps of 100 us, weighs no more in the draw than one of two."""
        drawn = left
        for knob in self.space.distributions:
            values = sorted({repr(self.combinations[i].get(knob)) for i in drawn})
            value = self._rng.choice(values)
            drawn = [i for i in drawn if repr(self.combinations[i].get(knob)) == value]
        return self._rng.choice(drawn)

    def log_seconds(self, finished: list[FrozenTrial], candidates: np.ndarray) -> np.ndarray:
        """The log of the seconds measuring each candidate row would take, as a model of the
        finished trials' own (``timings_s``) predicts it; zeros while fewer than two trials say."""
        timed = [(t, sum((t.user_attrs.get(ATTR_TIMINGS) or {}).values())) for t in finished]
        timed = [(t, seconds) for t, seconds in timed if seconds > 0]
        if len(timed) < 2:
            return np.zeros(len(candidates))
        rows = np.array([self._encode(trial_params(t)) for t, _ in timed])
        logs = np.log([seconds for _, seconds in timed])
        model = self._fit(rows, logs, self._rng.randrange(2**31))
        mean, _ = model.predict(candidates, noise=False)
        return np.asarray(mean)

    @functools.cached_property
    def _variants(self) -> list[tuple[str, str, str]]:
        return [self.variant_of(params) for params in self.combinations]

    def _tried_variants(self, study: Study, exclude: int) -> set[tuple[str, str, str]]:
        """The variants a trial of the study has, runs or will run."""
        return {self.variant_of(params) for t in study.get_trials(deepcopy=False) if t.number != exclude
                if (params := trial_params(t))}  # fmt: skip

    def has_proposal(self, study: Study) -> bool:
        visited, unmade = self.visited(study), self.unmade(study)
        return any(key not in visited and not unmade(params) for key, params in zip(self._keys, self.combinations))

    def acquisition(
        self,
        study: Study,
        finished: list[FrozenTrial],
        candidates: np.ndarray,
        variants: list[tuple[str, str, str]] | None = None,
    ) -> np.ndarray:
        """Log constrained expected improvement of each candidate row (higher is better); with the
        candidates' ``variants`` (``variant_of``), an accuracy bound a measured config of the same
        variant decided is taken as known (``_known_accuracy``)."""
        features = np.array([self._encode(trial_params(t)) for t in finished])
        ran = np.array([t.state != TrialState.FAIL for t in finished])
        seed = self._rng.randrange(2**31)
        log_ok = np.zeros(len(candidates))
        if not ran.all():
            failed = self._fit(features, np.where(ran, -1.0, 1.0), seed)
            log_ok += log_prob_at_most_zero(failed, candidates)
            if variants is not None and self.variant_loads:
                log_ok += self._log_prob_variant_loads(finished, ran, variants)
        if not ran.any():
            return log_ok
        complete = [t for t, r in zip(finished, ran) if r]
        rows = features[ran]
        names = sorted(complete[0].constraints)
        limits = np.array([[t.constraints.get(n, 0.0) for n in names] for t in complete], dtype=float)
        limits = limits.reshape(len(complete), len(names))
        metric = study.metric_names[0] if study.metric_names else None
        valued = np.array([_first_value(t, metric) is not None for t in complete])
        feasible = (limits[valued] <= 0.0).all(axis=1)
        # before anything is feasible, a config no trial says anything of is as likely to meet a bound as not
        centered = feasible.any() or not self.unknown_at_bound
        for name, column in zip(names, limits.T):
            if name in ACCURACY_METRICS and variants is not None:
                if self.variant_accuracy:
                    term = self._variant_accuracy(complete, column, variants, seed, centered)
                else:
                    term = log_prob_at_most_zero(self._fit(rows, column, seed, centered=centered), candidates)
                term = self._known_accuracy(term, complete, column, variants)
            else:
                term = log_prob_at_most_zero(self._fit(rows, column, seed, centered=centered), candidates)
            log_ok += term
        if not valued.any():
            return log_ok
        scored = [t for t, v in zip(complete, valued) if v]
        values, on_log_scale = _objective(study, scored, metric)
        noise = _throughput_noise(study, scored) if self.measured_noise and on_log_scale else None
        model = self._fit(rows[valued], values, seed, noise)
        mean, std = model.predict(candidates, noise=False)
        if not feasible.any():
            return log_ok + 1e-6 * mean  # no feasible config yet: the likeliest one, the better if tied
        return log_expected_improvement(mean, np.maximum(std, 1e-9), values[feasible].max()) + log_ok

    def _fit(
        self, rows: np.ndarray, values: np.ndarray, seed: int, noise: np.ndarray | None = None, centered: bool = True
    ) -> Model:
        return fit(
            rows,
            values,
            seed,
            self._model,
            noise,
            longest=self._longest,
            prior_unit=self._prior_unit,
            average=self._average,
            centered=centered,
        )

    def _log_prob_variant_loads(
        self, finished: list[FrozenTrial], ran: np.ndarray, variants: list[tuple[str, str, str]]
    ) -> np.ndarray:
        """The log probability that each candidate's variant can be loaded at all, where its trials
        say it may not: a variant that has failed every config it was tried at.

        A variant either cannot be loaded (an operator its provider lacks, a precision the model cannot
        take: every config fails) or can, and then a config of it fails at the rate configs of the
        variants that have run fail (a server lost, memory for many instances), ``q``: the share of
        those variants' trials that failed, with one failure and one run added (Laplace's rule).
        With even odds before any trial, a variant whose ``k`` trials all failed can be loaded with
        probability ``q**k / (q**k + 1)``. A variant with a run, or with no trial, is left to the
        model of which configs run.
        """
        runs: dict[tuple[str, str, str], int] = {}
        fails: dict[tuple[str, str, str], int] = {}
        for trial, did_run in zip(finished, ran):
            counts = runs if did_run else fails
            variant = self.variant_of(trial_params(trial))
            counts[variant] = counts.get(variant, 0) + 1
        tried = sum(runs.values()) + sum(fails.get(v, 0) for v in runs)
        q = (sum(fails.get(v, 0) for v in runs) + 1) / (tried + 2)
        out = np.zeros(len(variants))
        for i, variant in enumerate(variants):
            k = fails.get(variant, 0)
            if k and variant not in runs:
                out[i] = k * math.log(q) - math.log1p(q**k)
        return out

    def _variant_accuracy(
        self,
        complete: list[FrozenTrial],
        values: np.ndarray,
        variants: list[tuple[str, str, str]],
        seed: int,
        centered: bool,
    ) -> np.ndarray:
        """An accuracy constraint's log probability per candidate, from a model whose inputs are the
        variants alone: one column per value of the precision, the accelerator and the device. An
        untried variant is then judged by the variants it shares a value with, the same in every layout."""
        measured = [self.variant_of(trial_params(t)) for t in complete]
        values_at = [sorted({v[i] for v in (*measured, *variants)}) for i in range(3)]

        def encode(variant: tuple[str, str, str]) -> list[float]:
            return [float(variant[i] == value) for i in range(3) for value in values_at[i]]

        model = self._fit(np.array([encode(v) for v in measured]), values, seed, centered=centered)
        distinct = sorted(set(variants))
        log_p = dict(zip(distinct, log_prob_at_most_zero(model, np.array([encode(v) for v in distinct]))))
        return np.array([log_p[v] for v in variants])

    def _known_accuracy(
        self, term: np.ndarray, complete: list[FrozenTrial], values: np.ndarray, variants: list[tuple[str, str, str]]
    ) -> np.ndarray:
        """An accuracy constraint's log probability, made certain where it is known: a variant's answers
        are those of its model file under its provider (precision x accelerator x device) whatever
        the batching and instances, so one measured config of a variant says for all of them
        whether the bound holds."""
        held: dict[tuple[str, str, str], bool] = {}
        for trial, value in zip(complete, values):
            variant = self.variant_of(trial_params(trial))
            held[variant] = held.get(variant, True) and bool(value <= 0.0)
        out = term.copy()
        for i, candidate in enumerate(variants):
            known = held.get(candidate)
            if known is not None:
                out[i] = 0.0 if known else _NEVER
        return out

    def variant_of(self, params: dict[str, Any]) -> tuple[str, str, str]:
        """The variant of a config: its precision, accelerator and instance kind."""
        spec = self.space.to_spec(params)
        return spec.precision, spec.accelerator, spec.kind.value


class FeatureEncoder:
    """Trial params -> a row of numbers for the models.

    Args:
        space: The study's search space.
        structured: Ordered knobs (numbers) as one column each, by their rank among the space's
            values, and one more column for the threads the config runs against the worker's
            cores (instances x threads per instance / cores, on a log scale: a general fact of
            CPU inference is that asking for more threads than there are cores costs, whatever the
            model). Otherwise every value of a knob with few values is a column of its own.
        threads_knob: Without ``structured``, the threads the config runs against the worker's cores
            as one more knob, a column per level (log2 of threads / cores, rounded, from -3 to 3): two
            configs that ask for as many threads (2 instances x 2 threads, 4 x 1) share a level, so
            what one's reading says of running the cores full, or oversubscribed, reaches the other.
    """

    def __init__(self, space: Space, structured: bool = False, threads_knob: bool = False) -> None:
        self.space = space
        #: (knob, how it is encoded, the space's values): "onehot" a column per value, "rank" one
        #: column by the value's rank, "scaled" one column by the value between the lowest and highest
        self.columns: list[tuple[str, str, list[Any]]] = []
        for knob in space.distributions:
            values = space.values(knob)
            if not all(_is_number(v) for v in values):
                self.columns.append((knob, "onehot", values))
            elif len(values) > _ONE_HOT_MAX:
                self.columns.append((knob, "scaled", [min(values), max(values)]))
            else:  # few numbers: their rank (1, 8, 32 are evenly apart), or a column each
                self.columns.append(
                    (knob, "rank" if structured else "onehot", sorted(values) if structured else values)
                )
        on_cpu = space.kind is InstanceKind.CPU or "openvino" in _accelerators(space)
        #: How the threads a config runs against the worker's cores are encoded: "scaled", one
        #: column; "onehot", a column per level (a power of two); None, not at all
        self.threads: str | None = ("scaled" if structured else "onehot" if threads_knob else None) if on_cpu else None

    def diameter(self) -> float:
        """The distance between the two farthest configs' rows, at most: sqrt(2) for each knob of a
        column per value (two values differ in two columns), 1 for each column in [0, 1]."""
        encodings = [encoding for _knob, encoding, _values in self.columns] + [self.threads]
        return math.sqrt(sum(2.0 if encoding == "onehot" else 1.0 for encoding in encodings if encoding))

    def __call__(self, params: dict[str, Any]) -> list[float]:
        merged = {**self.space.fixed, **params}
        row: list[float] = []
        for knob, encoding, values in self.columns:
            value = merged.get(knob) if self.space.asked(knob, merged) else self.space.unasked_value(knob, merged)
            if encoding == "onehot":
                row.extend(1.0 if value == v else 0.0 for v in values)
            elif value is None:
                row.append(0.0)
            elif encoding == "rank":
                row.append(values.index(value) / max(1, len(values) - 1) if value in values else 0.0)
            else:
                row.append(max(0.0, (float(value) - values[0]) / (values[1] - values[0])))
        if self.threads is not None:
            threads = self.space.to_spec(params).cpu_threads_used
            load = min(max(math.log2(threads / self.space.worker_cores), -3.0), 3.0) if threads else 0.0
            if self.threads == "onehot":
                row.extend(1.0 if round(load) == level else 0.0 for level in range(-3, 4))
            else:
                row.append((load + 3.0) / 6.0)
        return row


def _accelerators(space: Space) -> list[Any]:
    if "accelerator" in space.distributions:
        return space.values("accelerator")
    return [space.fixed.get("accelerator", "none")]


def _finished(study: Study) -> list[FrozenTrial]:
    """Trials the model learns from: measured, stopped after their screen, or failed because of their config."""
    finished = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        if t.state == TrialState.FAIL and t.user_attrs.get(ATTR_INTERRUPTED):
            continue
        finished.append(t)
    return finished


def _objective(study: Study, complete: list[FrozenTrial], metric: str | None) -> tuple[np.ndarray, bool]:
    """The first objective (``metric``) of each trial, to be maximized, and whether it is on a log
    scale: it is where all are positive (throughput and latency vary by factors, not by amounts)."""
    values = np.array([_first_value(t, metric) for t in complete], dtype=float)
    on_log_scale = bool((values > 0).all())
    if on_log_scale:
        values = np.log(values)
    return (values if study.directions[0] == StudyDirection.MAXIMIZE else -values), on_log_scale


def _throughput_noise(study: Study, complete: list[FrozenTrial]) -> np.ndarray | None:
    """Each trial's variance of the log of its throughput (``_objective`` on a log scale), from the
    spread of the windows it was measured over; None where the first objective is another metric."""
    if study.metric_names is None or study.metric_names[0] != "throughput":
        return None
    spreads = [float((t.user_attrs.get(ATTR_METRICS) or {}).get("throughput_spread_pct", 0.0)) for t in complete]
    return (np.array(spreads) / 100.0 / _RANGE_TO_SD_OF_MEAN) ** 2  # a relative sd is the log's sd


def _first_value(trial: FrozenTrial, metric: str | None) -> float | None:
    """The first objective (``metric``): a COMPLETE trial's value; a PRUNED one's last intermediate
    value, which Optuna keeps for a study of one objective only, else the metric at the screen's point
    (its stored metrics, tuner.study._pruned); None where it has neither."""
    if trial.state == TrialState.COMPLETE:
        return float(trial.values[0])
    steps = trial.intermediate_values
    if steps:
        return float(steps[max(steps)])
    value = (trial.user_attrs.get(ATTR_METRICS) or {}).get(metric) if metric else None
    return float(value) if value is not None and _is_number(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
