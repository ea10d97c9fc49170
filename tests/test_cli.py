"""Bad input to `tuner optimize`: one line naming the field or cause, exit code 2, nothing started; and what
`tuner show` and `tuner export` say of a stored study with re-measured configs."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from rich.console import Console
from stored_studies import BATCH_OF_ONE, BATCHED, FAILED, PLAIN, Load, write_study
from typer.testing import CliRunner

from tuner.cli import _display as display
from tuner.cli import app
from tuner.cli._display import configs_table
from tuner.reports import study_config
from tuner.storage import Store, read_study
from tuner.study import RunSummary, config_results, default_result, pareto_front, recommend

TUNER = [sys.executable, "-m", "tuner.cli"]


def _write(folder: Path, onnx: Path, **changes: object) -> Path:
    data: dict = {
        "study": "bad",
        "model": {"name": "digits_forest", "path": str(onnx)},
        "search": {"n_trials": 1, "space": {"instance_count": {"low": 1, "high": 2}}},
    }
    data.update(changes)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _assert_refused(result: subprocess.CompletedProcess[str], folder: Path, *needles: str) -> None:
    assert result.returncode == 2, result.stderr + result.stdout
    message = result.stderr.strip()
    assert message.startswith("error: ")
    for needle in needles:
        assert needle in message
    assert not (folder / "tuner.db").exists(), "a study was started"
    assert not (folder / ".tuner").exists(), "a worker was started"


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        ({"search": {"sampler": "annealing"}}, ["search.sampler", "tpe"]),
        ({"search": {"space": {"instance_count": {"low": -1, "high": 2}}}}, ["search.space.instance_count"]),
        ({"search": {"space": {"max_batch_size": []}}}, ["search.space.max_batch_size"]),
        ({"objectives": [{"metric": "speed", "direction": "maximize"}]}, ["objectives.0.metric", "speed"]),
        ({"model": {"name": "m", "path": "missing.onnx"}}, ["model.path", "missing.onnx"]),
        ({"surprise": 1}, ["surprise: unknown field"]),
        ({"search": {"space": {"accelerator": ["none", "tensorrt"]}}}, ["search.space.accelerator", "GPU"]),
        # GPU workers as the file asks for them; this machine's ONNX Runtime is the OpenVINO build
        ({"workers": {"count": 1, "gpus_per_worker": 1}, "search": {"space": {"accelerator": ["cuda"]}}},
         ["search.space.accelerator: cuda needs CUDAExecutionProvider",
          "its providers: OpenVINOExecutionProvider, CPUExecutionProvider", "install the gpu extra"]),
        ({"search": {"sampler": "grid", "space": {"max_batch_size": {"low": 1, "high": 64, "log": True}}}},
         ["search.space.max_batch_size", "grid"]),
    ],
)
def test_invalid_fields(tmp_path: Path, digits_onnx: Path, changes: dict, needles: list[str], tuner_main) -> None:
    path = _write(tmp_path, digits_onnx, **changes)
    _assert_refused(tuner_main("optimize", path, cwd=tmp_path), tmp_path, *needles)


def test_malformed_yaml(tmp_path: Path, tuner_main) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("study: x\nmodel: {name: [unclosed\n")
    _assert_refused(tuner_main("optimize", path, cwd=tmp_path), tmp_path, "malformed YAML", "line")


def test_missing_study_file(tmp_path: Path, tuner_main) -> None:
    _assert_refused(tuner_main("optimize", tmp_path / "nope.yaml", cwd=tmp_path), tmp_path, "cannot read study file")


def test_port_already_taken(tmp_path: Path, digits_onnx: Path, tuner_main) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        path = _write(tmp_path, digits_onnx, server={"http_port": port, "grpc_port": port + 1, "metrics_port": port + 2})
        _assert_refused(tuner_main("optimize", path, cwd=tmp_path), tmp_path, "server.http_port", "already in use")


def test_a_transfer_from_an_unknown_study_is_refused_before_anything_starts(
    tmp_path: Path, digits_onnx: Path, tuner_main
) -> None:
    landscape = Path(__file__).resolve().parents[1] / "bench" / "landscapes" / "digits_forest.json"
    search = {"n_trials": 1, "space": {"instance_count": [1, 2]}, "warm_start": {"from": ["v1"]}}
    path = _write(tmp_path, digits_onnx, search=search)
    result = tuner_main("optimize", path, "--replay", landscape, cwd=tmp_path)
    _assert_refused(result, tmp_path, "search.warm_start.from", "no study database")


def test_unknown_study_in_show(tmp_path: Path, tuner_main) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = tuner_main("show", "nothing", "--storage", url)
    assert result.returncode == 2
    assert "no study database" in result.stderr and "name the study's storage with --storage" in result.stderr
    assert not (tmp_path / "x.db").exists()

    import optuna

    optuna.create_study(study_name="other", storage=url)
    result = tuner_main("show", "nothing", "--storage", url)
    assert result.returncode == 2
    assert "no study 'nothing'" in result.stderr and "other" in result.stderr


@pytest.mark.parametrize("args", [["show", "s", "--trial", "-1"], ["no-such-command"], ["show", "s", "--nope"]])
def test_usage_errors_exit_2_with_a_message_not_a_traceback(args: list[str]) -> None:
    """Through a process of its own, as a shell meets the command (the other refusals run in-process)."""
    result = subprocess.run([*TUNER, *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "Error:" in result.stderr and "Traceback" not in result.stderr


BOUNDS = {"latency_p99_ms": {"min": None, "max": 3.0}}
#: The default config; 2 instances batching measured three times (5200, 6400, 5868 infer/s: the median is
#: trial 5's, the best single load trial 4's); batching of one request over the p99 budget; a FAIL.
REMEASURED = [
    Load(PLAIN, default=True),
    Load(BATCHED, {"throughput": 5200.0}),
    Load(BATCH_OF_ONE, {"latency_p99_ms": 3.7}),
    Load(FAILED),
    Load(BATCHED, {"throughput": 6400.0}, remeasure_of=1),
    Load(BATCHED, remeasure_of=1),
]
MISSED = "infeasible: latency_p99_ms 3.7 > max 3 (+23%)"


@pytest.fixture
def remeasured(tmp_path: Path, digits_onnx: Path) -> str:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    store = Store(url)
    write_study(store, "remeasured", REMEASURED, BOUNDS, onnx=digits_onnx)
    store.close()
    return url


def _tuner(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A `tuner` command run in this process through typer's runner (main()'s exit codes: ``tuner_main``)."""
    del cwd  # every path is given in full
    result = CliRunner().invoke(app, [str(a) for a in args])
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def _column(rendered: str, index: int) -> str:
    """The text of one column of a rendered rich table, its wrapped lines joined, without spaces."""
    cells = [line.split("│")[index] for line in rendered.splitlines() if line.count("│") > index]
    return "".join("".join(cells).split())


