from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution

from tuner import config as cfg
from tuner import samplers
from tuner.errors import ConfigError
from tuner.samplers import SearchSpace
from tuner.samplers._space import KNOBS, fixed_value
from tuner.trial import InstanceKind, TrialSpec
from tuner.triton import installed_providers

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space(worker_cores: int = 8, kind: InstanceKind = InstanceKind.CPU, **knobs: Any) -> SearchSpace:
    return SearchSpace(cfg.SpaceSettings.model_validate(knobs), worker_cores, kind)


def _study(sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)


def _ask(space: SearchSpace, study: optuna.Study) -> tuple[optuna.Trial, TrialSpec]:
    trial = study.ask()
    return trial, space.suggest(trial)


def _in(value: Any, dim: Any) -> bool:
    """Whether ``value`` is a value of the study-file dimension ``dim``."""
    if isinstance(dim, cfg.IntRange):
        return dim.low <= value <= dim.high and (value - dim.low) % dim.step == 0
    if isinstance(dim, list):
        return value in dim
    return value == dim


# --- suggest -----------------------------------------------------------------------------------


def test_suggested_specs_lie_in_the_default_space() -> None:
    space = _space(worker_cores=8)
    study = _study(optuna.samplers.RandomSampler(seed=1))
    default = cfg.SpaceSettings()

    for _ in range(40):
        trial, spec = _ask(space, study)
        assert _in(spec.max_batch_size, default.max_batch_size)
        assert _in(spec.dynamic_batching, default.dynamic_batching)
        assert _in(spec.instance_count, default.instance_count)
        if spec.dynamic_batching:
            assert _in(spec.max_queue_delay_us, default.max_queue_delay_us)
        else:
            assert spec.max_queue_delay_us == 0
        assert spec.kind is InstanceKind.CPU
        study.tell(trial, [1.0, 1.0])


def test_stepped_range_values_stay_on_the_step() -> None:
    space = _space(max_queue_delay_us={"low": 50, "high": 1000, "step": 300}, dynamic_batching=True,
                   max_batch_size=[8])
    study = _study(optuna.samplers.RandomSampler(seed=3))

    delays = {_ask(space, study)[1].max_queue_delay_us for _ in range(40)}

    assert delays <= {50, 350, 650, 950}
    assert len(delays) > 1


def test_range_high_is_trimmed_to_the_last_step() -> None:
    space = _space(max_queue_delay_us={"low": 0, "high": 250, "step": 100})

    assert space.distributions["max_queue_delay_us"] == IntDistribution(0, 200, step=100)


def test_params_are_exactly_the_searched_knobs() -> None:
    space = _space(
        max_batch_size=8,
        dynamic_batching=[False, True],
        max_queue_delay_us={"low": 0, "high": 1000, "step": 100},
        instance_count={"low": 1, "high": 4},
        cpu_threads=[1, 2],
    )
    study = _study()
    study.enqueue_trial({"dynamic_batching": True})

    trial, spec = _ask(space, study)

    assert set(trial.params) == {"dynamic_batching", "max_queue_delay_us", "instance_count", "cpu_threads"}
    assert spec.max_batch_size == 8
    assert spec.max_queue_delay_us == trial.params["max_queue_delay_us"]
    assert spec.cpu_threads == trial.params["cpu_threads"]


def test_queue_delay_is_not_a_param_when_batching_is_off() -> None:
    space = _space(dynamic_batching=[False, True], max_queue_delay_us={"low": 100, "high": 1000, "step": 100})
    study = _study()
    study.enqueue_trial({"dynamic_batching": False})

    trial, spec = _ask(space, study)

    assert set(trial.params) == {"max_batch_size", "dynamic_batching", "instance_count"}
    assert spec.dynamic_batching is False
    assert spec.max_queue_delay_us == 0


def test_queue_delay_is_never_asked_when_batching_is_fixed_off() -> None:
    space = _space(dynamic_batching=False, max_queue_delay_us={"low": 0, "high": 1000, "step": 100})
    study = _study(optuna.samplers.RandomSampler(seed=0))

    for _ in range(10):
        trial, spec = _ask(space, study)
        assert "max_queue_delay_us" not in trial.params
        assert "dynamic_batching" not in trial.params
        assert spec.dynamic_batching is False


