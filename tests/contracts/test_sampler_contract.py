"""The sampler contract (tuner.samplers._contract), run against every sampler the registry names.

Each test drives an Optuna study the way the study loop does: enqueue the first configs, ask
``space.suggest`` for each trial, tell values, constraints or FAIL, with trials in flight.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tuner import config as cfg
from tuner import samplers
from tuner.samplers import DISTINCT, SAMPLERS, Exhaustible, SearchSpace
from tuner.trial import TrialSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: 3 batch sizes x (batching off + 2 delays) x 2 instance counts = 18 configs.
SPACE = {
    "max_batch_size": [1, 4, 8],
    "dynamic_batching": [False, True],
    "max_queue_delay_us": [0, 2000],
    "instance_count": [1, 2],
}


#: Finished trials before a sampler models the results: two, so that the model-based ones propose from
#: their model in these short studies; gp (seconds a fit, with two objectives and a constraint) stays
#: on its start-up proposals here, and tests/test_samplers.py checks its model's.
STARTUP: dict[str, int] = {"gp": 100}


@pytest.fixture(params=sorted(SAMPLERS))
def name(request: pytest.FixtureRequest) -> str:
    """Every sampler the study file may name."""
    return str(request.param)


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace(cfg.SpaceSettings.model_validate(SPACE), worker_cores=2)


def _study(name: str, space: SearchSpace, storage: optuna.storages.BaseStorage | None = None,
           seed: int = 5) -> optuna.Study:
    sampler = samplers.make_sampler(name, seed, space, n_startup_trials=STARTUP.get(name, 2))
    return optuna.create_study(study_name="contract", storage=storage, directions=["maximize", "minimize"],
                               sampler=sampler, load_if_exists=True)


def _score(spec: TrialSpec) -> tuple[float, float]:
    """Throughput grows with instances and batching; latency with the queue delay."""
    throughput = 100.0 * spec.instance_count + (10.0 * spec.max_batch_size if spec.dynamic_batching else 0.0)
    return throughput, 5.0 + spec.max_queue_delay_us / 1000


def _tell(study: optuna.Study, trial: optuna.Trial, spec: TrialSpec) -> None:
    """As the study loop tells: values and a latency constraint (<= 0 holds), or FAIL for one config."""
    if spec.instance_count == 2 and spec.max_batch_size == 1:
        study.tell(trial, state=TrialState.FAIL)
        return
    throughput, latency = _score(spec)
    trial.set_constraint("latency_p99_ms", latency - 6.0)
    study.tell(trial, [throughput, latency])


def _exhausted(study: optuna.Study) -> bool:
    sampler = study.sampler
    return isinstance(sampler, Exhaustible) and sampler.is_exhausted(study)


def _ask(study: optuna.Study, space: SearchSpace, most: int) -> list[tuple[optuna.Trial, TrialSpec]]:
    """Up to ``most`` trials asked at once, as idle workers ask: each only while the sampler has one."""
    asked = []
    while len(asked) < most and not _exhausted(study):
        trial = study.ask()
        asked.append((trial, space.suggest(trial)))
    return asked


def _run(study: optuna.Study, space: SearchSpace, trials: int, in_flight: int = 2) -> list[TrialSpec]:
    """Asks ``in_flight`` trials before telling them (newest first), until ``trials`` or the sampler's end."""
    specs: list[TrialSpec] = []
    while len(specs) < trials and not _exhausted(study):
        asked = _ask(study, space, min(in_flight, trials - len(specs)))
        for trial, spec in reversed(asked):
            _tell(study, trial, spec)
        specs.extend(spec for _, spec in asked)
    return specs


def test_enqueued_configs_come_first_and_as_given(name: str, space: SearchSpace) -> None:
    study = _study(name, space)
    first = samplers.initial_params(name, space)
    for params in first:
        study.enqueue_trial(params)

    for params in first:
        trial = study.ask()
        space.suggest(trial)
        assert trial.params == params
        _tell(study, trial, space.to_spec(params))


def test_every_proposal_is_a_config_of_the_space(name: str, space: SearchSpace) -> None:
    keys = {space.key_of(params) for params in space.combinations()}
    study = _study(name, space)
    study.enqueue_trial(space.default_params())

    specs = _run(study, space, trials=8)

    assert specs and {spec.key() for spec in specs} <= keys
    states = {t.state for t in study.trials}
    assert states <= {TrialState.COMPLETE, TrialState.FAIL}


def test_a_new_sampler_on_the_reopened_study_goes_on(name: str, space: SearchSpace) -> None:
    storage = optuna.storages.InMemoryStorage()
    study = _study(name, space, storage)
    study.enqueue_trial(space.default_params())
    before = _run(study, space, trials=4)

    reopened = _study(name, space, storage)  # as the next run of the study makes it
    after = _run(reopened, space, trials=4)

    assert len(reopened.trials) == len(before) + len(after)
    if name in DISTINCT:
        keys = [spec.key() for spec in before + after]
        assert len(set(keys)) == len(keys), keys


def test_the_same_seed_gives_the_same_proposals(name: str, space: SearchSpace) -> None:
    def proposals() -> list[str]:
        study = _study(name, space, seed=11)
        study.enqueue_trial(space.default_params())
        return [spec.key() for spec in _run(study, space, trials=6)]

    assert proposals() == proposals()


def test_an_exhaustible_sampler_says_when_it_has_nothing_left(name: str, space: SearchSpace) -> None:
    study = _study(name, space)
    if not isinstance(study.sampler, Exhaustible):
        assert name in ("random", "nsga2")  # Optuna's own: the budget ends the study
        return
    assert isinstance(study.sampler.exhausted_reason, str) and study.sampler.exhausted_reason
    assert not _exhausted(study)
    if name in ("tpe", "gp"):  # through UnmeasuredFirst: the budget ends the study, never the sampler
        _run(study, space, trials=4)
        assert not _exhausted(study)
        return
    count = len(space.combinations())

    specs = _run(study, space, trials=count + 4)

    assert _exhausted(study)
    if name == "quick":  # it ends once no neighbour of the best config improves on it
        assert len(specs) <= count
    else:  # bo and grid end once every config is measured
        assert len({s.key() for s in specs}) == len(specs) == count


def test_configs_in_flight_differ_where_the_sampler_promises_new_ones(name: str, space: SearchSpace) -> None:
    if name not in DISTINCT:
        pytest.skip(f"{name} may propose a config twice (the study loop reuses the first measurement)")
    study = _study(name, space)
    study.enqueue_trial(space.default_params())
    for trial, spec in _ask(study, space, 1):  # the default told, so that quick has neighbours to propose
        _tell(study, trial, spec)

    asked = _ask(study, space, 4)  # four idle workers asking before any result is told

    keys = [spec.key() for _, spec in asked] + [space.key_of(study.trials[0].params)]
    assert len(asked) >= 2 and len(set(keys)) == len(keys), keys
