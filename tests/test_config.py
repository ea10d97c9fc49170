from __future__ import annotations

import re
from pathlib import Path

import onnx
import pydantic
import pytest
import yaml
from onnx import TensorProto, helper

from tuner.config import SAMPLER_NAMES, IntRange, StudyConfig, Transfer, load_config, parse_config
from tuner.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


def _tiny_onnx(path: Path) -> Path:
    """An Identity model with input x FP32 [N, 4]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "tiny", [x], [y])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """A folder holding a study file's neighbours: ``models/tiny.onnx`` beside ``studies/``."""
    _tiny_onnx(tmp_path / "models" / "tiny.onnx")
    (tmp_path / "studies").mkdir()
    return tmp_path / "studies"


def _minimal(**extra: object) -> dict[str, object]:
    data: dict[str, object] = {"study": "s1", "model": {"name": "tiny", "path": "../models/tiny.onnx"}}
    data.update(extra)
    return data


def _write(folder: Path, data: object, name: str = "study.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def _error(folder: Path, data: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(_write(folder, data))
    return str(info.value)


def _with(path: str, value: object) -> dict[str, object]:
    """The minimal study with the dotted field ``path`` set to ``value``."""
    data = _minimal()
    node = data
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})  # type: ignore[assignment]
    node[last] = value  # type: ignore[index]
    return data


# --- valid files -------------------------------------------------------------------------------


def test_minimal_file_loads_with_defaults(study_dir: Path) -> None:
    config = load_config(_write(study_dir, _minimal()))

    assert isinstance(config, StudyConfig)
    assert config.study == "s1"
    assert config.model.name == "tiny"
    assert config.model.inputs == []
    assert config.server.launch == "embedded"
    assert config.server.http_port is None
    assert config.workers.count is None  # one per GPU, else one: see tuner.workers._hardware.plan_workers
    assert config.search.sampler == "bo"
    assert config.search.n_trials == 20
    assert config.search.timeout_s is None
    assert config.search.space.max_batch_size == [1, 4, 8, 16, 32]
    assert config.search.space.dynamic_batching == [False, True]
    assert config.search.space.max_queue_delay_us == IntRange(low=0, high=20000, step=100)
    assert config.search.space.instance_count == IntRange(low=1, high=4)
    assert config.search.space.cpu_threads is None
    assert [(o.metric, o.direction) for o in config.objectives] == [
        ("throughput", "maximize"),
        ("latency_p99_ms", "minimize"),
    ]
    assert config.constraints == {}
    assert config.load.concurrency == [8]
    assert config.load.protocol == "grpc"


def test_relative_paths_resolve_against_study_file_folder(study_dir: Path) -> None:
    config = load_config(_write(study_dir, _minimal(storage="sqlite:///db/t.db", work_dir="work")))

    assert config.model.path == (study_dir.parent / "models" / "tiny.onnx").resolve()
    assert config.storage == "sqlite:///" + str((study_dir / "db" / "t.db").resolve())
    assert config.work_dir == (study_dir / "work").resolve()


def test_default_work_dir_resolves_against_study_file_folder(study_dir: Path) -> None:
    config = load_config(_write(study_dir, _minimal()))

    assert config.work_dir == (study_dir / ".tuner").resolve()