def test_single_values_are_constants_not_params() -> None:
    space = _space(
        max_batch_size=[16],
        dynamic_batching=[True],
        max_queue_delay_us={"low": 300, "high": 300},
        instance_count=2,
        cpu_threads={"low": 1, "high": 3},
    )

    trial, spec = _ask(space, _study())

    assert set(trial.params) == {"cpu_threads"}
    assert space.fixed == {
        "max_batch_size": 16,
        "dynamic_batching": True,
        "max_queue_delay_us": 300,
        "instance_count": 2,
        "accelerator": "none",
        "precision": "fp32",
    }
    assert (spec.max_batch_size, spec.dynamic_batching, spec.max_queue_delay_us, spec.instance_count) == (
        16,
        True,
        300,
        2,
    )


def test_distribution_types() -> None:
    space = _space(cpu_threads={"low": 1, "high": 16, "log": True}, accelerator=["none", "openvino"],
                   precision=["fp32", "int8"], performance_hint=["latency", "throughput"])

    assert list(space.distributions) == list(KNOBS)  # asked in KNOBS order
    assert space.distributions["accelerator"] == CategoricalDistribution(["none", "openvino"])
    assert space.distributions["precision"] == CategoricalDistribution(["fp32", "int8"])
    assert space.distributions["max_batch_size"] == CategoricalDistribution([1, 4, 8, 16, 32])
    assert space.distributions["dynamic_batching"] == CategoricalDistribution([False, True])
    assert space.distributions["instance_count"] == IntDistribution(1, 4)
    assert space.distributions["cpu_threads"] == IntDistribution(1, 16, log=True)


def test_suggest_with_log_range() -> None:
    space = _space(cpu_threads={"low": 1, "high": 16, "log": True})
    study = _study(optuna.samplers.RandomSampler(seed=5))

    for _ in range(10):
        trial, spec = _ask(space, study)
        assert 1 <= spec.cpu_threads <= 16
        assert trial.params["cpu_threads"] == spec.cpu_threads


