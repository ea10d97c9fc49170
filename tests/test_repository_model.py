"""A model from a Triton repository: its config the base, its fields kept, and what a study may ask of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from factories import DOUBLER_CONFIG, DOUBLER_MODEL_PY, doubler_repository, ensemble_repository
from tritonclient.grpc import model_config_pb2 as pb

from tuner.config import ServerSettings, StudyConfig, parse_config
from tuner.errors import ConfigError, MeasurementError, ModelError
from tuner.model import check_launch_runs, open_model, read_repository_model
from tuner.model_info import TensorInfo, config_model_info
from tuner.study import plan_study
from tuner.trial import InstanceKind, TrialSpec
from tuner.triton import build_model_config, build_native_config, parse_pbtxt, to_pbtxt, tune_config, tuned_knobs
from tuner.workers._pool import pack_model, unpack_model
from tuner.workers._worker import Worker, WorkerSetup

SPACE = {
    "max_batch_size": [1, 4, 8, 16],
    "dynamic_batching": [False, True],
    "max_queue_delay_us": {"low": 0, "high": 2000, "step": 100},
    "instance_count": {"low": 1, "high": 4},
}


def _cfg(tmp_path: Path, repository: Path, name: str = "doubler", **changes: object) -> StudyConfig:
    data: dict = {
        "study": "from_repository",
        "storage": f"sqlite:///{tmp_path / 'tuner.db'}",
        "model": {"name": name, "repository": str(repository)},
        "workers": {"backend": "local", "cpus_per_worker": 2},
        "search": {"sampler": "tpe", "n_trials": 2, "seed": 3, "space": SPACE},
    }
    data.update(changes)
    return parse_config(data, tmp_path)


def _spec(**changes: object) -> TrialSpec:
    values: dict = {"max_batch_size": 4, "dynamic_batching": True, "max_queue_delay_us": 300, "instance_count": 3}
    return TrialSpec(**(values | changes))


# --- the study file ---


def test_path_and_repository_are_one_or_the_other(tmp_path: Path, digits_onnx: Path) -> None:
    repository = doubler_repository(tmp_path / "repo")
    both = {"name": "doubler", "repository": str(repository), "path": str(digits_onnx)}
    with pytest.raises(ConfigError, match="model: give path .* or repository .*, not both"):
        parse_config({"study": "s", "model": both}, tmp_path)
    with pytest.raises(ConfigError, match="model: give path"):
        parse_config({"study": "s", "model": {"name": "doubler"}}, tmp_path)
    with pytest.raises(ConfigError, match="has no model 'other' \\(no other/config.pbtxt\\)"):
        parse_config({"study": "s", "model": {"name": "other", "repository": str(repository)}}, tmp_path)
    with pytest.raises(ConfigError, match="model.repository: model repository .* is not an existing folder"):
        parse_config({"study": "s", "model": {"name": "doubler", "repository": "missing"}}, tmp_path)


def test_a_relative_repository_is_the_study_files(tmp_path: Path) -> None:
    doubler_repository(tmp_path / "repo")
    cfg = parse_config({"study": "s", "model": {"name": "doubler", "repository": "repo"}}, tmp_path)
    assert cfg.model.repository == (tmp_path / "repo").resolve() and cfg.model.path is None


# --- reading the model ---


def test_the_config_is_parsed_and_the_inputs_come_from_it(tmp_path: Path) -> None:
    model = read_repository_model(doubler_repository(tmp_path), "doubler")
    assert (model.backend, model.version, model.is_onnx) == ("python", "1", False)
    assert model.model_file == tmp_path / "doubler" / "1" / "model.py"
    opened = open_model(_cfg(tmp_path, tmp_path).model)
    assert opened.onnx_file is None and opened.repository == model
    assert opened.info.inputs == (TensorInfo("INPUT0", "FP32", (-1, 4)),)
    assert opened.info.outputs == (TensorInfo("OUTPUT0", "FP32", (-1, 4)),)


def test_model_inputs_fix_a_free_dimension_of_the_config() -> None:
    config = parse_pbtxt(
        'max_batch_size: 2 input [{ name: "x" data_type: TYPE_UINT8 dims: [3, -1] }, '
        '{ name: "s" data_type: TYPE_INT64 dims: [1] reshape { shape: [] } }] '
        'output [{ name: "y" data_type: TYPE_FP16 dims: [-1] }]'
    )
    with pytest.raises(ModelError, match="input 'x' .* has free dimensions \\[-1, 3, -1\\]"):
        config_model_info(config)
    info = config_model_info(config, [TensorInfo("x", "UINT8", (3, 32))])
    assert info.inputs == (TensorInfo("x", "UINT8", (-1, 3, 32)), TensorInfo("s", "INT64", (-1,)))
    assert info.outputs == (TensorInfo("y", "FP16", (-1, -1)),)


def test_a_string_output_is_counted_and_a_string_input_refused() -> None:
    # a python model's label comes back as a string: the load generator counts it as any answer
    config = parse_pbtxt(
        'name: "labeler" max_batch_size: 8 input [{ name: "x" data_type: TYPE_FP32 dims: [4] }] '
        'output [{ name: "score" data_type: TYPE_FP32 dims: [1] }, { name: "label" data_type: TYPE_STRING dims: [1] }]'
    )
    info = config_model_info(config)
    assert info.outputs == (TensorInfo("score", "FP32", (-1, 1)), TensorInfo("label", "BYTES", (-1, 1)))
    assert info.outputs[1].request_bytes is None, "a string's size is not known before it comes back"

    config.input[0].data_type = config.output[1].data_type  # a string to send: no load data of the tuner's
    with pytest.raises(ModelError, match="tensor 'x' of model 'labeler' has type STRING, not supported"):
        config_model_info(config)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("name: doubler backend: [", "is not a Triton model config"),
        ('name: "other" backend: "python"', "names model 'other', and its folder is 'doubler'"),
        ("max_batch_size: 8", "names neither a backend nor a platform"),
        ('input [{ name: "x" data_type: TYPE_STRING dims: [1] }] backend: "python"', "has type STRING"),
    ],
)
def test_a_config_the_tuner_cannot_serve_is_a_model_error(tmp_path: Path, config: str, message: str) -> None:
    doubler_repository(tmp_path, config=config + '\noutput [{ name: "y" data_type: TYPE_FP32 dims: [1] }]')
    with pytest.raises(ModelError, match=message):
        open_model(_cfg(tmp_path, tmp_path).model)


def test_the_version_is_the_highest_folder_or_the_highest_the_policy_names(tmp_path: Path) -> None:
    doubler_repository(tmp_path)
    shutil.copytree(tmp_path / "doubler" / "1", tmp_path / "doubler" / "7")
    assert read_repository_model(tmp_path, "doubler").version == "7"
    pinned = DOUBLER_CONFIG.replace("latest { num_versions: 1 }", "specific { versions: [1] }")
    (tmp_path / "doubler" / "config.pbtxt").write_text(pinned)
    assert read_repository_model(tmp_path, "doubler").version == "1"


def test_a_model_without_its_file_or_version_folder_is_a_model_error(tmp_path: Path) -> None:
    doubler_repository(tmp_path)
    (tmp_path / "doubler" / "1" / "model.py").unlink()
    with pytest.raises(ModelError, match="python backend\\) has no .*1/model.py"):
        read_repository_model(tmp_path, "doubler")
    shutil.rmtree(tmp_path / "doubler" / "1")
    with pytest.raises(ModelError, match="has no version folder"):
        read_repository_model(tmp_path, "doubler")


# --- the trial's config ---

RICH_CONFIG = """
name: "doubler"
backend: "python"
max_batch_size: 16
version_policy { specific { versions: [1] } }
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "labels.txt" } ]
instance_group [ { count: 2 kind: KIND_GPU gpus: [0] } ]
dynamic_batching { preferred_batch_size: [4, 8] max_queue_delay_microseconds: 700 }
parameters { key: "greeting" value: { string_value: "kept" } }
model_warmup [ { name: "w" batch_size: 1 inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [4] zero_data: true } } } ]
response_cache { enable: true }
"""


def test_tuning_sets_the_knobs_and_keeps_every_other_field() -> None:
    base = parse_pbtxt(RICH_CONFIG)
    tuned = tune_config(base, _spec())
    assert tuned.max_batch_size == 4
    assert tuned.dynamic_batching.max_queue_delay_microseconds == 300
    assert list(tuned.dynamic_batching.preferred_batch_size) == [4, 8]  # the batcher's own fields stay
    assert [(g.count, g.kind, list(g.gpus)) for g in tuned.instance_group] == [(3, pb.ModelInstanceGroup.KIND_GPU, [0])]
    untouched = ("version_policy", "input", "output", "parameters", "model_warmup", "response_cache", "backend")
    for field in untouched:
        assert getattr(tuned, field) == getattr(base, field), field
    assert base.max_batch_size == 16  # the base is not changed
    off = tune_config(base, _spec(dynamic_batching=False))
    assert not off.HasField("dynamic_batching")


def test_the_models_own_config_is_its_default_and_tuning_to_it_changes_nothing() -> None:
    base = parse_pbtxt(RICH_CONFIG)
    knobs = tuned_knobs(base)
    assert knobs == {"max_batch_size": 16, "dynamic_batching": True, "max_queue_delay_us": 700, "instance_count": 2}
    spec = TrialSpec(**knobs)
    assert to_pbtxt(tune_config(base, spec)) == to_pbtxt(base)


def test_a_config_without_an_instance_group_gets_one_of_the_specs_kind() -> None:
    base = parse_pbtxt(DOUBLER_CONFIG.replace("instance_group [ { count: 1 kind: KIND_CPU } ]", ""))
    assert "instance_count" not in tuned_knobs(base)
    tuned = tune_config(base, _spec(kind=InstanceKind.GPU, instance_count=2))
    assert [(g.count, g.kind) for g in tuned.instance_group] == [(2, pb.ModelInstanceGroup.KIND_GPU)]


ONNX_CONFIG = """
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy { latest { num_versions: 1 } }
instance_group [ { count: 2 kind: KIND_CPU } ]
optimization { execution_accelerators { cpu_execution_accelerator [ { name: "openvino" } ] } priority: PRIORITY_MAX }
parameters { key: "intra_op_thread_count" value: { string_value: "2" } }
parameters { key: "enable_mem_arena" value: { string_value: "1" } }
"""


def test_an_onnxruntime_config_with_accelerators_round_trips() -> None:
    base = parse_pbtxt(ONNX_CONFIG)
    knobs = tuned_knobs(base)
    assert knobs["accelerator"] == "openvino" and knobs["cpu_threads"] == 2
    assert to_pbtxt(tune_config(base, TrialSpec(**{"max_queue_delay_us": 0, **knobs}))) == to_pbtxt(base)


@pytest.fixture
def onnx_repository(tmp_path: Path, digits_onnx: Path) -> Path:
    """digits_forest as someone deploys it: its ONNX file and a config that lists no tensors."""
    (tmp_path / "digits" / "3").mkdir(parents=True)
    shutil.copy(digits_onnx, tmp_path / "digits" / "3" / "model.onnx")
    (tmp_path / "digits" / "config.pbtxt").write_text(ONNX_CONFIG)
    return tmp_path


def test_an_onnx_model_of_a_repository_is_served_by_the_runner_from_its_own_config(
    tmp_path: Path, onnx_repository: Path
) -> None:
    plan = plan_study(_cfg(tmp_path, onnx_repository, name="digits"))
    assert plan.model_file == onnx_repository / "digits" / "3" / "model.onnx"
    assert [t.name for t in plan.model_info.inputs] == ["float_input"]  # from the file: the config lists none
    assert plan.validation  # variants are checked against the FP32 file as for model.path
    assert plan.space.default_params() == {
        "max_batch_size": 8,
        "dynamic_batching": False,
        "instance_count": 2,
    }
    base = plan.repository_model.config if plan.repository_model else None
    runner = build_model_config("digits", plan.model_info, _spec(), base)
    assert (runner.backend, runner.platform, runner.default_model_filename) == ("python", "", "")
    assert runner.parameters["onnx_file"].string_value == "model.onnx"
    assert runner.parameters["enable_mem_arena"].string_value == "1"
    assert runner.version_policy == parse_pbtxt(ONNX_CONFIG).version_policy
    assert runner.optimization.priority == pb.ModelOptimizationPolicy.PRIORITY_MAX
    assert not runner.optimization.HasField("execution_accelerators")  # the runner's provider is its parameter
    assert [t.name for t in runner.input] == ["float_input"]
    native = build_native_config("digits", plan.model_info, _spec(accelerator="none", cpu_threads=1), base)
    assert native.platform == "onnxruntime_onnx" and not native.backend
    assert native.parameters["intra_op_thread_count"].string_value == "1"
    assert native.parameters["enable_mem_arena"].string_value == "1"
    assert not native.optimization.execution_accelerators.cpu_execution_accelerator


def test_precision_variants_stay_with_onnx_models(tmp_path: Path, onnx_repository: Path) -> None:
    doubler_repository(onnx_repository)
    search = {"sampler": "tpe", "n_trials": 2, "space": {**SPACE, "precision": ["fp32", "fp16"]}}
    plan_study(_cfg(tmp_path, onnx_repository, name="digits", search=search))
    python = _cfg(tmp_path, onnx_repository, search=search)
    with pytest.raises(ConfigError, match="search.space.precision: precision variants are built from ONNX models"):
        plan_study(python)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"search": {"space": {"accelerator": "openvino"}}}, "search.space.accelerator: it is an ONNX Runtime"),
        ({"search": {"space": {"cpu_threads": [1, 2]}}}, "search.space.cpu_threads: it is a setting of the onnxruntime, openvino and pytorch backends"),
        ({"constraints": {"accuracy_drop": {"max": 0.01}}}, "model: model 'doubler' .* has no accuracy check"),
    ],
)
def test_onnx_runtime_knobs_and_accuracy_are_refused_for_a_python_model(
    tmp_path: Path, changes: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_study(_cfg(doubler_repository(tmp_path / "repo"), tmp_path / "repo", **changes))


def test_a_python_model_is_tuned_from_its_own_config(tmp_path: Path) -> None:
    config = DOUBLER_CONFIG + "dynamic_batching { max_queue_delay_microseconds: 500 }\n"
    plan = plan_study(_cfg(tmp_path, doubler_repository(tmp_path / "repo", config=config)))
    assert plan.model_file is None and plan.validation == {}
    assert plan.space.default_params() == {
        "max_batch_size": 8,
        "dynamic_batching": True,
        "max_queue_delay_us": 500,
        "instance_count": 1,
    }


def test_another_backend_on_the_embedded_server_is_a_config_error(tmp_path: Path) -> None:
    config = DOUBLER_CONFIG.replace('backend: "python"', 'platform: "pytorch_libtorch"')
    repository = doubler_repository(tmp_path / "repo", config=config)
    (repository / "doubler" / "1" / "model.pt").write_bytes(b"not read")
    with pytest.raises(
        ConfigError, match="on the pytorch backend, which the embedded server lacks.*local, docker or remote"
    ):
        plan_study(_cfg(tmp_path, repository))
    remote = ServerSettings(launch="remote", remote=["127.0.0.1:8000"])
    check_launch_runs(read_repository_model(repository, "doubler"), remote)  # a full Triton may have it


def test_the_cli_refuses_it_with_exit_code_2_and_starts_nothing(tmp_path: Path, tuner_main) -> None:
    doubler_repository(tmp_path / "repo", config=DOUBLER_CONFIG.replace('backend: "python"', 'backend: "openvino"'))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"study": "bad", "model": {"name": "doubler", "repository": "repo"}}))
    result = tuner_main("optimize", study, cwd=tmp_path)
    assert result.returncode == 2, result.stderr + result.stdout
    assert "openvino backend, which the embedded server lacks" in result.stderr
    assert "server.launch local, docker or remote" in result.stderr
    assert not (tmp_path / "tuner.db").exists() and not (tmp_path / ".tuner").exists()


@pytest.mark.parametrize(
    ("config", "changes", "message"),
    [
        (DOUBLER_CONFIG.replace("max_batch_size: 8", "max_batch_size: 0"), {}, "has max_batch_size 0"),
        (DOUBLER_CONFIG + "sequence_batching { }", {}, "dynamic_batching: .* uses the sequence batcher"),
    ],
)
def test_what_the_tuner_cannot_tune_is_said_before_anything_starts(
    tmp_path: Path, config: str, changes: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_study(_cfg(tmp_path, doubler_repository(tmp_path / "repo", config=config), **changes))


# --- the model on its way to a Ray worker ---


def test_a_repository_model_travels_to_a_worker_as_its_folder(tmp_path: Path) -> None:
    plan = plan_study(_cfg(tmp_path, doubler_repository(tmp_path / "repo")))
    assert plan.repository_model is not None
    setup = WorkerSetup(
        model_name="doubler",
        model_path=None,
        model_info=plan.model_info,
        workdir=tmp_path / "worker",
        sweep=None,  # type: ignore[arg-type]  # not read on the way
        engine=None,  # type: ignore[arg-type]
        repository_model=plan.repository_model,
    )
    moved = unpack_model(setup, pack_model(plan.repository_model.folder))
    assert moved.repository_model is not None and moved.model_path is None
    assert moved.repository_model.folder == tmp_path / "worker" / "source" / "doubler"
    assert (moved.repository_model.folder / "labels.txt").is_file()
    assert (moved.repository_model.folder / "1" / "model.py").read_text() == (
        tmp_path / "repo" / "doubler" / "1" / "model.py"
    ).read_text()
    assert moved.repository_model.config_text == plan.repository_model.config_text


def test_an_onnx_file_travels_to_a_worker_with_its_external_data(tmp_path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(2, 4), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [weight])
    source = tmp_path / "src" / "tiny.onnx"
    source.parent.mkdir()
    onnx.save_model(helper.make_model(graph), str(source), save_as_external_data=True, location="w.bin",
                    size_threshold=0)
    setup = WorkerSetup(
        model_name="tiny", model_path=source, model_info=None,  # type: ignore[arg-type]  # not read on the way
        workdir=tmp_path / "worker", sweep=None, engine=None,  # type: ignore[arg-type]
    )

    moved = unpack_model(setup, pack_model(source))

    assert moved.model_path == tmp_path / "worker" / "model" / "tiny.onnx"
    assert (moved.model_path.parent / "w.bin").read_bytes() == (source.parent / "w.bin").read_bytes()
    assert moved.model_path.read_bytes() == source.read_bytes()


# --- the worker's repository (laid out, no server started) ---


def _worker(cfg: StudyConfig, workdir: Path) -> Worker:
    plan = plan_study(cfg)
    setup = WorkerSetup(
        model_name=cfg.model.name,
        model_path=plan.model_file,
        model_info=plan.model_info,
        workdir=workdir,
        sweep=None,  # type: ignore[arg-type]  # nothing is measured
        engine=None,  # type: ignore[arg-type]
        server=cfg.server,
        repository_model=plan.repository_model,
    )
    return Worker(setup)


def test_triton_completes_only_the_repository_configs_that_may_need_it(tmp_path: Path, onnx_repository: Path) -> None:
    """The worker's server runs without auto-completion where every config it loads is whole (the python
    backend starts a stub per load only to ask the model for its config); where one may not be, with it."""

    def whole(repository: Path, name: str) -> bool:
        return _worker(_cfg(tmp_path, repository, name=name), tmp_path / f"w-{name}").server.whole_configs

    python = doubler_repository(tmp_path / "python")
    assert whole(python, "doubler")
    ensemble = ensemble_repository(tmp_path / "ensemble")
    assert whole(ensemble, "quadrupler")
    assert whole(onnx_repository, "digits")

    completing = DOUBLER_MODEL_PY + "\n    @staticmethod\n    def auto_complete_config(config):\n        return config\n"
    (python / "doubler" / "1" / "model.py").write_text(completing)
    assert not whole(python, "doubler")
    (ensemble / "second" / "1" / "model.py").write_text(completing)  # one step's config may be completed
    assert not whole(ensemble, "quadrupler")

    config = DOUBLER_CONFIG.replace('backend: "python"', 'platform: "pytorch_libtorch"')
    torch = doubler_repository(tmp_path / "torch", config=config)
    (torch / "doubler" / "1" / "model.pt").write_bytes(b"not read")
    assert not read_repository_model(torch, "doubler").config_is_whole  # may take its tensors from the file


class _RecordingServer:
    """Stands in for the worker's server: what was started and stopped, nothing run."""

    pid = None

    def __init__(self) -> None:
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")

    def stop(self) -> None:
        self.events.append("stop")