def test_relative_paths_do_not_depend_on_working_directory(
    study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = load_config(_write(study_dir, _minimal()))

    assert config.model.path == (study_dir.parent / "models" / "tiny.onnx").resolve()


def test_absolute_model_path_is_kept(study_dir: Path, tmp_path: Path) -> None:
    model = _tiny_onnx(tmp_path / "abs" / "m.onnx")

    config = load_config(_write(study_dir, _with("model.path", str(model))))

    assert config.model.path == model


@pytest.mark.parametrize(
    "url", ["sqlite:///:memory:", "postgresql://user@db.example/tuner", "sqlite:////var/tmp/abs.db"]
)
def test_other_storage_urls_pass_through(study_dir: Path, url: str) -> None:
    config = load_config(_write(study_dir, _minimal(storage=url)))

    assert config.storage == url


def test_timeout_is_an_alias_of_timeout_s(study_dir: Path) -> None:
    by_alias = load_config(_write(study_dir, _with("search.timeout", 90), "a.yaml"))
    by_name = load_config(_write(study_dir, _with("search.timeout_s", 45), "b.yaml"))

    assert by_alias.search.timeout_s == 90.0
    assert by_name.search.timeout_s == 45.0


def test_warm_start_is_a_flag_or_the_studies_to_start_from(study_dir: Path) -> None:
    assert load_config(_write(study_dir, _minimal(), "a.yaml")).search.warm_start is True
    assert load_config(_write(study_dir, _with("search.warm_start", False), "b.yaml")).search.warm_start is False
    transfer = load_config(_write(study_dir, _with("search.warm_start", {"from": ["cpu-box", "v1"]}), "c.yaml"))
    given = load_config(_write(study_dir, _with("search.warm_start", {"from": ["v1"], "configs": 2}), "d.yaml"))

    assert isinstance(transfer.search.warm_start, Transfer)
    assert transfer.search.warm_start.from_ == ["cpu-box", "v1"]
    assert transfer.search.warm_start.configs == 4
    assert isinstance(given.search.warm_start, Transfer) and given.search.warm_start.configs == 2
    # the study file is stored as it was given, and reads back the same (tuner export reads it)
    dumped = transfer.model_dump(mode="json")
    assert dumped["search"]["warm_start"] == {"from": ["cpu-box", "v1"], "configs": 4}
    assert parse_config(dumped, study_dir).search.warm_start == transfer.search.warm_start


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"from": []}, "search.warm_start.from: List should have at least 1 item"),
        ({"studies": ["v1"]}, "search.warm_start.from: Field required"),
        ({"from": ["v1"], "top": 3}, "search.warm_start.top: unknown field"),
        ({"from": ["v1", "v1"]}, "search.warm_start.from: each study may be named once"),
        ({"from": ["../v1"]}, "search.warm_start.from.0: use letters"),
        ({"from": ["v1"], "configs": 0}, "search.warm_start.configs: Input should be greater than or equal to 1"),
        ({"from": ["s1"]}, "search.warm_start.from: names this study ('s1')"),
        ("sometimes", "search.warm_start: Input should be a valid boolean"),
    ],
)
def test_bad_warm_start_names_the_field(study_dir: Path, value: object, expected: str) -> None:
    assert expected in _error(study_dir, _with("search.warm_start", value))


def test_scalar_concurrency_becomes_a_list(study_dir: Path) -> None:
    config = load_config(_write(study_dir, _with("load.concurrency", 3)))

    assert config.load.concurrency == [3]


def test_input_dtype_is_normalised(study_dir: Path) -> None:
    inputs = [{"name": "x", "shape": [4], "dtype": "type_fp16"}]
    config = load_config(_write(study_dir, _with("model.inputs", inputs)))

    assert config.model.inputs[0].dtype == "FP16"
    assert config.model.inputs[0].shape == [4]
    inputs = [{"name": "x", "shape": [4], "dtype": "float32"}, {"name": "y", "shape": [4], "dtype": "int64"},
              {"name": "z", "shape": [4]}]  # numpy's names read as Triton's; none given: the model's own
    config = load_config(_write(study_dir, _with("model.inputs", inputs)))
    assert [t.dtype for t in config.model.inputs] == ["FP32", "INT64", None]


def test_all_three_ports_are_accepted(study_dir: Path) -> None:
    ports = {"http_port": 8000, "grpc_port": 8001, "metrics_port": 8002}
    config = load_config(_write(study_dir, _minimal(server=ports)))

    assert (config.server.http_port, config.server.grpc_port, config.server.metrics_port) == (8000, 8001, 8002)