def _trials(rendered: str) -> list[str]:
    """The trial numbers of a rendered table's rows (a row's wrapped lines have none)."""
    return [line.split("│")[1].strip() for line in rendered.splitlines()
            if line.startswith("│") and line.split("│")[1].strip()]


def test_show_lists_configs_by_their_medians_and_the_recommendation(remeasured: str, tmp_path: Path) -> None:
    result = _tuner("show", "remeasured", "--storage", remeasured, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _trials(result.stdout) == ["0", "5", "2", "3"]  # 3 configs, then the FAIL
    assert "3 (5200-6400, spread 20%)" in result.stdout and "5868" in result.stdout and "6400 │" not in result.stdout
    assert "recommended: trial 5" in result.stdout
    assert "the best feasible median throughput 5868 over 3 loads" in result.stdout
    assert "".join(MISSED.split()) in _column(result.stdout, 9)
    one = _tuner("show", "remeasured", "--storage", remeasured, "--trial", 2, cwd=tmp_path)
    assert MISSED in one.stdout
    again = _tuner("show", "remeasured", "--storage", remeasured, "--trial", 4, cwd=tmp_path)
    assert "one load of the config that trial 5 stands for" in again.stdout
    assert "a fresh load of trial 1's config, measured again to confirm it" in again.stdout
    assert "a fresh load" not in one.stdout
    assert "tuner verify" not in result.stdout.split("recommended:")[1]  # none yet

    from tuner.reports import record
    from tuner.reports._verify import Verification, VerifyRun

    study = Store(remeasured).load_study("remeasured")
    runs = tuple(VerifyRun(v, 2.5, v, contaminated=True) for v in (3100.0, 3150.0, 3000.0))
    record(study, Verification(when="2026-12-07T18:00:00+00:00", trial=5, config_key="k", metric="throughput",
                               maximize=True, repeats=3, concurrency=8, runs=runs, verified_median=3100.0,
                               stored_median=5868.0, interval=(5200.0, 6400.0), holds=False))
    shown = " ".join(_tuner("show", "remeasured", "--storage", remeasured, cwd=tmp_path).stdout.split())
    assert ("verified with `tuner verify` (1 of 1, latest last): 2026-12-07T18:00:00+00:00 trial 5: inconclusive: "
            "3100 infer/s verified (3 runs, 3000-3150)") in shown
    assert "3 of 3 runs shared the CPU with other processes" in shown


def test_show_says_when_a_trials_server_was_restarted(remeasured: str, tmp_path: Path, digits_onnx: Path) -> None:
    from tuner.storage import ATTR_SERVER_RESTARTED

    died = "tritonserver died during the trial: killed by SIGKILL"
    loads = [dataclasses.replace(load, attrs={ATTR_SERVER_RESTARTED: died}) if i == 2 else load
             for i, load in enumerate(REMEASURED)]
    store = Store(remeasured)
    write_study(store, "restarted", loads, BOUNDS, onnx=digits_onnx)
    store.close()

    shown = _tuner("show", "restarted", "--storage", remeasured, "--trial", 2, cwd=tmp_path).stdout
    as_json = json.loads(_tuner("show", "restarted", "--storage", remeasured, "--json", cwd=tmp_path).stdout)

    assert f"its server was restarted while it ran ({died}); the config was measured again" in " ".join(shown.split())
    assert [t["server_restarted"] for t in as_json["trials"]] == [None, None, died, None, None, None]


def test_show_of_a_failed_trial_says_why_once_and_first(remeasured: str, tmp_path: Path) -> None:
    result = _tuner("show", "remeasured", "--storage", remeasured, "--trial", 3, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("trial 3 FAIL") and lines[1].startswith("Failed: int8 variant: no INT8 variant")
    assert result.stdout.count("no INT8 variant") == 1 and "What the numbers say" not in result.stdout


def _remeasured_results(remeasured: str) -> tuple[Any, Any, list[Any]]:
    """The ``remeasured`` study, as read back, and its configs' results."""
    store = Store(remeasured)
    study = store.load_study("remeasured")
    stored = read_study(study, store)
    store.close()
    return study, stored, config_results(stored.trials, stored.info)


def test_the_summary_after_a_run_lists_the_front_of_configs(remeasured: str) -> None:
    study, stored, results = _remeasured_results(remeasured)
    summary = RunSummary(study, stored, results, pareto_front(results, stored.info.directions),
                           recommend(results, stored.info), default_result(results))
    with display.console.capture() as captured:
        display.print_summary(summary, study_config(stored.info))
    out = captured.get()
    assert _trials(out) == ["0", "5"]
    assert "3 (5200-6400, spread 20%)" in out and "6400 │" not in out
    assert "recommended: trial 5" in out and "over 3 loads" in out and "vs the default config (trial 0" in out
    assert "measured on one load" not in out


def test_a_recommendation_measured_on_one_load_says_to_verify_it(tmp_path: Path, digits_onnx: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    store = Store(url)
    write_study(store, "once", [Load(PLAIN, default=True), Load(BATCHED)], BOUNDS, onnx=digits_onnx)
    store.close()

    result = _tuner("show", "once", "--storage", url, cwd=tmp_path)

    assert "recommended: trial 1" in result.stdout and "over 1 load " in result.stdout
    assert "measured on one load: a fresh load can differ by more than its windows did; `tuner verify` measures it" in result.stdout

    from tuner.reports import record
    from tuner.reports._verify import Verification, VerifyRun

    store = Store(url)
    study = store.load_study("once")
    stored = read_study(study, store)
    rec = recommend(config_results(stored.trials, stored.info), stored.info)
    assert rec is not None
    record(study, Verification(when="2026-12-07T18:00:00+00:00", trial=rec.number, config_key=rec.config.key,
                               metric="throughput", maximize=True, repeats=1, concurrency=8,
                               runs=(VerifyRun(1.0, 1.0, 1.0),), verified_median=1.0, stored_median=1.0,
                               interval=(1.0, 1.0), holds=True))
    again = _tuner("show", "once", "--storage", url, cwd=tmp_path)
    assert "measured on one load" not in again.stdout and "trial 1: holds: " in again.stdout  # it was, since


def test_the_gain_over_the_default_config_names_both_concurrencies_where_they_differ(tmp_path: Path,
                                                                                    digits_onnx: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    store = Store(url)
    write_study(store, "apart", [Load(PLAIN, {"concurrency": 4}, default=True), Load(BATCHED)], BOUNDS, onnx=digits_onnx)
    write_study(store, "same", [Load(PLAIN, {"concurrency": 8}, default=True), Load(BATCHED)], BOUNDS, onnx=digits_onnx)
    store.close()

    apart = " ".join(_tuner("show", "apart", "--storage", url, cwd=tmp_path).stdout.split())
    same = " ".join(_tuner("show", "same", "--storage", url, cwd=tmp_path).stdout.split())

    assert "vs the default config (trial 0, judged at concurrency 4; this one at 8): throughput x" in apart
    assert "vs the default config (trial 0): throughput x" in same


def _params(rendered: str) -> dict[str, str]:
    """The params column of a rendered table, its wrapped lines joined without spaces, by trial number."""
    cells: dict[str, str] = {}
    trial = ""
    for line in rendered.splitlines():
        if line.startswith("│"):
            trial = line.split("│")[1].strip() or trial
            cells[trial] = cells.get(trial, "") + "".join(line.split("│")[2].split())
    return cells


def test_configs_judged_at_different_concurrencies_say_at_which(remeasured: str, tmp_path: Path,
                                                               digits_onnx: Path) -> None:
    result = _tuner("show", "remeasured", "--storage", remeasured, cwd=tmp_path)
    # the default config was judged at 1 request in flight, the batching ones at 8 and 4
    params = _params(result.stdout)
    assert params["0"].endswith("precision=fp32(atconcurrency1)")
    assert params["5"].endswith("(atconcurrency8)") and params["2"].endswith("(atconcurrency4)")
    assert "recommended: trial 5 mbs=8 batching=on delay_us=1000 instances=2 precision=fp32 at concurrency 8" in (
        " ".join(result.stdout.split()))

    url = f"sqlite:///{tmp_path / 'same.db'}"
    store = Store(url)
    write_study(store, "same", [Load(PLAIN, {"concurrency": 8}, default=True), Load(BATCHED)], BOUNDS, onnx=digits_onnx)
    store.close()
    same = _tuner("show", "same", "--storage", url, cwd=tmp_path)
    assert "(at concurrency" not in same.stdout, "one concurrency for every config: nothing to tell apart"
    assert "at concurrency 8" in same.stdout  # the recommendation still says the load it was read under


def test_the_summary_shows_a_recommended_config_off_the_front_beside_it(remeasured: str) -> None:
    # the recommendation may tie with a front config and be the cheaper one, off the front itself
    study, stored, results = _remeasured_results(remeasured)
    rec = recommend(results, stored.info)
    assert rec is not None
    front = [r for r in pareto_front(results, stored.info.directions) if r.key != rec.config.key]
    with display.console.capture() as captured:
        display.print_summary(RunSummary(study, stored, results, front, rec, default_result(results)),
                              study_config(stored.info))
    out = captured.get()

    assert "and the recommended config" in " ".join(out.split())
    assert _trials(out) == ["0", "5"]
    assert "recommended: trial 5" in out


def test_the_summary_of_an_interrupted_run_counts_the_trial_in_flight_apart_from_failures(remeasured: str) -> None:
    import optuna

    from tuner.storage import ATTR_INTERRUPTED

    store = Store(remeasured)
    stored = read_study(store.load_study("remeasured"), store)
    store.close()
    # Ctrl-C during the first trial: it is stored FAIL as interrupted, the warm-start configs still wait
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={ATTR_INTERRUPTED: True}))
    for batch in (1, 8):
        study.enqueue_trial({"max_batch_size": batch})
    with display.console.capture() as captured:
        display.print_summary(RunSummary(study, stored, interrupted=True), study_config(stored.info))
    out = " ".join(captured.get().split())

    assert "3 trials: 0 complete, 0 failed, 1 interrupted (not counted against n_trials), 2 waiting" in out
    assert "no feasible config measured yet" in out and "loosen" not in out


def test_a_study_whose_every_trial_failed_is_not_said_to_need_looser_constraints(remeasured: str, tmp_path: Path) -> None:
    import optuna

    store = Store(remeasured)
    stored = read_study(store.load_study("remeasured"), store)
    store.close()
    study = optuna.create_study(directions=["maximize", "minimize"])
    for _ in range(2):  # a model every config of which fails, say on its warm-up
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    with display.console.capture() as captured:
        display.print_summary(RunSummary(study, stored), study_config(stored.info))
    out = " ".join(captured.get().split())

    assert "2 trials: 0 complete, 2 failed" in out
    assert "no config could be measured: every trial failed" in out
    assert "loosen" not in out and "each constraint held" not in out

    with display.console.capture() as captured:  # `tuner show` of such a study, and of one with nothing finished yet
        display.print_recommendation(None, None, ["throughput"], [optuna.trial.TrialState.FAIL])
        display.print_recommendation(None, None, ["throughput"], [optuna.trial.TrialState.RUNNING])
        display.print_recommendation(None, None, ["throughput"], [optuna.trial.TrialState.PRUNED])
    said = captured.get().splitlines()
    assert said[0].startswith("no config could be measured") and said[1] == "no config has been measured yet"
    assert "loosen the constraints" in said[2], "configs stopped after their screen were measured, over a bound"


def test_the_note_names_the_failed_constraint_and_wraps_rather_than_being_cut(remeasured: str) -> None:
    store = Store(remeasured)
    stored = read_study(store.load_study("remeasured"), store)
    store.close()
    results = config_results(stored.trials, stored.info)
    console = Console(width=120, record=True)
    console.print(configs_table("configs", results, recommend(results, stored.info), stored.info.bounds))
    rendered = console.export_text()
    assert "…" not in rendered
    assert "".join(MISSED.split()) in _column(rendered, 9)


def test_show_json_has_configs_and_the_recommendation(remeasured: str, tmp_path: Path) -> None:
    result = _tuner("show", "remeasured", "--storage", remeasured, "--json", cwd=tmp_path)
    document = json.loads(result.stdout)
    assert document["recommended_trial"] == 5 and document["pareto_front"] == [0, 5]
    assert document["recommendation"]["trial"] == 5 and "median" in document["recommendation"]["reason"]
    configs = {c["trial"]: c for c in document["configs"]}
    assert configs[5]["loads"] == [1, 4, 5] and configs[5]["interval"] == [5200.0, 6400.0]
    assert configs[2]["failed_constraints"] == [MISSED.removeprefix("infeasible: ")]
    assert [t["config"] for t in document["trials"]] == [0, 5, 2, None, 5, 5]
    assert document["trials"][3]["explanations"][0]["rule"] == "failed"
    assert document["verifications"] == []

    from tuner.storage import ATTR_VERIFICATIONS

    store = Store(remeasured)
    store.load_study("remeasured").set_user_attr(ATTR_VERIFICATIONS, [{"trial": 5, "verdict": "holds"}])
    store.close()
    again = json.loads(_tuner("show", "remeasured", "--storage", remeasured, "--json", cwd=tmp_path).stdout)
    assert again["verifications"] == [{"trial": 5, "verdict": "holds"}]


def test_export_writes_the_recommended_configs_representative_load(remeasured: str, tmp_path: Path) -> None:
    result = _tuner("export", "remeasured", tmp_path / "deploy", "--storage", remeasured, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "exported trial 5 " in result.stdout and "5868 infer/s" in result.stdout
    assert "median" not in result.stdout, "trial 5 is the load at the median"
    readme = (tmp_path / "deploy" / "README.md").read_text()
    assert "trial 5 of study remeasured" in readme
    assert "measured 3 times (trials 1, 4, 5)" in readme and "Recommended: trial 5" in readme
    assert "the load nearest the median is this one" in readme
    lucky = _tuner("export", "remeasured", tmp_path / "lucky", "--trial", 4, "--storage", remeasured, cwd=tmp_path)
    assert lucky.returncode == 0, lucky.stderr
    assert "6400 infer/s" in lucky.stdout and "(this load; the config's median over 3 loads: 5868 infer/s)" in lucky.stdout
    readme = (tmp_path / "lucky" / "README.md").read_text()
    assert "trial 4 of study remeasured" in readme and "6400 infer/s" in readme
    assert "the load nearest the median is trial 5" in readme and "Recommended:" not in readme
    assert "infeasible" not in lucky.stdout
    missed = _tuner("export", "remeasured", tmp_path / "missed", "--trial", 2, "--storage", remeasured, cwd=tmp_path)
    assert missed.returncode == 0 and "infeasible under the study's constraints, as its README says" in missed.stdout


def test_export_writes_the_studys_own_samples_that_its_command_sends(remeasured: str, tmp_path: Path) -> None:
    import numpy as np

    from tuner.storage import ATTR_STUDY_FILE

    samples = np.random.default_rng(0).random((5, 64), dtype=np.float32)
    np.savez(tmp_path / "samples.npz", float_input=samples)
    store = Store(remeasured)
    study = store.load_study("remeasured")
    study_file = study.user_attrs[ATTR_STUDY_FILE]
    study.set_user_attr(ATTR_STUDY_FILE, study_file | {"load": {"input_data": str(tmp_path / "samples.npz")}})
    store.close()

    result = _tuner("export", "remeasured", tmp_path / "deploy", "--storage", remeasured, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    sent = json.loads((tmp_path / "deploy" / "samples.json").read_text())["data"]
    assert len(sent) == 5 and sent[0]["float_input"]["shape"] == [64]
    readme = (tmp_path / "deploy" / "README.md").read_text()
    assert "--input-data samples.json" in readme and "tuner verify remeasured --trial 5" in readme


def test_export_refuses_a_model_whose_files_changed_since_the_study_measured_it(
    remeasured: str, tmp_path: Path, tuner_main
) -> None:
    from tuner.storage import ATTR_MODEL_DIGEST

    store = Store(remeasured)
    store.load_study("remeasured").set_user_attr(ATTR_MODEL_DIGEST, "0" * 64)  # measured on other files
    store.close()

    result = tuner_main("export", "remeasured", tmp_path / "deploy", "--storage", remeasured, cwd=tmp_path)

    assert result.returncode == 2
    assert "the model's files changed since the trials of study 'remeasured' measured them" in result.stderr
    assert not (tmp_path / "deploy").exists()


def test_a_reason_of_many_lines_is_one_line_of_its_start_and_its_cause() -> None:
    # a python-backend load error as Triton returns it: the message, C++ frames, blank lines, a traceback
    reason = (
        "Triton refused the config (openvino, fp32): load failed for model 'm': version 1 is at UNAVAILABLE "
        "state: Internal: Fail: [ONNXRuntimeError] : 1 : FAIL : Exception during initialization: "
        + "/onnxruntime/core/providers/openvino/backends/basic_backend.cc:136 onnxruntime::openvino_ep " * 3
        + "\nException from src/inference/src/dev/plugin.cpp:53:\n"
        "Unexpected: CPU plug-in doesn't support Parameter operation with dynamic rank.\n\n\n"
        "At:\n  /site-packages/onnxruntime/capi/onnxruntime_inference_collection.py(610): _create_inference_session\n;"
    )

    line = display.brief(reason, "mine", 6)

    assert "\n" not in line and len(line) < 340
    assert line.startswith("Triton refused the config (openvino, fp32): load failed for model 'm'")
    assert line.endswith(
        " ... Unexpected: CPU plug-in doesn't support Parameter operation with dynamic rank. "
        "(all of it: tuner show mine --trial 6)"
    )
    assert display.brief("perf_analyzer failed: [x]", "mine", 6) == "perf_analyzer failed: [x]"
    # one long line before the traceback: its start and its end, where the cause is
    one = ("load failed for model 'm': " + "RuntimeException: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION " * 6
           + "cannot get file size: No such file or directory [/repo/m/1/m.data]\n\nAt:\n  model.py(72): initialize\n;")
    line = display.brief(one, "mine", 2)
    assert line.startswith("load failed for model 'm': RuntimeException") and len(line) < 340
    assert " ... " in line and line.endswith(
        "cannot get file size: No such file or directory [/repo/m/1/m.data] (all of it: tuner show mine --trial 2)")


def test_the_progress_prints_an_errors_brackets_as_they_are() -> None:
    # an error's own text, such as a path in brackets, is not rich markup: "[/tmp/...]" would close no tag
    import optuna
    from optuna.distributions import IntDistribution
    from rich.progress import Progress, TextColumn

    from tuner.pool import WorkerStatus
    from tuner.storage import ATTR_FAIL_REASON

    reason = "load failed: [/tmp/model.onnx] missing [bold]"
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, params={"instance_count": 2},
        distributions={"instance_count": IntDistribution(1, 4)}, user_attrs={ATTR_FAIL_REASON: reason},
    )  # fmt: skip
    out = Console(width=200, force_terminal=False)
    with out.capture() as captured:
        out.print(display.result_text(trial, None))  # type: ignore[arg-type]
    assert captured.get().strip() == f"FAIL {reason}"

    progress = Progress(TextColumn("{task.description}"), console=out)
    screen = display.StudyDisplay(progress, progress.add_task("", total=1, best=""), None)  # type: ignore[arg-type]
    screen.runner_pool = SimpleNamespace(status=[WorkerStatus(index=0, node="local", cores=(0, 1), ticket=3)])  # type: ignore[assignment]
    screen.params[3] = {"instance_count": 2}
    screen._show_workers()
    with out.capture() as captured:
        out.print(progress.get_renderable())
    assert "worker 0 [local cores 0,1] trial 3: instances=2" in captured.get()
    screen.forget_workers()  # as the study's run ends: its last frame has no worker lines
    with out.capture() as captured:
        out.print(progress.get_renderable())
    assert "worker 0" not in captured.get()


@pytest.mark.parametrize(("concurrency", "says"), [("auto", True), ([4, 8], True), ([8], False)])
def test_a_trials_line_says_its_concurrency_where_the_study_measures_several(
    remeasured: str, concurrency: object, says: bool
) -> None:
    study, stored, _ = _remeasured_results(remeasured)
    cfg = study_config(stored.info)
    cfg = cfg.model_copy(update={"load": cfg.load.model_copy(update={"concurrency": concurrency})})
    trial = study.trials[5]  # judged at 8 requests in flight

    line = display.result_text(trial, cfg)

    assert line.startswith("throughput 5868, latency_p99_ms 2.809")
    assert ("at concurrency 8" in line) is says


@pytest.mark.parametrize(
    ("command", "needle"),
    [(["show"], "(default: $TUNER_STORAGE or sqlite:///tuner.db)"), (["compare"], "(default: --storage)"),
     (["export"], "(by default the recommended one)"), (["models", "prepare"], "minilm needs the transformer extra")],
)  # fmt: skip
def test_help_shows_every_default_it_names(command: list[str], needle: str) -> None:
    # rich reads "[default: ...]" in a help text as a markup tag and drops it
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=300)
    assert result.exit_code == 0
    assert needle in " ".join(result.output.replace("│", " ").split())


def test_one_trial_in_full_prints_the_models_output_names_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Console(width=200, force_terminal=False)
    monkeypatch.setattr(display, "console", out)
    trial = {
        "number": 3, "state": "COMPLETE", "params": {"instance_count": 2}, "fail_reason": None, "points": [],
        "accuracy": {"samples": 8, "accuracy_drop": 0.0, "outputs": {"logits[/0]": {"top1_agreement": 1.0}}},
        "config_pbtxt": "",
    }  # fmt: skip
    with out.capture() as captured:
        display.print_trial(trial)
    assert "logits[/0]: top1_agreement 1" in captured.get()


def test_a_study_other_tools_named_is_listed_shown_and_compared_by_its_name(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(study_name="odd[/name]", storage=url)  # a name the tuner would refuse, made elsewhere
    for command in (["studies"], ["show", "odd[/name]"], ["compare", "odd[/name]", "odd[/name]"]):
        result = CliRunner().invoke(app, [*command, "--storage", url], terminal_width=200)
        assert result.exit_code == 0, (command, result.output)
        assert "odd[/name]" in result.output, command


def test_studies_counts_interrupted_and_waiting_trials_apart_from_failed_ones(tmp_path: Path) -> None:
    import optuna

    from tuner.storage import ATTR_INTERRUPTED

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    fail = optuna.trial.TrialState.FAIL
    study.add_trial(optuna.trial.create_trial(state=fail, user_attrs={ATTR_INTERRUPTED: True}))
    study.add_trial(optuna.trial.create_trial(state=fail))
    study.add_trial(optuna.trial.create_trial(value=1.0))
    study.enqueue_trial({})  # queued after SIGTERM: it runs when the study is run again

    result = _tuner("studies", "--storage", url, cwd=tmp_path)

    row = next(line for line in result.stdout.splitlines() if line.startswith("│ s "))
    assert [cell.strip() for cell in row.split("│")[1:9]] == ["s", "4", "1", "1", "0", "1", "0", "1"]
    assert "interrupted" in result.stdout and "waiting" in result.stdout


def test_a_second_driver_is_refused_before_it_prepares_anything(
    tmp_path: Path, digits_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a driver holds the study's lease, a second `tuner optimize` exits 2 before its preflight (the model
    read, the space planned, the server's binary found), whose seconds of CPU would come out of the first's
    measurements on the same cores."""
    import factories

    from tuner.cli import _study_commands
    from tuner.errors import StudyLockedError
    from tuner.storage import StudyLease

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(factories.digits_study("held", str(digits_onnx), storage=url)))
    monkeypatch.setattr(_study_commands, "_preflight", lambda cfg: pytest.fail("the refused driver prepared a run"))
    store = Store(url)
    try:
        with StudyLease(store, "held"):
            result = CliRunner().invoke(app, ["optimize", str(path)])
    finally:
        store.close()
    # main() turns the error into its line and exit code 2 (test_driver.py runs it so)
    assert isinstance(result.exception, StudyLockedError), result.output
    assert "study 'held' is being run by another tuner: pid" in str(result.exception)