def test_a_worker_whose_load_engine_cannot_start_stops_the_server_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = _worker(_cfg(tmp_path, doubler_repository(tmp_path / "repo")), tmp_path / "w")
    server = worker.server = _RecordingServer()  # type: ignore[assignment]

    def no_engine() -> None:
        raise MeasurementError("perf_analyzer not found: install tritonclient[all]==2.50.0")

    monkeypatch.setattr(worker, "_make_engine", no_engine)

    with pytest.raises(MeasurementError, match="perf_analyzer not found"):
        worker.__enter__()

    assert server.events == ["start", "stop"]


def test_a_worker_lays_out_a_python_model_as_it_is_and_tunes_its_config(tmp_path: Path) -> None:
    worker = _worker(_cfg(tmp_path, doubler_repository(tmp_path / "repo")), tmp_path / "w")
    worker.lay_out()
    folder = tmp_path / "w" / "repository" / "doubler"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "1/model.py",
        "config.pbtxt",
        "labels.txt",
    ]
    config = worker.trial_configs(_spec())["doubler"]
    assert (config.name, config.backend, config.max_batch_size) == ("doubler", "python", 4)
    assert config.parameters["greeting"].string_value == "kept" and "onnx_file" not in config.parameters


def test_a_worker_puts_the_runner_beside_an_onnx_model_in_its_version_folder(
    tmp_path: Path, onnx_repository: Path
) -> None:
    worker = _worker(_cfg(tmp_path, onnx_repository, name="digits"), tmp_path / "w")
    worker.lay_out()
    version = tmp_path / "w" / "repository" / "digits" / "3"
    assert (version / "model.py").is_file() and (version / "model.onnx").is_file()
    assert worker.trial_configs(_spec())["digits"].parameters["onnx_file"].string_value == "model.onnx"


