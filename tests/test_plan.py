"""tuner.study._plan: a study's set-up built once, by the pre-flight check, and used by the run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from factories import fp16_model, lookup_model, save_graph, scalar_output_model

from tuner.config import SpaceSettings, StudyConfig, parse_config
from tuner.errors import ConfigError, ModelError
from tuner.samplers import PipelineSpace, SearchSpace
from tuner.storage import Store
from tuner.study import StudyRunner, plan_study
from tuner.study._plan import waited_note
from tuner.workers import cpu_cores


def _cfg(tmp_path: Path, onnx: Path, **changes: object) -> StudyConfig:
    data: dict = {
        "study": "planned",
        "storage": f"sqlite:///{tmp_path / 'tuner.db'}",
        "model": {"name": "digits_forest", "path": str(onnx)},
        "workers": {"backend": "local", "cpus_per_worker": 2},
        "search": {"sampler": "tpe", "n_trials": 2, "seed": 3, "space": {"instance_count": {"low": 1, "high": 2}}},
    }
    data.update(changes)
    return parse_config(data, tmp_path)


def test_the_plan_holds_what_a_run_needs(tmp_path: Path, digits_onnx: Path) -> None:
    plan = plan_study(_cfg(tmp_path, digits_onnx))
    assert [t.name for t in plan.model_info.inputs] == ["float_input"]
    assert (plan.workers.count, plan.workers.cpus_per_worker, plan.workers.on_gpu) == (1, 2, False)
    assert {p["instance_count"] for p in plan.space.combinations()} == {1, 2}
    assert plan.validation["float_input"].shape == (8, 64)  # the bundled digits' test split
    assert plan.load_samples is None and plan.landscape is None
    assert plan.notes == (), "its batch dimension is free: batching stays in the search"


def _fixed_batch_model(path: Path) -> Path:
    """x[1, 16] @ w[16, 8]: an ONNX export whose batch dimension was fixed at 1."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((16, 8), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "fixed_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_model_with_a_fixed_first_dimension_is_searched_without_batching(tmp_path: Path) -> None:
    onnx_file = _fixed_batch_model(tmp_path / "fixed.onnx")
    space = {"instance_count": [1, 2], "max_batch_size": [1, 8], "dynamic_batching": [False, True]}
    cfg = _cfg(tmp_path, onnx_file, search={"n_trials": 2, "space": space})

    plan = plan_study(cfg)

    combinations = plan.space.combinations()
    assert len(combinations) == 2, "instance counts only: batches cannot form"
    assert {(c.get("max_batch_size", 1), c.get("dynamic_batching", False)) for c in combinations} == {(1, False)}
    [note] = plan.notes
    assert "fixed first dimension or none (x [1, 16], y [1, 8])" in note


def test_a_model_with_a_scalar_output_is_searched_without_batching(tmp_path: Path) -> None:
    scalar_output_model(tmp_path / "scalar.onnx")
    space = {"instance_count": [1, 2], "max_batch_size": [1, 8], "dynamic_batching": [False, True]}
    cfg = _cfg(tmp_path, tmp_path / "scalar.onnx", search={"n_trials": 2, "space": space})

    plan = plan_study(cfg)

    assert {(c.get("max_batch_size", 1), c.get("dynamic_batching", False)) for c in plan.space.combinations()} == {(1, False)}
    [note] = plan.notes
    assert "(stat [])" in note, "the output that stops batching is named"


def test_a_model_at_fp16_says_what_precision_fp32_serves(tmp_path: Path) -> None:
    space = {"precision": ["fp32", "fp16"], "max_batch_size": [1, 8]}
    cfg = _cfg(tmp_path, fp16_model(tmp_path / "half.onnx"), search={"n_trials": 2, "space": space})

    [note] = plan_study(cfg).notes

    assert note.startswith("half.onnx holds its floats at FP16: precision fp32 is the file as it is, served at FP16")


@pytest.mark.parametrize("sampler", ["bo", "tpe"])
def test_max_batch_sizes_the_load_never_fills_are_named_where_bo_leaves_their_delays_last(
    tmp_path: Path, digits_onnx: Path, sampler: str
) -> None:
    space = {"max_batch_size": [1, 8, 16, 32], "max_queue_delay_us": {"low": 0, "high": 2000, "step": 100}}
    cfg = _cfg(tmp_path, digits_onnx, search={"sampler": sampler, "n_trials": 2, "space": space},
               load={"concurrency": [4, 8]})

    notes = plan_study(cfg).notes

    if sampler == "tpe":  # TPE proposes them as any other
        assert notes == ()
        return
    [note] = notes
    assert note.startswith("the load keeps at most 8 requests in flight, which never fill a batch of max_batch_size 16, 32")
    assert "delays above 0 us only once no other config is left" in note


def test_the_runner_uses_the_plan_and_reads_the_model_no_more(tmp_path: Path, digits_onnx: Path) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(digits_onnx, model)
    cfg = _cfg(tmp_path, model)
    plan = plan_study(cfg)
    model.unlink()  # what would read it again now fails
    with pytest.raises(ModelError, match="model file not found"):
        plan_study(cfg)
    runner = StudyRunner(cfg, Store(cfg.storage), plan=plan)
    assert runner.plan is plan and runner.space is plan.space
    setup = runner.worker_setup(0)
    assert setup.model_info is plan.model_info
    assert setup.validation is not None
    assert np.array_equal(setup.validation["float_input"], plan.validation["float_input"])
    assert runner.study.user_attrs["worker_cores"] == 2


def test_the_plan_refuses_a_space_the_workers_cannot_serve(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, search={"n_trials": 2, "space": {"accelerator": ["none", "tensorrt"]}})
    with pytest.raises(ConfigError, match="search.space.accelerator"):
        plan_study(cfg)  # the file is valid; CPU workers make TensorRT impossible