@pytest.mark.parametrize(
    ("cores", "instances", "threads"), [(8, 1, 8), (8, 3, 2), (8, 4, 2), (2, 4, 1), (7, 2, 3), (0, 1, 1)]
)
def test_cpu_threads_share_the_worker_cores(cores: int, instances: int, threads: int) -> None:
    space = _space(worker_cores=cores, instance_count=[1, 2, 3, 4])
    study = _study()
    study.enqueue_trial({"instance_count": instances})

    trial, spec = _ask(space, study)

    assert spec.instance_count == instances
    assert spec.cpu_threads == threads == max(1, max(1, cores) // instances)
    assert "cpu_threads" not in trial.params


def test_fixed_cpu_threads_is_not_derived() -> None:
    space = _space(worker_cores=8, instance_count=4, cpu_threads=6)

    assert space.to_spec({}).cpu_threads == 6


def test_to_spec_fills_fixed_values_and_kind() -> None:
    space = _space(kind=InstanceKind.GPU, max_batch_size=32, instance_count=[1, 2])

    spec = space.to_spec({"instance_count": 2, "dynamic_batching": True, "max_queue_delay_us": 400})

    assert spec == TrialSpec(32, True, 400, 2, cpu_threads=4, kind=InstanceKind.GPU)


def test_to_spec_drops_queue_delay_when_batching_off() -> None:
    spec = _space().to_spec({"max_batch_size": 4, "dynamic_batching": False, "max_queue_delay_us": 900})

    assert spec.max_queue_delay_us == 0


@pytest.mark.parametrize(
    ("value", "expected"), [(7, 7), ([3], 3), ([3, 5], 3), (cfg.IntRange(low=2, high=9), 2), (True, True)]
)
def test_fixed_value(value: Any, expected: Any) -> None:
    assert fixed_value(value) == expected


# --- default_params ----------------------------------------------------------------------------


def test_default_params_of_the_default_space() -> None:
    assert _space().default_params() == {"max_batch_size": 4, "dynamic_batching": False, "instance_count": 1}


@pytest.mark.parametrize(
    ("knobs", "expected"),
    [
        ({"max_batch_size": [2, 8, 16]}, {"max_batch_size": 2}),
        ({"max_batch_size": [8, 16]}, {"max_batch_size": 8}),
        ({"max_batch_size": [3, 5]}, {"max_batch_size": 3}),  # a tie goes to the smaller
        ({"max_batch_size": {"low": 1, "high": 64, "step": 3}}, {"max_batch_size": 4}),
        ({"max_batch_size": {"low": 2, "high": 64, "step": 3}}, {"max_batch_size": 5}),
        ({"max_batch_size": {"low": 16, "high": 64}}, {"max_batch_size": 16}),
        ({"instance_count": {"low": 2, "high": 6, "step": 2}}, {"instance_count": 2}),
        ({"instance_count": [3, 2]}, {"instance_count": 2}),
    ],
)
def test_default_params_move_into_the_space(knobs: dict[str, Any], expected: dict[str, Any]) -> None:
    params = _space(**knobs).default_params()

    for knob, value in expected.items():
        assert params[knob] == value


def test_default_params_leave_out_fixed_knobs() -> None:
    params = _space(max_batch_size=8, dynamic_batching=False, instance_count=[1, 2]).default_params()

    assert params == {"instance_count": 1}


def test_default_params_enqueued_give_the_default_spec() -> None:
    space = _space(worker_cores=4)
    study = _study()
    study.enqueue_trial(space.default_params())

    trial, spec = _ask(space, study)

    assert spec == TrialSpec(
        max_batch_size=4, dynamic_batching=False, max_queue_delay_us=0, instance_count=1, cpu_threads=4
    )
    assert set(trial.params) == {"max_batch_size", "dynamic_batching", "instance_count"}


def test_default_params_with_batching_forced_on_use_the_lowest_delay() -> None:
    space = _space(dynamic_batching=True, max_queue_delay_us={"low": 100, "high": 5000, "step": 100})

    assert space.default_params().get("max_queue_delay_us") == 100


# --- params_from (transfer between studies) ------------------------------------------------------


def test_a_config_of_another_space_keeps_what_this_space_has_and_moves_the_rest() -> None:
    space = _space(max_batch_size=[1, 8, 16], dynamic_batching=[False, True],
                   max_queue_delay_us={"low": 0, "high": 2000, "step": 1000}, instance_count={"low": 1, "high": 3},
                   cpu_threads=[1, 2], precision=["fp32", "int8"])
    prior = {"max_batch_size": 16, "dynamic_batching": True, "max_queue_delay_us": 700, "instance_count": 4,
             "cpu_threads": 2, "kind": "KIND_CPU", "accelerator": "openvino", "precision": "fp16"}

    assert space.params_from(prior) == {
        "max_batch_size": 16,  # kept
        "dynamic_batching": True,
        "instance_count": 3,  # 4 is over the range: its nearest value
        "precision": "fp32",  # fp16 is no choice here: the default config's
        "cpu_threads": 2,
        "max_queue_delay_us": 1000,  # the nearest step; accelerator is fixed here, so no param
    }


def test_knobs_a_config_lacks_take_the_defaults_and_a_delay_without_batching_is_no_param() -> None:
    space = _space(max_batch_size=[2, 8], dynamic_batching=[False, True], instance_count=[1, 2],
                   accelerator=["none", "openvino"])

    mapped = space.params_from({"instance_count": 2, "max_queue_delay_us": 500, "batch": 3})

    assert mapped == {**space.default_params(), "instance_count": 2}
    assert "max_queue_delay_us" not in mapped and mapped["dynamic_batching"] is False
    assert space.params_from({"max_batch_size": 6}) == {**space.default_params(), "max_batch_size": 8}
    assert space.params_from({"accelerator": "tensorrt"})["accelerator"] == "none"


# --- grid --------------------------------------------------------------------------------------


def test_grid_expands_choices_and_stepped_ranges() -> None:
    space = _space(
        max_batch_size=[1, 8],
        dynamic_batching=[False, True],
        max_queue_delay_us={"low": 0, "high": 250, "step": 100},
        instance_count={"low": 1, "high": 3},
        cpu_threads=2,
    )

    assert space.grid() == {
        "max_batch_size": [1, 8],
        "dynamic_batching": [False, True],
        "max_queue_delay_us": [0, 100, 200],
        "instance_count": [1, 2, 3],
    }


def test_grid_of_default_space_has_all_delays() -> None:
    grid = _space().grid()

    assert grid["max_queue_delay_us"] == list(range(0, 20001, 100))
    assert grid["instance_count"] == [1, 2, 3, 4]


def test_grid_rejects_log_ranges() -> None:
    space = _space(max_batch_size={"low": 1, "high": 32, "log": True})

    with pytest.raises(ConfigError, match="search.space.max_batch_size.*log"):
        space.grid()


def test_grid_rejects_huge_grids() -> None:
    space = _space(max_queue_delay_us={"low": 0, "high": 9_999}, max_batch_size={"low": 1, "high": 100})

    with pytest.raises(ConfigError, match="combinations"):
        space.grid()


def test_grid_sampler_for_log_range_is_a_config_error() -> None:
    space = _space(cpu_threads={"low": 1, "high": 8, "log": True})

    with pytest.raises(ConfigError, match="cpu_threads"):
        samplers.make_sampler("grid", 0, space)


def test_grid_sampler_visits_every_combination_once() -> None:
    space = _space(
        max_batch_size=[1, 4],
        dynamic_batching=True,
        max_queue_delay_us={"low": 0, "high": 200, "step": 100},
        instance_count={"low": 1, "high": 2},
    )
    study = _study(samplers.make_sampler("grid", 0, space))
    keys: list[str] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        keys.append(space.suggest(trial).key())
        return 1.0, 1.0

    _optimize_until_exhausted(study, objective)

    # at max batch size 1 a batch is full at once: the delay is not asked, one config per instance count
    expected = {
        space.to_spec({"max_batch_size": b, "max_queue_delay_us": d, "instance_count": i}).key()
        for b, d, i in [*itertools.product([4], [0, 100, 200], [1, 2]), (1, 0, 1), (1, 0, 2)]
    }
    assert len(keys) == 8
    assert len(set(keys)) == 8
    assert set(keys) == expected


def test_grid_sampler_reaches_every_spec_with_conditional_delay() -> None:
    space = _space(max_batch_size=4, max_queue_delay_us=[0, 500], instance_count=[1, 2])
    study = _study(samplers.make_sampler("grid", 0, space))
    keys: set[str] = set()

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        keys.add(space.suggest(trial).key())
        return 1.0, 1.0

    _optimize_until_exhausted(study, objective)

    # batching off (one config per instance count) + batching on x 2 delays x 2 instance counts
    assert len(study.trials) == 2 + 2 * 2
    assert len(keys) == 2 + 2 * 2


def test_at_max_batch_1_the_batcher_s_delay_is_not_asked_as_every_batch_is_full_at_once() -> None:
    space = _space(max_batch_size=[1, 8], dynamic_batching=[False, True], max_queue_delay_us=[0, 1000, 5000],
                   instance_count=1)

    batch_of_one = {"max_batch_size": 1, "dynamic_batching": True}
    assert not space.asked("max_queue_delay_us", batch_of_one)
    assert space.asked("max_queue_delay_us", {"max_batch_size": 8, "dynamic_batching": True})
    # max batch 1: off, on; max batch 8: off, on at 3 delays
    assert sorted(map(space.key_of, space.combinations())) == sorted(
        map(space.key_of, [{"max_batch_size": 1, "dynamic_batching": False}, batch_of_one,
                           {"max_batch_size": 8, "dynamic_batching": False},
                           *({"max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": d}
                             for d in (0, 1000, 5000))]))
    assert space.to_spec(batch_of_one).max_queue_delay_us == 0
    assert space.params_near({"max_batch_size": 1, "dynamic_batching": True, "max_queue_delay_us": 5000}) == batch_of_one
    assert space.params_from({"max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": 5000}) == {
        "max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": 5000}


def test_a_delay_is_waited_out_where_the_load_never_fills_a_batch() -> None:
    knobs = cfg.SpaceSettings.model_validate({
        "max_batch_size": [1, 4, 8], "dynamic_batching": [False, True],
        "max_queue_delay_us": {"low": 100, "high": 1000, "step": 100}, "instance_count": 1})
    space = SearchSpace(knobs, 2, most_in_flight=4)

    def waited(mbs: int, delay: int, batching: bool = True) -> bool:
        return space.delay_waited_out({"max_batch_size": mbs, "dynamic_batching": batching, "max_queue_delay_us": delay})

    # 4 requests in flight never fill a batch of 8: every batch waits its whole delay, but at the lowest one
    assert waited(8, 200) and waited(8, 1000) and not waited(8, 100)
    assert not waited(4, 1000) and not waited(1, 1000) and not waited(8, 1000, batching=False)
    assert not SearchSpace(knobs, 2).delay_waited_out({"max_batch_size": 8, "dynamic_batching": True,
                                                       "max_queue_delay_us": 1000})  # the load not known
    assert sum(map(space.delay_waited_out, space.combinations())) == 9  # max batch 8 at delays 200-1000


@pytest.mark.parametrize(("load", "in_flight"), [({"concurrency": [2, 16, 4]}, 16), ({"concurrency": "auto"}, 64)])
def test_the_space_knows_the_most_requests_its_load_keeps_in_flight(
    tmp_path: Path, load: dict[str, Any], in_flight: int
) -> None:
    from tuner.pool import WorkerPlan
    from tuner.study._plan import build_space

    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    study = cfg.StudyConfig.model_validate({"study": "s", "model": {"name": "m", "path": str(model)}, "load": load})
    space = build_space(study, WorkerPlan(1, 2, 0.0))
    assert isinstance(space, SearchSpace) and space.most_in_flight == in_flight


# --- samplers ----------------------------------------------------------------------------------


def test_sampler_names_match_the_config() -> None:
    assert tuple(samplers.SAMPLERS) == cfg.SAMPLER_NAMES


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("bo", samplers.ConfigBOSampler),
        ("tpe", optuna.samplers.TPESampler),
        ("nsga2", optuna.samplers.NSGAIISampler),
        ("gp", optuna.samplers.GPSampler),
        ("random", optuna.samplers.RandomSampler),
        ("grid", samplers.ConfigGridSampler),
        ("quick", samplers.QuickSearchSampler),
    ],
)
def test_make_sampler_types(name: str, cls: type) -> None:
    sampler = samplers.make_sampler(name, 7, _space(max_batch_size=[1, 2], instance_count=[1, 2]))

    # tpe and gp come wrapped so that they do not spend trials on measured configs
    assert isinstance(getattr(sampler, "inner", sampler), cls)