def test_parse_config_resolves_against_given_base_dir(study_dir: Path) -> None:
    config = parse_config(_minimal(), study_dir)

    assert config.model.path == (study_dir.parent / "models" / "tiny.onnx").resolve()


@pytest.mark.parametrize("name", ["digits_forest_cpu.yaml", "text_detection_cpu.yaml"])
def test_shipped_study_files_load(name: str, digits_onnx: Path, text_detection_onnx: Path) -> None:
    path = REPO_ROOT / "search_spaces" / name
    data = yaml.safe_load(path.read_text())
    model = (path.parent / data["model"]["path"]).resolve()

    config = load_config(path)

    assert config.study == data["study"]
    assert config.model.path == model
    assert config.storage == "sqlite:///" + str((REPO_ROOT / "tuner.db").resolve())
    assert config.search.sampler in SAMPLER_NAMES


def test_shipped_digits_file_gives_its_input(digits_onnx: Path) -> None:
    config = load_config(REPO_ROOT / "search_spaces" / "digits_forest_cpu.yaml")

    assert [(t.name, t.shape, t.dtype) for t in config.model.inputs] == [("float_input", [64], "FP32")]
    assert config.constraints["latency_p99_ms"].max == 50


# --- bad files ---------------------------------------------------------------------------------


def test_missing_study_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError, match="cannot read study file") as info:
        load_config(path)

    assert str(path) in str(info.value)


def test_malformed_yaml_names_the_line(study_dir: Path) -> None:
    path = study_dir / "study.yaml"
    path.write_text("study: s1\nmodel:\n  name: tiny\n   path: ../models/tiny.onnx\n")

    with pytest.raises(ConfigError, match=r"malformed YAML at line 4\b"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"study: \xff\xfe\n", "not UTF-8 text (byte 7"),
        (b"study: s1\nx: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply to read"),
        (b'study: s1\nmodel: {name: tiny, path: "\\udcff"}\n', "a character that is not text"),
    ],
)
def test_a_file_that_cannot_be_read_as_a_study_is_one_error(study_dir: Path, text: bytes, message: str) -> None:
    path = study_dir / "study.yaml"
    path.write_bytes(text)

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("a" * 5000 + "/tiny.onnx", "cannot be a path here: File name too long"),
        ("~nosuchuser/tiny.onnx", "'~nosuchuser/tiny.onnx' cannot be a path here"),
        ("..", "is not a regular file"),
    ],
)
def test_a_path_no_file_can_have_is_an_error_of_its_field(study_dir: Path, where: str, message: str) -> None:
    error = _error(study_dir, _with("model.path", where))

    assert "model.path: " in error and message in error, error


def test_a_key_given_twice_is_an_error_naming_its_line(study_dir: Path) -> None:
    path = study_dir / "study.yaml"
    path.write_text("study: s1\nmodel: {name: tiny, path: ../models/tiny.onnx}\nworkers: {count: 1}\n"
                    "workers: {count: 64}\n")

    with pytest.raises(ConfigError, match=r"malformed YAML at line 4, column 1: 'workers' is given twice"):
        load_config(path)


def _tiny_study(study_dir: Path, rest: str) -> Path:
    """A study file of the tiny model, as YAML text: its study and model, then ``rest``."""
    path = study_dir / "study.yaml"
    path.write_text(f"study: s1\nmodel: {{name: tiny, path: ../models/tiny.onnx}}\n{rest}")
    return path


def test_a_merge_key_may_be_given_again_by_name(study_dir: Path) -> None:
    search = load_config(_tiny_study(study_dir, "search:\n  <<: {n_trials: 3, seed: 1}\n  seed: 7\n")).search

    assert (search.n_trials, search.seed) == (3, 7)


def test_a_number_in_exponent_form_without_a_dot_is_a_number(study_dir: Path) -> None:
    load = load_config(_tiny_study(study_dir, "load: {measurement_window_ms: 2e3, trial_timeout_s: 1.5E+2}\n")).load

    assert (load.measurement_window_ms, load.trial_timeout_s) == (2000, 150.0)
    with pytest.raises(ConfigError, match=r"load\.measurement_window_ms: (?!.*valid integer)"):
        load_config(_tiny_study(study_dir, "load: {measurement_window_ms: 1e308}\n"))