def test_a_repository_models_digest_follows_every_file_of_its_folders_and_its_steps(tmp_path: Path) -> None:
    repository = ensemble_repository(tmp_path / "repo")
    cfg = _cfg(tmp_path, repository, name="quadrupler")
    before = open_model(cfg.model).digest()
    step = open_model(cfg.model).repository.steps[0]  # type: ignore[union-attr]
    cache = step.folder / "1" / "__pycache__"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "model.cpython-311.pyc").write_bytes(b"written by the interpreter that imported model.py")

    assert open_model(cfg.model).digest() == before, "what Python caches is not the model"
    (step.folder / "config.pbtxt").write_text((step.folder / "config.pbtxt").read_text() + "\n# tuned by hand\n")
    assert open_model(cfg.model).digest() != before, "a step's own file is the model's too"


# --- export ---


def test_export_writes_the_models_own_files_with_the_trials_config(tmp_path: Path) -> None:
    from stored_studies import PLAIN, Load, write_study

    from tuner.reports import export_trial
    from tuner.storage import Store

    repository = doubler_repository(tmp_path / "repo")
    store = Store(f"sqlite:///{tmp_path / 'tuner.db'}")
    tuned = to_pbtxt(tune_config(parse_pbtxt(DOUBLER_CONFIG), _spec()))
    model = {"name": "doubler", "repository": str(repository)}
    study = write_study(store, "doubler-export", [Load(PLAIN, default=True)], {}, model=model, config_pbtxt=tuned)
    exported = export_trial(study, store, tmp_path / "deploy", number=0)
    folder = tmp_path / "deploy" / "doubler"
    assert exported.model_dir == folder
    assert [p.relative_to(tmp_path / "deploy").as_posix() for p in exported.files] == [
        "doubler/config.pbtxt",
        "doubler/1/model.py",
        "doubler/labels.txt",
        "README.md",
    ]
    assert (folder / "config.pbtxt").read_text() == tuned
    assert parse_pbtxt(tuned).parameters["greeting"].string_value == "kept"
    assert (folder / "1" / "model.py").read_text() == (repository / "doubler" / "1" / "model.py").read_text()
    assert "python backend (`1/model.py`, ONNX Runtime)" not in (tmp_path / "deploy" / "README.md").read_text()