def test_make_sampler_unknown_name() -> None:
    with pytest.raises(ConfigError, match="unknown sampler 'cmaes'.*tpe"):
        samplers.make_sampler("cmaes", None, _space())


def test_seeded_random_sampler_repeats() -> None:
    def run() -> list[str]:
        space = _space()
        study = _study(samplers.make_sampler("random", 11, space))
        return [_ask(space, study)[1].key() for _ in range(5)]

    assert run() == run()


# --- TrialSpec.key -----------------------------------------------------------------------------


def test_key_ignores_queue_delay_when_batching_is_off() -> None:
    assert TrialSpec(8, False, 0, 2).key() == TrialSpec(8, False, 5000, 2).key()


def test_key_keeps_queue_delay_when_batching_is_on() -> None:
    assert TrialSpec(8, True, 0, 2).key() != TrialSpec(8, True, 5000, 2).key()


@pytest.mark.parametrize(
    "other",
    [
        TrialSpec(16, False, 0, 2),
        TrialSpec(8, True, 0, 2),
        TrialSpec(8, False, 0, 3),
        TrialSpec(8, False, 0, 2, cpu_threads=2),
        TrialSpec(8, False, 0, 2, kind=InstanceKind.GPU),
    ],
)
def test_key_tells_different_configs_apart(other: TrialSpec) -> None:
    assert TrialSpec(8, False, 0, 2).key() != other.key()