def test_the_plan_refuses_local_workers_that_ask_for_more_cores_than_the_machine_has(
    tmp_path: Path, digits_onnx: Path
) -> None:
    cores = cpu_cores()
    too_many = _cfg(tmp_path, digits_onnx, workers={"backend": "ray", "count": cores + 1, "cpus_per_worker": 1})
    with pytest.raises(ConfigError, match=rf"workers: {cores + 1} worker\(s\) of 1 core\(s\) ask for {cores + 1} "
                                          rf"cores, and this machine has {cores}"):
        plan_study(too_many)
    assert plan_study(_cfg(tmp_path, digits_onnx, workers={"backend": "ray", "count": cores, "cpus_per_worker": 1}))
    # a cluster has the cores of all its machines
    cluster = {"backend": "ray", "count": cores + 1, "cpus_per_worker": 1, "ray_address": "10.0.0.1:6379"}
    assert plan_study(_cfg(tmp_path, digits_onnx, workers=cluster)).workers.count == cores + 1


def _gpu_workers(tmp_path: Path, onnx: Path, accelerator: object, **server: object) -> StudyConfig:
    """GPU workers as a study file asks for them (Ray's GPUs are counted only when it starts, and it does not here)."""
    workers = {"backend": "ray", "count": 1, "cpus_per_worker": 2, "gpus_per_worker": 1}
    search = {"n_trials": 2, "space": {"accelerator": accelerator}}
    return _cfg(tmp_path, onnx, workers=workers, search=search, server=server or {"launch": "embedded"})


def test_the_plan_refuses_an_accelerator_the_runners_onnxruntime_lacks(tmp_path: Path, digits_onnx: Path) -> None:
    # This machine's ONNX Runtime is the OpenVINO build: OpenVINO and CPU providers, no CUDA.
    with pytest.raises(ConfigError) as refused:
        plan_study(_gpu_workers(tmp_path, digits_onnx, ["cuda"]))
    message = str(refused.value)
    assert message.startswith("search.space.accelerator: cuda needs CUDAExecutionProvider, which the ONNX Runtime")
    assert "(its providers: OpenVINOExecutionProvider, CPUExecutionProvider)" in message
    assert message.endswith("install the gpu extra in its place (ORT_BUILD=gpu bash scripts/setup.sh)")
    plan = plan_study(_gpu_workers(tmp_path, digits_onnx, ["openvino"]))
    assert plan.workers.on_gpu and plan.space.to_spec({}).accelerator == "openvino"
    plan_study(_cfg(tmp_path, digits_onnx, search={"n_trials": 2, "space": {"accelerator": ["none", "openvino"]}}))


def test_the_plan_leaves_a_runner_out_of_sight_unchecked(tmp_path: Path, digits_onnx: Path) -> None:
    # Triton's own onnxruntime backend, and workers on a Ray cluster's other nodes, have ONNX Runtimes of their own.
    remote = {"launch": "remote", "remote": ["127.0.0.1:8000"]}
    assert plan_study(_gpu_workers(tmp_path, digits_onnx, ["cuda"], **remote)).space.to_spec({}).accelerator == "cuda"
    elsewhere = _gpu_workers(tmp_path, digits_onnx, ["cuda", "none"])
    elsewhere = elsewhere.model_copy(update={"workers": elsewhere.workers.model_copy(update={"ray_address": "x:6379"})})
    assert plan_study(elsewhere).space.values("accelerator") == ["cuda", "none"]


def test_a_model_that_refuses_the_made_up_inputs_is_refused_before_any_trial(tmp_path: Path) -> None:
    lookup = lookup_model(tmp_path / "lookup.onnx", categories=4)
    model = {"name": "lookup", "path": str(lookup)}

    with pytest.raises(ModelError, match="give inputs the model takes in model.validation_data"):
        plan_study(_cfg(tmp_path, lookup, model=model))

    np.savez(tmp_path / "ids.npz", cat=np.random.default_rng(1).integers(0, 4, (8, 3)))
    plan = plan_study(_cfg(tmp_path, lookup, model=model | {"validation_data": str(tmp_path / "ids.npz")}))
    assert plan.validation["cat"].max() < 4


@pytest.mark.parametrize("shape", [[3, 8], []])
def test_an_input_without_a_batch_axis_in_front_is_refused_naming_it(tmp_path: Path, shape: list[int]) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["image"], ["y"])], "no_batch_axis",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    save_graph(graph, tmp_path / "image.onnx")

    with pytest.raises(ModelError, match=rf"input 'image' has shape \[{', '.join(map(str, shape))}\]: .* batch axis in front"):
        plan_study(_cfg(tmp_path, tmp_path / "image.onnx", model={"name": "image", "path": str(tmp_path / "image.onnx")}))


def test_a_pipeline_names_each_models_max_batch_sizes_the_load_never_fills() -> None:
    def part(sizes: list[int]) -> SearchSpace:
        knobs = SpaceSettings.model_validate(
            {"max_batch_size": sizes, "max_queue_delay_us": {"low": 0, "high": 2000, "step": 100}})
        return SearchSpace(knobs, 2, most_in_flight=4)

    note = waited_note(PipelineSpace({"detector": part([1, 8, 16]), "recognizer": part([1, 4]),
                                      "classifier": part([2, 32])}, 16))

    assert note is not None
    assert note.startswith("the load keeps at most 4 requests in flight, which never fill a batch of detector "
                           "max_batch_size 8, 16; classifier max_batch_size 32: ")
    assert "delays above 0 us only once" in note
    assert waited_note(PipelineSpace({"recognizer": part([1, 4])}, 4)) is None