# --- the knobs of the OpenVINO and PyTorch backends ---

OPENVINO_CONFIG = """
name: "ov"
backend: "openvino"
max_batch_size: 4
instance_group [ { count: 2 kind: KIND_CPU } ]
parameters { key: "INFERENCE_NUM_THREADS" value: { string_value: "3" } }
parameters { key: "PERFORMANCE_HINT" value: { string_value: "LATENCY" } }
parameters { key: "NUM_STREAMS" value: { string_value: "1" } }
"""


def test_the_openvino_backends_threads_and_hint_are_its_parameters() -> None:
    base = parse_pbtxt(OPENVINO_CONFIG)
    knobs = tuned_knobs(base)
    assert (knobs["cpu_threads"], knobs["performance_hint"], knobs["instance_count"]) == (3, "latency", 2)
    assert to_pbtxt(tune_config(base, TrialSpec(**{"max_queue_delay_us": 0, **knobs}))) == to_pbtxt(base)
    tuned = tune_config(base, _spec(cpu_threads=1, performance_hint="throughput"))
    assert tuned.parameters["INFERENCE_NUM_THREADS"].string_value == "1"
    assert tuned.parameters["PERFORMANCE_HINT"].string_value == "THROUGHPUT"
    assert tuned.parameters["NUM_STREAMS"].string_value == "1"  # not tuned: kept
    assert tune_config(base, _spec()).parameters["PERFORMANCE_HINT"].string_value == "LATENCY"  # no hint: its own