def test_enqueued_default_runs_under_the_grid_sampler_with_every_knob_searched() -> None:
    space = _space(
        worker_cores=2,
        max_batch_size=[1, 4],
        dynamic_batching=[False, True],
        max_queue_delay_us=[0, 500],
        instance_count=[1, 2],
        cpu_threads=[1, 2],
    )
    study = _study(samplers.make_sampler("grid", 0, space))
    default = space.default_params()
    assert default == {"max_batch_size": 4, "dynamic_batching": False, "instance_count": 1, "cpu_threads": 2}
    study.enqueue_trial(default)
    trial = study.ask()
    spec = space.suggest(trial)
    assert (spec.max_batch_size, spec.dynamic_batching, spec.instance_count, spec.cpu_threads) == (4, False, 1, 2)
    study.tell(trial, [1.0, 1.0])
    assert study.ask() is not None  # the grid goes on after the enqueued default


def test_gpu_accelerators_are_refused_on_cpu_workers() -> None:
    with pytest.raises(ConfigError, match="search.space.accelerator: cuda, tensorrt need GPU workers"):
        _space(accelerator=["none", "cuda", "tensorrt"])
    space = _space(kind=InstanceKind.GPU, accelerator=["cuda", "openvino"])
    assert space.to_spec({"accelerator": "cuda"}).kind is InstanceKind.GPU
    assert space.to_spec({"accelerator": "openvino"}).kind is InstanceKind.CPU  # OpenVINO runs on the CPU


