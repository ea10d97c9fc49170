"""Recorded landscapes and replayed studies: the whole study loop, answered from a file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from optuna.trial import TrialState

from tuner.config import parse_config
from tuner.errors import ConfigError, LeaseLostError
from tuner.pool import WorkerPlan
from tuner.replay import Landscape, ReplayPool
from tuner.storage import ATTR_FAIL_REASON, ATTR_METRICS, Store, read_info
from tuner.study import StudyRunner, plan_study
from tuner.study._record import recording_machine
from tuner.trial import LoadPoint, TrialOutcome, TrialSpec
from tuner.triton import cpu_model

SPACE = {
    "max_batch_size": [1, 8, 32],
    "dynamic_batching": [False, True],
    "max_queue_delay_us": [0, 1000, 5000],
    "instance_count": [1, 2],
    "accelerator": ["none", "openvino"],
}


def _point(spec: TrialSpec) -> LoadPoint:
    """A made-up but structured landscape: more instances and batching help, delay costs latency."""
    throughput = 100.0 * spec.instance_count + (40.0 * spec.max_batch_size**0.5 if spec.dynamic_batching else 0.0)
    throughput *= 1.2 if spec.accelerator == "openvino" else 1.0
    p99 = 5.0 + spec.max_queue_delay_us / 500 + spec.max_batch_size / 4
    return LoadPoint(8, throughput, p99 / 2, p99 / 2, p99 * 0.8, p99 * 0.9, p99)


def _study_file(tmp_path: Path, digits_onnx: Path, **search: Any) -> dict[str, Any]:
    return {
        "study": "replayed",
        "storage": f"sqlite:///{tmp_path / 'replay.db'}",
        "model": {"name": "digits_forest", "path": str(digits_onnx)},
        "workers": {"backend": "local", "cpus_per_worker": 2},
        "search": {"sampler": "tpe", "n_trials": 15, "seed": 3, "space": SPACE, **search},
        "constraints": {"latency_p99_ms": {"max": 14}},
        "load": {"concurrency": [8]},
    }


def _study_yaml(tmp_path: Path, digits_onnx: Path, **search: Any) -> Path:
    """``_study_file`` written as the YAML file a user runs."""
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_study_file(tmp_path, digits_onnx, **search)))
    return path


@pytest.fixture
def landscape_file(tmp_path: Path, digits_onnx: Path) -> Path:
    cfg = parse_config(_study_file(tmp_path, digits_onnx), tmp_path)
    space = plan_study(cfg).space
    landscape = Landscape(model="digits_forest", study={}, worker_plan=WorkerPlan(1, 2, 0.0))
    for params in space.combinations():
        spec = space.to_spec(params)
        if spec.accelerator == "openvino" and spec.max_batch_size == 32:
            outcome = TrialOutcome(spec, "", error="Triton refused the config (openvino, fp32): made up")
        else:
            outcome = TrialOutcome(spec, "name: \"digits_forest\"", points=(_point(spec),), timings_s={"measure_s": 5.0})
        landscape.add(outcome, params)
    path = tmp_path / "landscape.json"
    landscape.save(path)
    return path


def _replay(tmp_path: Path, digits_onnx: Path, landscape: Path, name: str, **search: Any) -> list[tuple]:
    data = _study_file(tmp_path, digits_onnx, replay=str(landscape), **search) | {"study": name}
    cfg = parse_config(data, tmp_path)
    summary = StudyRunner(cfg, Store(cfg.storage)).run()
    return [
        (t.number, t.state, dict(t.params), t.values, t.user_attrs.get(ATTR_FAIL_REASON))
        for t in summary.study.trials
    ]


def test_landscape_file_round_trips(landscape_file: Path) -> None:
    landscape = Landscape.load(landscape_file)

    again = Landscape.from_json(landscape.to_json())

    assert len(landscape.outcomes) == 40  # at max batch 1 the batcher's delays are one config
    assert again.outcomes == landscape.outcomes
    assert again.worker_plan == WorkerPlan(1, 2, 0.0)


def test_replayed_studies_repeat_for_the_same_seed(tmp_path: Path, digits_onnx: Path, landscape_file: Path) -> None:
    first = _replay(tmp_path, digits_onnx, landscape_file, "a")
    second = _replay(tmp_path, digits_onnx, landscape_file, "b")
    other_seed = _replay(tmp_path, digits_onnx, landscape_file, "c", seed=4)

    assert len(first) == 15
    assert first == second
    assert first != other_seed


def test_replayed_trials_carry_the_recorded_measurements(
    tmp_path: Path, digits_onnx: Path, landscape_file: Path
) -> None:
    data = _study_file(tmp_path, digits_onnx, replay=str(landscape_file), sampler="grid") | {"study": "grid"}
    cfg = parse_config(data, tmp_path)
    runner = StudyRunner(cfg, Store(cfg.storage))

    summary = runner.run(n_trials=100)

    trials = summary.study.trials
    assert len(trials) == 40  # the grid ends the study when every config is measured
    assert summary.stopped is not None and "grid" in summary.stopped
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 8 and all("made up" in t.user_attrs[ATTR_FAIL_REASON] for t in failed)
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            spec = runner.space.to_spec(trial.params)
            assert trial.user_attrs[ATTR_METRICS]["throughput"] == pytest.approx(_point(spec).throughput)


def test_quick_search_ends_the_replayed_study_with_a_message(
    tmp_path: Path, digits_onnx: Path, landscape_file: Path
) -> None:
    data = _study_file(tmp_path, digits_onnx, replay=str(landscape_file), sampler="quick", n_trials=100)
    cfg = parse_config(data | {"study": "quick"}, tmp_path)

    summary = StudyRunner(cfg, Store(cfg.storage)).run()

    assert len(summary.study.trials) < 40
    assert summary.stopped == "quick search converged: no neighbour of the best config improves on it"
    assert summary.study.trials[0].params == {"max_batch_size": 1, "dynamic_batching": False,
                                              "instance_count": 1, "accelerator": "none"}


#: A part of SPACE for the bo sampler, whose GP fits grow with the trials: 16 configs, 4 of them refused.
BO_SPACE = {"max_batch_size": [1, 32], "dynamic_batching": [False, True], "max_queue_delay_us": 0,
            "instance_count": [1, 2], "accelerator": ["none", "openvino"]}


def test_bo_replay_repeats_measures_every_config_once_and_says_why_it_stopped(
    tmp_path: Path, digits_onnx: Path, landscape_file: Path
) -> None:
    data = _study_file(tmp_path, digits_onnx, replay=str(landscape_file), sampler="bo", n_trials=100, space=BO_SPACE)
    runs = []
    for name in ("bo-a", "bo-b"):
        cfg = parse_config(data | {"study": name}, tmp_path)
        summary = StudyRunner(cfg, Store(cfg.storage)).run()
        assert summary.stopped == "every config of the space was measured"
        runs.append([(t.number, t.state, dict(t.params), t.values, t.user_attrs.get(ATTR_FAIL_REASON))
                     for t in summary.study.trials])
    first, second = runs

    assert first == second
    assert len(first) == 16  # every config once, then the study ends
    assert len({json.dumps(params, sort_keys=True) for _, _, params, _, _ in first}) == 16
    assert sum(state == TrialState.FAIL for _, state, _, _, _ in first) == 4


def test_a_config_missing_from_the_landscape_is_a_failed_trial() -> None:
    landscape = Landscape(model="m", study={}, worker_plan=WorkerPlan(1, 2, 0.0))
    spec = TrialSpec(4, False, 0, 1, cpu_threads=2)

    with ReplayPool(landscape) as pool:
        pool.submit(0, spec)
        [finished] = pool.collect(timeout_s=1.0)

    assert finished.outcome.failed
    assert finished.outcome.error == "config not in the recorded landscape"


def test_replay_file_must_exist(tmp_path: Path, digits_onnx: Path) -> None:
    with pytest.raises(ConfigError, match=r"search\.replay: landscape file .* does not exist"):
        parse_config(_study_file(tmp_path, digits_onnx, replay="nowhere.json"), tmp_path)


def test_replay_of_another_model_is_refused(tmp_path: Path, digits_onnx: Path) -> None:
    path = tmp_path / "other.json"
    Landscape(model="text_detection", study={}, worker_plan=WorkerPlan(1, 2, 0.0)).save(path)
    cfg = parse_config(_study_file(tmp_path, digits_onnx, replay=str(path)), tmp_path)

    with pytest.raises(ConfigError, match="search.replay: .* recorded for model 'text_detection'"):
        plan_study(cfg)


def test_a_file_that_is_not_a_landscape_is_refused(tmp_path: Path, digits_onnx: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"trials": []}')
    cfg = parse_config(_study_file(tmp_path, digits_onnx, replay=str(path)), tmp_path)

    with pytest.raises(ConfigError, match="search.replay: not a landscape file"):
        plan_study(cfg)


def test_optimize_replays_a_landscape_from_the_command_line(
    tmp_path: Path, digits_onnx: Path, landscape_file: Path, tuner_main
) -> None:
    study = _study_yaml(tmp_path, digits_onnx, sampler="quick", n_trials=30)

    done = tuner_main("optimize", study, "--replay", landscape_file, cwd=tmp_path)
    missing = tuner_main("optimize", study, "--replay", "nowhere.json", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "quick search converged" in done.stdout
    assert missing.returncode == 2
    assert "--replay: landscape file nowhere.json does not exist" in missing.stderr


def test_a_study_run_again_once_done_says_that_nothing_is_left(
    tmp_path: Path, digits_onnx: Path, landscape_file: Path, tuner_main
) -> None:
    study = _study_yaml(tmp_path, digits_onnx, sampler="bo", n_trials=3)

    first = tuner_main("optimize", study, "--replay", landscape_file, cwd=tmp_path)
    again = tuner_main("optimize", study, "--replay", landscape_file, cwd=tmp_path)

    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    said = "nothing left to measure: the study has its 3 trials (--n-trials above 3 extends it)"
    assert said not in first.stdout and said in again.stdout
    # the plan's notes are told once, at the study's start
    assert first.stdout.count("note: ") >= 1 and "note: " not in again.stdout


def test_a_landscape_says_the_cpu_and_the_versions_that_measured_it(tmp_path: Path, landscape_file: Path) -> None:
    machine = recording_machine(triton="2.51.0")
    assert machine["cpu_model"] and machine["cores"]
    versions = machine["versions"]
    assert isinstance(versions, dict)
    assert versions["triton"] == "2.51.0"
    assert {"tuner", "python", "tritonclient", "optuna"} <= set(versions)
    assert any(name.startswith("onnxruntime") for name in versions)
    landscape = Landscape.load(landscape_file)  # a file of before these keys loads as it is
    assert landscape.machine == {}
    landscape.machine = machine
    landscape.save(path := tmp_path / "with-machine.json")
    assert Landscape.load(path).machine == json.loads(json.dumps(machine))


def test_the_cpu_model_is_read_from_cpuinfo_and_else_from_the_platform(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n")
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) Gold 6338"
    assert cpu_model(tmp_path / "missing")  # platform.processor() or the architecture


def test_a_study_continued_with_other_choices_of_a_knob_is_refused_before_it_runs(
    tmp_path: Path, digits_onnx: Path, landscape_file: Path
) -> None:
    first = _replay(tmp_path, digits_onnx, landscape_file, "again", n_trials=3)
    data = _study_file(tmp_path, digits_onnx, replay=str(landscape_file), n_trials=6) | {"study": "again"}
    data["search"]["space"] = {**SPACE, "max_batch_size": [1, 8]}
    cfg = parse_config(data, tmp_path)

    with pytest.raises(ConfigError, match=r"search\.space\.max_batch_size: study 'again' already exists with "
                                          r"max_batch_size \[1, 8, 32\], and this file asks \[1, 8\]"):
        StudyRunner(cfg, Store(cfg.storage))
    assert len(Store(cfg.storage).load_study("again").trials) == len(first)  # nothing was asked of it


def test_a_study_whose_constraints_changed_since_is_not_continued(
    tmp_path: Path, digits_onnx: Path, landscape_file: Path
) -> None:
    """Each trial's feasibility is stored as it finishes: a study continued under another budget would
    judge its old trials by the old one and its new trials by the new one."""
    first = _replay(tmp_path, digits_onnx, landscape_file, "budget", n_trials=3)
    data = _study_file(tmp_path, digits_onnx, replay=str(landscape_file), n_trials=6) | {"study": "budget"}

    for constraints, given in (
        ({"latency_p99_ms": {"max": 2.2}}, "latency_p99_ms <= 2.2"),
        ({"latency_p99_ms": {"max": 14}, "throughput": {"min": 100}}, "latency_p99_ms <= 14, throughput >= 100"),
        ({}, "no constraints"),
    ):
        cfg = parse_config(data | {"constraints": constraints}, tmp_path)
        with pytest.raises(ConfigError, match=(
            rf"^constraints: the trials of study 'budget' were judged against latency_p99_ms <= 14, and this file "
            rf"gives {given}: use another study name \(search.warm_start: \{{from: \[budget\]\}} starts"
        )):
            StudyRunner(cfg, Store(cfg.storage))
    assert len(Store(cfg.storage).load_study("budget").trials) == len(first)  # nothing was asked of it
    assert len(_replay(tmp_path, digits_onnx, landscape_file, "budget", n_trials=4)) > len(first)  # 14.0 as 14


def test_a_study_whose_inputs_changed_since_is_not_continued(
    tmp_path: Path, digits_onnx: Path, landscape_file: Path
) -> None:
    given = {"name": "digits_forest", "path": str(digits_onnx), "inputs": [{"name": "float_input", "shape": [64]}]}
    data = _study_file(tmp_path, digits_onnx, replay=str(landscape_file), n_trials=3) | {"study": "shapes", "model": given}
    first = StudyRunner(cfg := parse_config(data, tmp_path), Store(cfg.storage)).run().stored.trials

    # the same shape written out with its batch dimension, and a type given: the same requests
    same = {**given, "inputs": [{"name": "float_input", "shape": [-1, 64], "dtype": "FP32"}]}
    cfg = parse_config(data | {"model": same, "search": {**data["search"], "n_trials": 4}}, tmp_path)
    assert len(StudyRunner(cfg, Store(cfg.storage)).run().stored.trials) > len(first)
    info = read_info(Store(cfg.storage).load_study("shapes"))
    info.check_inputs([{"name": "float_input", "shape": [64], "dtype": None}], "")  # as given first
    info.check_inputs([], "")  # the model's own shapes: only the model knows them
    ids = {"study_file": {"model": {"inputs": [{"name": "ids", "shape": [-1, 16], "dtype": "INT64"}]}}}
    for changed in ([{"name": "ids", "shape": [32]}], [{"name": "ids", "shape": [16], "dtype": "INT32"}]):
        with pytest.raises(ConfigError, match=r"^model.inputs: the trials of study 'shapes' measured requests of "
                                              r"ids \[16\], and this file gives ids \[(32|16)\]: use another"):
            dataclasses.replace(info, **ids).check_inputs(changed, "use another")


def test_a_study_whose_model_file_changed_since_is_not_continued(
    tmp_path: Path, digits_onnx: Path, landscape_file: Path
) -> None:
    import shutil

    import onnx

    model = shutil.copy(digits_onnx, tmp_path / "model.onnx")
    first = _replay(tmp_path, Path(model), landscape_file, "changed", n_trials=3)
    changed = onnx.load(model)
    changed.doc_string = "retrained"  # another model under the same name and path
    onnx.save(changed, model)
    data = _study_file(tmp_path, Path(model), replay=str(landscape_file), n_trials=6) | {"study": "changed"}
    cfg = parse_config(data, tmp_path)

    with pytest.raises(ConfigError, match=r"model: the model's files changed since the trials of study 'changed' "
                                          r"measured them \(SHA-256 [0-9a-f]{12}\.\.\., now [0-9a-f]{12}\.\.\.\): "
                                          r"its trials do not hold for these files; use another study name"):
        StudyRunner(cfg, Store(cfg.storage))
    assert len(Store(cfg.storage).load_study("changed").trials) == len(first)  # nothing was asked of it
    onnx.save(onnx.load(digits_onnx), model)  # the same model, written again: the same files
    assert len(_replay(tmp_path, Path(model), landscape_file, "changed", n_trials=4)) > len(first)


def test_a_study_deleted_while_it_runs_stops_its_run_with_an_error(
    tmp_path: Path, digits_onnx: Path, landscape_file: Path
) -> None:
    data = _study_file(tmp_path, digits_onnx, replay=str(landscape_file), n_trials=10) | {"study": "deleted"}
    cfg = parse_config(data, tmp_path)
    store = Store(cfg.storage)
    finished: list[int] = []

    def delete_after_two(event: Any) -> None:
        if event.kind == "finished":
            finished.append(event.number)
            if len(finished) == 2:
                Store(cfg.storage).delete_study("deleted")  # as DELETE /studies/deleted?force=true does

    runner = StudyRunner(cfg, store, on_event=delete_after_two)
    with pytest.raises(LeaseLostError, match="study 'deleted' was deleted while this run drove it"):
        runner.run()
    assert "deleted" not in store.study_names()