def test_the_pytorch_backends_intra_op_threads_are_tuned_and_its_inter_op_ones_kept() -> None:
    base = parse_pbtxt(
        'platform: "pytorch_libtorch" max_batch_size: 2 '
        'parameters { key: "INTER_OP_THREAD_COUNT" value: { string_value: "1" } }'
    )
    tuned = tune_config(base, _spec(cpu_threads=4))
    assert tuned.parameters["INTRA_OP_THREAD_COUNT"].string_value == "4"
    assert tuned.parameters["INTER_OP_THREAD_COUNT"].string_value == "1"
    assert tuned_knobs(tuned)["cpu_threads"] == 4 and "performance_hint" not in tuned_knobs(tuned)
    assert "INTRA_OP_THREAD_COUNT" not in tune_config(parse_pbtxt(DOUBLER_CONFIG), _spec()).parameters


def test_a_performance_hint_is_searched_for_openvino_models_only(tmp_path: Path) -> None:
    repository = doubler_repository(tmp_path / "repo", config=DOUBLER_CONFIG.replace('backend: "python"', 'backend: "openvino"'))
    (repository / "doubler" / "1" / "model.xml").write_text("<net/>")  # not read: the server would read it
    search = {"sampler": "tpe", "n_trials": 2, "space": {**SPACE, "performance_hint": ["latency", "throughput"], "cpu_threads": [1, 2]}}
    plan = plan_study(_cfg(tmp_path, repository, search=search, server={"launch": "remote", "remote": ["127.0.0.1:8000"]}))
    assert set(plan.space.values("performance_hint")) == {"latency", "throughput"}
    spec = plan.space.to_spec(plan.space.params_near({"performance_hint": "throughput", "cpu_threads": 2}))
    assert (spec.performance_hint, spec.cpu_threads) == ("throughput", 2)
    assert '"performance_hint": "throughput"' in spec.key() and "performance_hint" not in _spec().key()
    python = {"sampler": "tpe", "n_trials": 2, "space": {**SPACE, "performance_hint": "latency"}}
    with pytest.raises(ConfigError, match="performance_hint: it is a setting of the OpenVINO backend alone"):
        plan_study(_cfg(tmp_path, doubler_repository(tmp_path / "other"), search=python))