#: The providers of ONNX Runtime's CUDA build (the gpu extra), which cannot be installed beside this machine's.
GPU_BUILD = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def _with_providers(providers: tuple[str, ...], kind: InstanceKind = InstanceKind.GPU, **knobs: Any) -> SearchSpace:
    return SearchSpace(cfg.SpaceSettings.model_validate(knobs), 8, kind, providers)


def test_an_accelerator_the_installed_onnxruntime_lacks_is_refused_naming_the_extra() -> None:
    here = installed_providers()  # the OpenVINO build: OpenVINO and CPU, no CUDA
    assert "CUDAExecutionProvider" not in here and "OpenVINOExecutionProvider" in here
    with pytest.raises(ConfigError) as refused:
        _with_providers(here, accelerator=["none", "cuda"])
    message = str(refused.value)
    assert message.startswith("search.space.accelerator: none on GPU workers needs CUDAExecutionProvider; ")
    assert "cuda needs CUDAExecutionProvider" in message
    assert f"(its providers: {', '.join(here)})" in message
    assert "install the gpu extra in its place (ORT_BUILD=gpu bash scripts/setup.sh)" in message
    with pytest.raises(ConfigError, match="tensorrt needs TensorrtExecutionProvider, .* the gpu extra"):
        _with_providers(here, accelerator="tensorrt")
    # what the OpenVINO build has passes, on CPU workers and (OpenVINO on the CPU) on GPU ones
    assert _with_providers(here, InstanceKind.CPU, accelerator=["none", "openvino"]).values("accelerator") == [
        "none",
        "openvino",
    ]
    _with_providers(here, InstanceKind.GPU, accelerator="openvino")


def test_the_gpu_build_passes_gpu_accelerators_and_refuses_openvino() -> None:
    _with_providers(GPU_BUILD, accelerator=["none", "cuda", "tensorrt"])
    with pytest.raises(ConfigError, match=r"openvino needs OpenVINOExecutionProvider, .* install the cpu extra"):
        _with_providers(GPU_BUILD, InstanceKind.CPU, accelerator=["none", "openvino"])
    with pytest.raises(ConfigError, match=r"no one ONNX Runtime build has them all \(cuda: the gpu extra, "
                                          r"openvino: the cpu extra\): search them in separate studies"):
        _with_providers(GPU_BUILD, accelerator=["cuda", "openvino"])


def test_without_onnxruntime_even_the_cpu_provider_is_missing() -> None:
    with pytest.raises(ConfigError, match=r"^search.space.accelerator: none needs CPUExecutionProvider, and there is "
                                          r"no onnxruntime module here; install the cpu or the gpu extra"):
        _with_providers((), InstanceKind.CPU)


def test_providers_out_of_sight_are_not_checked() -> None:
    space = _with_providers(None, accelerator=["cuda", "openvino"])  # type: ignore[arg-type]
    assert space.values("accelerator") == ["cuda", "openvino"]
    with pytest.raises(ConfigError, match="need GPU workers"):  # the workers are still checked
        _with_providers(GPU_BUILD, InstanceKind.CPU, accelerator="cuda")


def test_accelerator_and_precision_reach_the_spec_and_the_default() -> None:
    space = _space(accelerator=["openvino", "none"], precision=["int8", "fp16", "fp32"])
    assert space.default_params()["accelerator"] == "none"
    assert space.default_params()["precision"] == "fp32"
    trial, spec = _ask(space, _study())
    assert (spec.accelerator, spec.precision) == (trial.params["accelerator"], trial.params["precision"])


def test_queue_delay_is_no_dimension_when_batching_is_never_on() -> None:
    space = _space(max_batch_size=8, dynamic_batching=False, instance_count=[1, 2])
    assert "max_queue_delay_us" not in space.distributions
    assert "max_queue_delay_us" not in space.fixed
    assert space.grid() == {"instance_count": [1, 2]}
    assert space.to_spec({"instance_count": 2}).max_queue_delay_us == 0


def _optimize_until_exhausted(study: optuna.Study, objective) -> None:
    """Like the tuner's study loop: ask and tell until the grid sampler says every point was run."""
    for _ in range(1000):
        if study.sampler.is_exhausted(study):
            return
        trial = study.ask()
        study.tell(trial, objective(trial))
    raise AssertionError("the grid never ran out")
