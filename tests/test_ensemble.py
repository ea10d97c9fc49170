"""An ensemble of a repository: its composing models read with it, their knobs searched together,
each step's statistics kept, and what a study may ask of it."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from factories import bls_repository, ensemble_repository

from tuner.config import SpaceSettings, StudyConfig, parse_config
from tuner.errors import ConfigError, ModelError
from tuner.measure._server_stats import model_counters, window
from tuner.model import read_repository_model
from tuner.reports._explain import explain
from tuner.samplers import PipelineSpace, initial_params, make_sampler
from tuner.study import plan_study
from tuner.trial import LoadPoint, TrialSpec
from tuner.triton import parse_pbtxt, to_pbtxt, tune_config, tuned_knobs

REPO_ROOT = Path(__file__).resolve().parents[1]


def _cfg(tmp_path: Path, space: dict | None = None, **changes: object) -> StudyConfig:
    data: dict = {
        "study": "pipeline",
        "storage": f"sqlite:///{tmp_path / 'tuner.db'}",
        "model": {"name": "quadrupler", "repository": str(ensemble_repository(tmp_path / "repo"))},
        "workers": {"backend": "local", "cpus_per_worker": 2},
        "search": {"sampler": "bo", "n_trials": 4, "seed": 3, "space": space or {}},
    }
    data.update(changes)
    return parse_config(data, tmp_path)


# --- reading it ---


def test_the_composing_models_are_read_with_the_ensemble_in_step_order(tmp_path: Path) -> None:
    model = read_repository_model(ensemble_repository(tmp_path), "quadrupler")
    assert model.is_ensemble and [s.name for s in model.steps] == ["first", "second"]
    assert [s.backend for s in model.steps] == ["python", "python"]


def test_an_ensemble_that_runs_a_missing_model_or_another_ensemble_is_refused(tmp_path: Path) -> None:
    repository = ensemble_repository(tmp_path)
    config = repository / "quadrupler" / "config.pbtxt"
    config.write_text(config.read_text().replace('"second"', '"third"'))
    with pytest.raises(ModelError, match="runs model 'third', which .* lacks"):
        read_repository_model(repository, "quadrupler")
    (repository / "outer").mkdir()
    (repository / "outer" / "config.pbtxt").write_text(
        config.read_text().replace('name: "quadrupler"', 'name: "outer"').replace('"third"', '"quadrupler"')
    )
    config.write_text(config.read_text().replace('"third"', '"second"'))
    with pytest.raises(ModelError, match="runs ensemble 'quadrupler': nested ensembles are not tuned"):
        read_repository_model(repository, "outer")


# --- the study file ---


def test_a_knob_given_for_every_model_gives_way_to_one_models_own() -> None:
    space = SpaceSettings.model_validate(
        {"instance_count": [1, 2], "cpu_threads": [1, 2], "models": {"det": {"instance_count": [1, 3]}}}
    )
    assert space.for_model("det", "onnxruntime").instance_count == [1, 3]
    assert space.for_model("det", "onnxruntime").cpu_threads == [1, 2]
    assert space.for_model("pre", "python").instance_count == [1, 2]
    assert space.for_model("pre", "python").cpu_threads is None  # a setting of the backends that have threads
    with pytest.raises(ValueError, match="a composing model's space names no models of its own"):
        SpaceSettings.model_validate({"models": {"det": {"models": {"x": {}}}}})


@pytest.mark.parametrize(
    ("space", "changes", "message"),
    [
        ({"models": {"third": {"instance_count": 2}}}, {}, r"models.third: ensemble 'quadrupler' runs no model 'third'"),
        ({"models": {"first": {"precision": ["fp32", "fp16"]}}}, {}, r"models.first.precision: precision variants"),
        ({"models": {"second": {"accelerator": ["none", "openvino"]}}}, {}, r"it is an ONNX Runtime setting"),
        ({}, {"constraints": {"accuracy_drop": {"max": 0.1}}}, r"ensemble 'quadrupler' has no accuracy check"),
    ],
)
def test_what_an_ensemble_study_cannot_ask_is_said_before_anything_starts(
    tmp_path: Path, space: dict, changes: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_study(_cfg(tmp_path, space, **changes))


def test_models_named_for_a_single_model_are_refused(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, {"models": {"first": {"instance_count": 2}}})
    single = cfg.model.model_copy(update={"name": "first"})
    with pytest.raises(ConfigError, match="search.space.models: model 'first' is no ensemble"):
        plan_study(cfg.model_copy(update={"model": single}))


# --- the space ---


SPACE = {
    "instance_count": [1, 2],
    "dynamic_batching": [False, True],
    "max_queue_delay_us": [0, 500],
    "max_batch_size": [4, 8],
    "models": {"second": {"max_batch_size": [2, 8]}},
}


def test_every_models_knobs_are_parameters_of_their_own(tmp_path: Path) -> None:
    space = plan_study(_cfg(tmp_path, SPACE)).space
    assert isinstance(space, PipelineSpace)
    assert sorted(space.distributions) == sorted(
        f"{model}.{knob}"
        for model in ("first", "second")
        for knob in ("instance_count", "dynamic_batching", "max_queue_delay_us", "max_batch_size")
    )
    each = 2 * (1 + 2) * 2  # batch sizes x (unbatched, or batched at each delay) x instances
    combos = space.combinations()
    assert len(combos) == each * each == len({space.key_of(c) for c in combos})


def test_the_default_config_is_each_models_own(tmp_path: Path) -> None:
    space = plan_study(_cfg(tmp_path, SPACE)).space
    spec = space.to_spec(space.default_params())
    first, second = spec.step_specs["first"], spec.step_specs["second"]
    assert (first.dynamic_batching, first.max_queue_delay_us, first.instance_count) == (True, 0, 1)  # 100 -> 0
    assert (second.dynamic_batching, second.instance_count, second.max_batch_size) == (False, 2, 8)
    assert spec.max_batch_size == 8  # the ensemble's own, no step below it


def test_the_ensembles_batch_size_drops_to_its_smallest_steps(tmp_path: Path) -> None:
    space = plan_study(_cfg(tmp_path, SPACE)).space
    params = space.params_near({"second.max_batch_size": 2})
    spec = space.to_spec(params)
    assert spec.step_specs["second"].max_batch_size == 2 and spec.max_batch_size == 2


def test_a_steps_queue_delay_is_asked_only_where_that_step_batches(tmp_path: Path) -> None:
    space = plan_study(_cfg(tmp_path, SPACE)).space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        spec = space.suggest(trial)
        for name, step in spec.steps:
            assert (f"{name}.max_queue_delay_us" in trial.params) == step.dynamic_batching
        study.tell(trial, 1.0)


@pytest.mark.parametrize("sampler", ["bo", "tpe", "grid", "quick", "random"])
def test_every_sampler_proposes_whole_distinct_configs(tmp_path: Path, sampler: str) -> None:
    space = plan_study(_cfg(tmp_path, SPACE)).space
    study = optuna.create_study(sampler=make_sampler(sampler, 5, space, 2))
    for params in initial_params(sampler, space):
        study.enqueue_trial(params)
    seen = set()
    for number in range(8):
        trial = study.ask()
        spec = space.suggest(trial)
        assert [name for name, _ in spec.steps] == ["first", "second"]
        key = spec.key()
        assert sampler in ("tpe", "random") or key not in seen
        seen.add(key)
        study.tell(trial, float(number % 3))


def test_a_spec_with_steps_round_trips_through_its_key(tmp_path: Path) -> None:
    space = plan_study(_cfg(tmp_path, SPACE)).space
    spec = space.to_spec(space.params_near({"first.instance_count": 2, "dynamic_batching": True}))
    again = TrialSpec.from_json(json.loads(spec.key()))
    assert again == spec and [n for n, _ in again.steps] == ["first", "second"]
    single = TrialSpec(4, True, 100, 2)
    assert "steps" not in json.loads(single.key()) and TrialSpec.from_json(json.loads(single.key())) == single
    assert spec.cpu_threads_used == sum(s.instance_count * s.cpu_threads for _, s in spec.steps)


def test_too_many_configs_together_name_the_way_out(tmp_path: Path) -> None:
    space = plan_study(_cfg(tmp_path, {"max_queue_delay_us": {"low": 0, "high": 20000, "step": 10}})).space
    with pytest.raises(ConfigError, match=r"search.space.models.<name>\) or use tpe"):
        space.combinations()


# --- each step's statistics, and what they say ---


def _answer(requests: int, queue_ns: int, infer_ns: int, batches: dict[int, int]) -> dict:
    return {
        "model_stats": [
            {
                "execution_count": sum(batches.values()),
                "inference_stats": {
                    "success": {"count": requests},
                    "queue": {"ns": queue_ns},
                    "compute_infer": {"ns": infer_ns},
                },
                "batch_stats": [{"batch_size": b, "compute_infer": {"count": c}} for b, c in batches.items()],
            }
        ]
    }


def test_a_window_holds_each_steps_queue_and_compute() -> None:
    before = model_counters(_answer(0, 0, 0, {}))
    before["steps"] = {"first": model_counters(_answer(0, 0, 0, {})), "second": model_counters(_answer(0, 0, 0, {}))}
    after = model_counters(_answer(100, 1_000_000, 50_000_000, {1: 100}))
    after["steps"] = {
        "first": model_counters(_answer(100, 20_000_000, 10_000_000, {4: 25})),
        "second": model_counters(_answer(100, 300_000_000, 40_000_000, {1: 100})),
    }
    measured = window(before, after)
    assert list(measured.steps) == ["first", "second"]
    assert measured.steps["first"].mean_batch == 4.0 and measured.steps["second"].queue_ms == pytest.approx(3.0)
    assert measured.as_point_fields()["server_queue_ms"] == pytest.approx(0.01 + 0.2 + 3.0)
    assert measured.as_dict()["steps"]["second"]["compute_infer_ms"] == pytest.approx(0.4)
    assert "steps" not in window(after["steps"]["first"], after["steps"]["first"]).as_dict()


def _point() -> LoadPoint:
    return LoadPoint(8, 100.0, 80.0, 75.0, 90.0, 95.0, 99.0, server_queue_ms=60.0, server_compute_infer_ms=15.0)


def _servers(first_queue: float, second_queue: float) -> dict:
    def step(queue: float, infer: float) -> dict:
        return {"requests": 10, "executions": 10, "mean_batch": 1.0, "batch_sizes": {"1": 10},
                "queue_ms": queue, "compute_infer_ms": infer}

    return {"8": {"steps": {"first": step(first_queue, 5.0), "second": step(second_queue, 10.0)}}}


def test_the_step_that_holds_the_pipeline_back_is_named_with_its_remedy() -> None:
    spec = json.loads(
        TrialSpec(8, False, 0, 1, steps=(("first", TrialSpec(8, True, 100, 1)), ("second", TrialSpec(8, False, 0, 3)))).key()
    )
    (queued,) = [e for e in explain(_point(), spec=spec, servers=_servers(1.0, 50.0)) if e.rule == "bottleneck"]
    assert queued.text.startswith("second holds the pipeline back: its requests spend 60 ms in it")
    assert "more second instances (now 3), or dynamic batching for it" in queued.text
    (computing,) = [e for e in explain(_point(), spec=spec, servers=_servers(0.5, 2.0)) if e.rule == "bottleneck"]
    assert computing.text.startswith("second holds") and "Its compute is the cost" in computing.text
    assert not [e for e in explain(_point(), spec=spec, servers={}) if e.rule in ("bottleneck", "queue")]


# --- the bundled pipeline ---


@pytest.mark.parametrize("model", ["preprocess", "detector", "postprocess", "ocr_pipeline"])
def test_the_bundled_pipelines_configs_round_trip_every_field(model: str) -> None:
    config = parse_pbtxt((REPO_ROOT / "model_repository" / "ocr_pipeline" / model / "config.pbtxt").read_text())
    again = parse_pbtxt(to_pbtxt(config))
    assert again == config
    if model != "ocr_pipeline":
        knobs = tuned_knobs(config)
        assert to_pbtxt(tune_config(config, TrialSpec(**{"max_queue_delay_us": 0, **knobs}))) == to_pbtxt(config)


# --- a python model that calls others (BLS) ---


def _bls_cfg(tmp_path: Path, composing: list[str], space: dict | None = None) -> StudyConfig:
    bls_repository(tmp_path / "repo")
    model = {"name": "bls_quadrupler", "repository": str(tmp_path / "repo"), "composing": composing}
    return _cfg(tmp_path / "unused", space, model=model)


def test_a_bls_models_own_knobs_are_the_specs_and_the_models_it_calls_its_steps(tmp_path: Path) -> None:
    space = plan_study(_bls_cfg(tmp_path, ["first", "second"], {"models": {"bls_quadrupler": {"instance_count": [1, 3]}}})).space
    assert isinstance(space, PipelineSpace) and space.caller == "bls_quadrupler"
    assert "bls_quadrupler.instance_count" in space.distributions and "first.instance_count" in space.distributions
    spec = space.to_spec(space.params_near({"bls_quadrupler.instance_count": 3, "second.instance_count": 1}))
    assert spec.instance_count == 3 and [n for n, _ in spec.steps] == ["first", "second"]
    assert spec.step_specs["second"].instance_count == 1
    again = space.params_from(json.loads(spec.key()))
    assert space.to_spec(again) == spec


@pytest.mark.parametrize(
    ("composing", "message"),
    [
        (["first", "first"], "composing names each model once"),
        (["bls_quadrupler"], "and not the model itself"),
        (["missing"], "has no model|lacks"),
        (["quadrupler"], "runs ensemble 'quadrupler': nested ensembles are not tuned"),
    ],
)
def test_what_a_bls_study_cannot_name_is_refused(tmp_path: Path, composing: list[str], message: str) -> None:
    with pytest.raises((ConfigError, ModelError), match=message):
        plan_study(_bls_cfg(tmp_path, composing))


def test_an_ensemble_takes_no_composing_list_and_a_file_none_at_all(tmp_path: Path, digits_onnx: Path) -> None:
    ensemble = {"name": "quadrupler", "repository": str(ensemble_repository(tmp_path / "repo")), "composing": ["first"]}
    with pytest.raises(ModelError, match="runs the models its config names: leave model.composing out"):
        plan_study(_cfg(tmp_path / "other", model=ensemble))
    onnx = {"name": "first", "repository": str(tmp_path / "repo"), "composing": ["second"]}
    (tmp_path / "repo" / "first" / "config.pbtxt").write_text(
        (tmp_path / "repo" / "first" / "config.pbtxt").read_text().replace('backend: "python"', 'backend: "openvino"')
    )
    with pytest.raises(ModelError, match="runs on the openvino backend; model.composing names the models a python"):
        plan_study(_cfg(tmp_path / "third", model=onnx))
    with pytest.raises(ConfigError, match="composing names models of a repository: give repository"):
        parse_config({"study": "s", "model": {"name": "m", "path": str(digits_onnx), "composing": ["a"]}}, tmp_path)


def test_an_ensemble_is_refused_on_a_remote_server(tmp_path: Path) -> None:
    remote = {"launch": "remote", "remote": ["127.0.0.1:8000"]}
    with pytest.raises(ConfigError, match="is an ensemble, which server.launch remote cannot load"):
        plan_study(_cfg(tmp_path, server=remote))


def test_a_pipelines_cost_is_its_composing_models_together() -> None:
    from tuner.study._verdict import _cost_knobs

    def spec(*instances: int, precision: str = "fp32") -> dict:
        steps = tuple((f"m{i}", TrialSpec(4, True, 100, n, precision=precision if i == 1 else "fp32"))
                      for i, n in enumerate(instances))
        return json.loads(TrialSpec(4, False, 0, 1, steps=steps).key())

    assert _cost_knobs(spec(2, 1, 2)) == {"instance_count": 5, "cpu_threads": 3, "precision": "fp32"}
    assert _cost_knobs(spec(2, 1, 2, precision="int8"))["precision"] == "int8", "its most costly precision"
    assert _cost_knobs(spec(1, 1))["instance_count"] < _cost_knobs(spec(2, 1))["instance_count"]