def test_top_level_list_is_rejected(study_dir: Path) -> None:
    message = _error(study_dir, [_minimal()])

    assert "expected a mapping" in message


def test_parse_config_rejects_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config("study: s", tmp_path)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_minimal(foo=1), "foo: unknown field"),
        (_with("search.space.foo", 1), "search.space.foo: unknown field"),
        (_with("model.colour", "red"), "model.colour: unknown field"),
        (_with("search.space.instance_count.bar", 1), "search.space.instance_count.bar: unknown field"),
    ],
)
def test_unknown_keys_are_named(study_dir: Path, data: dict[str, object], field: str) -> None:
    assert field in _error(study_dir, data)


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (_with("search.space.instances_count", [1, 2]), ("search.space.instances_count: unknown field; did you mean "
                                                        "instance_count?")),
        (_minimal(constraint={}), "constraint: unknown field; did you mean constraints?"),
        (_with("search.warm_start", {"form": ["v1"]}), "search.warm_start.form: unknown field; did you mean from?"),
        (_with("model.inputs", [{"name": "x", "shape": [4], "dtyp": "FP32"}]),
         "model.inputs.0.dtyp: unknown field; did you mean dtype?"),
        (_with("workers.cpus", 1), ("workers.cpus: unknown field; valid: backend, count, cpus_per_worker, "
                                   "gpus_per_worker, ray_address")),
    ],
)
def test_an_unknown_key_is_told_the_known_one_it_is_nearest_or_the_known_ones(
    study_dir: Path, data: dict[str, object], said: str
) -> None:
    assert said in _error(study_dir, data)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("search.n_trials", True),
        ("search.space.instance_count", [True, 2]),
        ("search.space.instance_count.low", True),
        ("load.concurrency", [False, 4]),
        ("load.measurement_window_ms", True),
    ],
)
def test_a_number_given_as_true_or_false_is_refused(study_dir: Path, where: str, value: object) -> None:
    """YAML reads yes and on as true, which pydantic alone would take for 1."""
    data = _with(where, value) if not where.endswith(".low") else _with(where[:-4], {"low": value, "high": 3})

    assert f"{where}: a number is needed here, not true or false" in _error(study_dir, data)


def test_true_and_false_still_set_what_takes_them(study_dir: Path) -> None:
    config = load_config(_write(study_dir, _with("search.space.dynamic_batching", [True, False])))

    assert config.search.space.dynamic_batching == [True, False]


def test_missing_required_field_is_named(study_dir: Path) -> None:
    message = _error(study_dir, {"model": {"name": "tiny", "path": "../models/tiny.onnx"}})

    assert "study:" in message


@pytest.mark.parametrize(
    ("knob", "value", "expected"),
    [
        ("instance_count", {"low": 3, "high": 1}, "low (3) is above high (1)"),
        ("instance_count", {"low": -1, "high": 2}, "at least 1"),
        ("instance_count", -2, "at least 1"),
        ("max_batch_size", [0, 4], "at least 1"),
        ("max_queue_delay_us", {"low": -5, "high": 10}, "at least 0"),
        ("cpu_threads", 0, "at least 1"),
        ("instance_count", [], "at least 1 item"),
        ("max_batch_size", [4, 4], "must not repeat"),
        ("dynamic_batching", [], "at least 1 item"),
        ("dynamic_batching", [True, True], "must not repeat"),
        ("instance_count", "many", "expected a value, a list of choices or {low, high}"),
        ("instance_count", {"low": 1, "high": 4, "step": 0}, "greater than or equal to 1"),
        ("max_batch_size", {"low": 0, "high": 8, "log": True}, "log range"),
    ],
)
def test_bad_search_space_names_the_knob(study_dir: Path, knob: str, value: object, expected: str) -> None:
    message = _error(study_dir, _with(f"search.space.{knob}", value))

    assert f"search.space.{knob}" in message
    assert expected in message


def test_unknown_sampler_lists_valid_ones(study_dir: Path) -> None:
    message = _error(study_dir, _with("search.sampler", "cmaes"))

    assert "search.sampler" in message
    assert "'cmaes'" in message
    for name in SAMPLER_NAMES:
        assert name in message


def test_unknown_objective_metric(study_dir: Path) -> None:
    message = _error(study_dir, _minimal(objectives=[{"metric": "speed", "direction": "maximize"}]))

    assert "objectives.0.metric" in message
    assert "unknown metric 'speed'" in message
    assert "throughput" in message  # the valid ones are listed


def test_duplicate_objective_metric(study_dir: Path) -> None:
    objective = {"metric": "throughput", "direction": "maximize"}
    message = _error(study_dir, _minimal(objectives=[objective, objective]))

    assert "objectives" in message
    assert "once" in message


def test_empty_objectives(study_dir: Path) -> None:
    assert "objectives" in _error(study_dir, _minimal(objectives=[]))


def test_bad_objective_direction(study_dir: Path) -> None:
    message = _error(study_dir, _minimal(objectives=[{"metric": "throughput", "direction": "up"}]))

    assert "objectives.0.direction" in message


def test_unknown_constraint_metric(study_dir: Path) -> None:
    message = _error(study_dir, _minimal(constraints={"speed": {"max": 1}}))

    assert "constraints" in message
    assert "unknown metric 'speed'" in message


def test_a_constraint_no_config_could_hold_is_refused(study_dir: Path) -> None:
    message = _error(study_dir, _minimal(constraints={"latency_p99_ms": {"max": -5}}))

    assert "constraints" in message
    assert "latency_p99_ms: max -5 can never hold" in message
    for bound in ({"max": 0}, {"min": -1, "max": 10}):  # a max of 0 holds for an accuracy drop of none
        assert load_config(_write(study_dir, _minimal(constraints={"accuracy_drop": bound}))).constraints


def test_constraint_without_min_or_max(study_dir: Path) -> None:
    message = _error(study_dir, _minimal(constraints={"latency_p99_ms": {}}))

    assert "constraints.latency_p99_ms" in message
    assert "give min, max or both" in message


def test_constraint_with_min_above_max(study_dir: Path) -> None:
    message = _error(study_dir, _minimal(constraints={"throughput": {"min": 10, "max": 5}}))

    assert "constraints.throughput" in message
    assert "above max" in message


def test_missing_model_file(study_dir: Path) -> None:
    message = _error(study_dir, _with("model.path", "nowhere.onnx"))

    assert "model.path" in message
    assert str((study_dir / "nowhere.onnx").resolve()) in message
    assert "does not exist" in message


def test_missing_repository_model_hints_at_prepare(tmp_path: Path) -> None:
    folder = tmp_path / "search_spaces"
    folder.mkdir()
    message = _error(folder, _with("model.path", "../model_repository/foo/1/model.onnx"))

    assert "tuner models prepare foo" in message


@pytest.mark.parametrize(("file", "name"), [("tiny.onnx", "tiny"), ("my model (v2).onnx", "my_model__v2_"),
                                            ("-.onnx", "model"), (f"{'x' * 150}.onnx", "x" * 100)])
def test_an_onnx_files_model_is_named_after_the_file_where_the_study_names_it_not(
        study_dir: Path, file: str, name: str) -> None:
    _tiny_onnx(study_dir / file)
    config = load_config(_write(study_dir, {"study": "s1", "model": {"path": file}}))

    assert config.model.name == name


def test_a_repository_model_needs_its_name(study_dir: Path) -> None:
    (study_dir / "repo").mkdir()
    message = _error(study_dir, {"study": "s1", "model": {"repository": "repo"}})

    assert "model.name: Field required" in message


def test_bad_model_name(study_dir: Path) -> None:
    message = _error(study_dir, _with("model.name", "my model"))

    assert "model.name" in message


def test_an_input_dimension_of_zero_is_refused(study_dir: Path) -> None:
    message = _error(study_dir, _with("model.inputs", [{"name": "x", "shape": [0]}]))

    assert "model.inputs.0.shape: [0]: each dimension is a size of at least 1, or -1 where it is free" in message


def test_bad_input_dtype(study_dir: Path) -> None:
    message = _error(study_dir, _with("model.inputs", [{"name": "x", "shape": [4], "dtype": "fp128"}]))

    assert "model.inputs.0.dtype" in message
    assert "unknown dtype 'fp128'" in message, "the value as written"


@pytest.mark.parametrize("value", [0, [0], [4, -1]])
def test_concurrency_below_one(study_dir: Path, value: object) -> None:
    message = _error(study_dir, _with("load.concurrency", value))

    assert "load.concurrency" in message
    assert "greater than or equal to 1" in message


def test_empty_concurrency_list(study_dir: Path) -> None:
    assert "load.concurrency" in _error(study_dir, _with("load.concurrency", []))


@pytest.mark.parametrize(
    "ports",
    [{"http_port": 8000}, {"grpc_port": 8001, "metrics_port": 8002}, {"http_port": 8000, "metrics_port": 8002}],
)
def test_some_ports_only(study_dir: Path, ports: dict[str, int]) -> None:
    message = _error(study_dir, _minimal(server=ports))

    assert "server" in message
    assert "http_port, grpc_port and metrics_port" in message


def test_equal_ports(study_dir: Path) -> None:
    message = _error(study_dir, _minimal(server={"http_port": 8000, "grpc_port": 8000, "metrics_port": 8002}))

    assert "must differ" in message


def test_fixed_ports_with_several_workers(study_dir: Path) -> None:
    data = _minimal(server={"http_port": 8000, "grpc_port": 8001, "metrics_port": 8002}, workers={"count": 2})

    assert "one worker only" in _error(study_dir, data)


def test_zero_trials(study_dir: Path) -> None:
    assert "search.n_trials" in _error(study_dir, _with("search.n_trials", 0))


def test_errors_are_joined_one_per_problem(study_dir: Path) -> None:
    message = _error(study_dir, _minimal(foo=1, constraints={"speed": {"max": 1}}))

    assert "foo: unknown field" in message
    assert "unknown metric 'speed'" in message


def test_config_is_frozen(study_dir: Path) -> None:
    config = load_config(_write(study_dir, _minimal()))

    with pytest.raises(pydantic.ValidationError):
        config.study = "other"  # type: ignore[misc]


def test_load_defaults_and_auto_concurrency(study_dir: Path) -> None:
    cfg = load_config(_write(study_dir, _minimal(load={"concurrency": "auto", "engine": "builtin"})))
    assert cfg.load.concurrency == "auto" and cfg.load.engine == "builtin"
    assert (cfg.load.concurrency_search.start, cfg.load.concurrency_search.max) == (1, 64)
    assert (cfg.load.remeasure.loads, cfg.load.remeasure.max_loads_per_config) == ("auto", 3)
    assert cfg.load.input_data == "auto"


@pytest.mark.parametrize(
    ("remeasure", "loads", "per_config"),
    [
        ({"loads": 0}, 0, 3),
        ({"loads": 7, "max_loads_per_config": 5}, 7, 5),
        ({"top": 0}, 0, 3),  # the older form: off
        ({"top": 2, "repeats": 2}, 4, 3),  # 2 more loads of the best 2
        ({"repeats": 1}, 3, 2),
    ],
)
def test_remeasure_budget_and_the_older_keys(study_dir: Path, remeasure: dict, loads: int, per_config: int) -> None:
    settings = load_config(_write(study_dir, _minimal(load={"remeasure": remeasure}))).load.remeasure
    assert (settings.loads, settings.max_loads_per_config) == (loads, per_config)
    assert settings.budget(40) == loads


def test_remeasure_auto_is_a_quarter_of_the_trials(study_dir: Path) -> None:
    settings = load_config(_write(study_dir, _minimal())).load.remeasure
    assert [settings.budget(n) for n in (1, 3, 4, 7, 20)] == [0, 0, 1, 1, 5]


@pytest.mark.parametrize(
    ("load", "message"),
    [
        ({"concurrency": "fast"}, "load.concurrency"),
        ({"engine": "locust"}, "load.engine"),
        ({"engine": "builtin", "protocol": "http"}, "builtin engine speaks gRPC"),
        ({"shared_memory": "cuda"}, "load.shared_memory"),
        ({"engine": "builtin", "shared_memory": "system"}, "builtin engine sends tensors over gRPC"),
        ({"concurrency_search": {"start": 8, "max": 4}}, "start (8) is above max (4)"),
        ({"concurrency_search": {"budget": 100}}, "give metric and budget together"),
        ({"concurrency_search": {"metric": "latency_p77_ms", "budget": 100}}, "unknown metric 'latency_p77_ms'"),
        ({"input_data": "samples/missing.npy"}, "load.input_data"),
        ({"remeasure": {"max_loads_per_config": 0}}, "load.remeasure.max_loads_per_config"),
        ({"remeasure": {"loads": "some"}}, "load.remeasure.loads"),
        ({"remeasure": {"loads": -1}}, "load.remeasure.loads"),
        ({"remeasure": {"repeats": 0}}, "repeats: an integer from 1 to 100 (or use loads and max_loads_per_config)"),
        ({"remeasure": {"top": 2, "loads": 4}}, "older form of loads and max_loads_per_config"),
        ({"contamination_cpu_pct": 0}, "load.contamination_cpu_pct"),
    ],
)
def test_bad_load_settings_name_the_field(study_dir: Path, load: dict, message: str) -> None:
    assert message in _error(study_dir, _minimal(load=load))


@pytest.mark.parametrize(
    ("server", "shares"),
    [
        ({}, True),
        ({"launch": "local", "binary": "/bin/true"}, True),
        ({"launch": "docker", "docker_args": ["--ipc=host"]}, True),
        ({"launch": "docker"}, False),
        ({"launch": "remote", "remote": [{"http": "10.0.0.5:8000", "grpc": "10.0.0.5:8001"}]}, False),
    ],
)
def test_shared_memory_needs_a_server_that_shares_the_workers_dev_shm(
    study_dir: Path, server: dict, shares: bool
) -> None:
    data = _minimal(server=server, load={"shared_memory": "system"})
    if shares:
        assert load_config(_write(study_dir, data)).load.shared_memory == "system"
    else:
        assert "load.shared_memory: system needs the server's /dev/shm" in _error(study_dir, data)
    assert load_config(_write(study_dir, _minimal(server=server))).load.shared_memory == "none"


def test_input_data_file_is_relative_to_the_study_file(study_dir: Path) -> None:
    import numpy as np

    np.save(study_dir / "samples.npy", np.zeros((3, 4), dtype=np.float32))
    cfg = load_config(_write(study_dir, _minimal(load={"input_data": "samples.npy"})))
    assert cfg.load.input_data == study_dir / "samples.npy"


def test_auto_concurrency_takes_its_budget_from_the_latency_constraint(study_dir: Path) -> None:
    from tuner.workers import sweep_plan

    cfg = load_config(_write(study_dir, _minimal(
        load={"concurrency": "auto"},
        constraints={"accuracy_drop": {"max": 0.1}, "latency_p95_ms": {"max": 40}},
    )))
    plan = sweep_plan(cfg)
    assert (plan.fixed, plan.metric, plan.budget) == (None, "latency_p95_ms", 40)
    fixed = sweep_plan(load_config(_write(study_dir, _minimal(load={"concurrency": [2, 4]}))))
    assert fixed.fixed == (2, 4)
