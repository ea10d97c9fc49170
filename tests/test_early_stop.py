"""Stopping clearly hopeless trials after their screen: the rule, the study file, and the study loop.

The study loop, the samplers and SQLite are the real ones; the workers are the scripted pool, whose
screen judges the scripted point as a worker's screen judges its screening windows.
tests/integration/test_early_stop_live.py stops a trial on a real server.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from factories import instances_study
from optuna.trial import TrialState
from scripted import Script, ScriptedPool, ScriptedRunner
from typer.testing import CliRunner

from tuner.cli import app
from tuner.cli._display import result_text
from tuner.config import SpaceSettings, StudyConfig, parse_config
from tuner.errors import ConfigError
from tuner.reports import gather
from tuner.samplers import SearchSpace
from tuner.samplers._bo import ConfigBOSampler, _finished
from tuner.storage import Store, read_study
from tuner.study import recording_config
from tuner.study._results import choose_point
from tuner.study._screen import screen_for
from tuner.trial import LoadPoint, Screen


def _point(throughput: float = 100.0, p99: float = 10.0, concurrency: int = 8) -> LoadPoint:
    return LoadPoint(concurrency, throughput, p99, p99, p99, p99, p99)


def test_a_latency_far_over_its_budget_is_hopeless() -> None:
    screen = Screen(concurrency=1, latency_metric="latency_p99_ms", latency_budget=150.0)

    assert screen.verdict(_point(p99=412.0)) == "p99 412 ms in the screening window, 2.7x the 150 ms budget"
    assert screen.verdict(_point(p99=290.0)) is None, "over budget, but not twice over: measured in full"


def test_a_throughput_far_under_the_best_so_far_is_hopeless() -> None:
    screen = Screen(concurrency=8, incumbent=1030.0)

    assert screen.verdict(_point(throughput=412.0)) == (
        "412 infer/s in the screening window, 0.4x the best so far at concurrency 8 (1,030)"
    )
    assert screen.verdict(_point(throughput=520.0)) is None


def test_a_screen_other_processes_disturbed_stops_nothing() -> None:
    screen = Screen(concurrency=8, latency_metric="latency_p99_ms", latency_budget=1.0, incumbent=1000.0)
    disturbed = dataclasses.replace(_point(throughput=1.0, p99=100.0), contaminated=True)

    assert screen.verdict(disturbed) is None
    assert screen.verdict(dataclasses.replace(disturbed, contaminated=False)) is not None


def test_a_variant_checked_over_its_accuracy_bound_is_hopeless_whatever_its_point() -> None:
    screen = Screen(concurrency=8, accuracy_bound=0.05)
    disturbed = dataclasses.replace(_point(), contaminated=True)

    assert screen.verdict(_point(), accuracy_drop=0.151) == (
        "accuracy drop 0.151 over the 0.05 bound: the variant's answers, whatever the load"
    )
    assert screen.verdict(disturbed, accuracy_drop=0.151) is not None, "the answers do not depend on the load"
    assert screen.verdict(_point(), accuracy_drop=0.05) is None, "at the bound: feasible"
    assert screen.verdict(_point(), accuracy_drop=None) is None, "not checked: nothing to judge"
    assert Screen(concurrency=8).verdict(_point(), accuracy_drop=0.9) is None, "no bound: nothing to judge"
    assert not screen.judges, "the accuracy alone asks for no screening measurement"
    assert screen.inaccurate(0.151) and not screen.inaccurate(0.01)


def test_the_factor_and_share_are_the_study_files() -> None:
    strict = Screen(concurrency=1, latency_metric="latency_avg_ms", latency_budget=1.0, latency_factor=1.5,
                    incumbent=100.0, throughput_share=0.8)

    assert strict.verdict(_point(throughput=100.0, p99=1.6)) is not None
    assert "mean latency 1.6 ms" in (strict.verdict(_point(throughput=100.0, p99=1.6)) or "")
    assert strict.verdict(_point(throughput=79.0, p99=1.0)) is not None
    assert strict.verdict(_point(throughput=81.0, p99=1.0)) is None


def _cfg(tmp_path: Path, digits_onnx: Path, **sections: Any) -> StudyConfig:
    data = instances_study("screened", f"sqlite:///{tmp_path / 'screened.db'}", str(digits_onnx),
                           sampler="bo", n_trials=10, n_startup_trials=2)
    data["load"]["remeasure"] = {"loads": 0}
    for name, value in sections.items():
        data[name] = data[name] | value if isinstance(data.get(name), dict) else value
    return parse_config(data, tmp_path)


def test_early_stop_is_validated_with_its_field_path(tmp_path: Path, digits_onnx: Path) -> None:
    with pytest.raises(ConfigError, match=r"load\.early_stop\.latency_factor"):
        _cfg(tmp_path, digits_onnx, load={"early_stop": {"latency_factor": 1.0}})
    with pytest.raises(ConfigError, match=r"load\.early_stop\.throughput_share"):
        _cfg(tmp_path, digits_onnx, load={"early_stop": {"throughput_share": 1.0}})
    with pytest.raises(ConfigError, match=r"load\.early_stop\.enable: unknown field"):
        _cfg(tmp_path, digits_onnx, load={"early_stop": {"enable": False}})


def test_a_screen_goes_only_where_it_has_something_to_judge(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx)
    assert screen_for(cfg, None) is None, "no budget, no incumbent: nothing to judge"
    assert screen_for(cfg, 100.0) == Screen(concurrency=8, incumbent=100.0)

    budget = _cfg(tmp_path, digits_onnx, constraints={"latency_p99_ms": {"max": 50}})
    screen = screen_for(budget, None)
    assert screen is not None and (screen.latency_metric, screen.latency_budget) == ("latency_p99_ms", 50)

    off = _cfg(tmp_path, digits_onnx, load={"early_stop": {"enabled": False}},
               constraints={"latency_p99_ms": {"max": 50}})
    assert screen_for(off, 100.0) is None

    # the first of [16, 2] is not the lowest: its latency says nothing of the trial's at 2
    descending = _cfg(tmp_path, digits_onnx, load={"concurrency": [16, 2]}, constraints={"latency_p99_ms": {"max": 50}})
    assert screen_for(descending, None) is None

    # under the concurrency search, the first throughput is no trial's last word
    search = _cfg(tmp_path, digits_onnx, load={"concurrency": "auto"}, constraints={"latency_p99_ms": {"max": 50}})
    assert screen_for(search, 100.0) == Screen(concurrency=1, latency_metric="latency_p99_ms", latency_budget=50)
    ascending = _cfg(tmp_path, digits_onnx, load={"concurrency": [2, 16]})
    assert screen_for(ascending, 100.0) is None

    latency_first = _cfg(tmp_path, digits_onnx, objectives=[{"metric": "latency_p99_ms", "direction": "minimize"}])
    assert screen_for(latency_first, 100.0) is None, "throughput is no objective: not judged by it"

    accuracy = _cfg(tmp_path, digits_onnx, load={"concurrency": [2, 16]}, constraints={"accuracy_drop": {"max": 0.05}})
    assert screen_for(accuracy, None) == Screen(concurrency=2, accuracy_bound=0.05), "a variant's answers are judged"


#: Instance counts 2 and 4 reach under half the best throughput; p99 is 1000 / throughput.
SCRIPT: Script = {1: (100.0, 1.0), 2: (40.0, 1.0), 3: (110.0, 1.0), 4: (45.0, 1.0)}


def test_hopeless_configs_come_back_pruned_and_are_never_proposed_again(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx)
    pool = ScriptedPool(SCRIPT)

    summary = ScriptedRunner(cfg, pool).run()

    submitted = [s.instance_count for s in pool.submitted]
    assert sorted(submitted) == [1, 2, 3, 4], "each config measured once; the sampler ran out"
    assert summary.stopped == "every config of the space was measured"
    trials = {t.params["instance_count"]: t for t in summary.stored.trials}
    pruned = {n for n, t in trials.items() if t.state == TrialState.PRUNED}
    assert pruned == {n for n in (2, 4) if submitted.index(n) > min(submitted.index(1), submitted.index(3))}
    assert pruned, "the script reaches a config far below one already measured"
    for n in pruned:
        trial = trials[n]
        assert trial.pruned_reason is not None and trial.reason == trial.pruned_reason
        assert "infer/s in the screening window" in trial.pruned_reason
        assert trial.metrics["throughput"] == SCRIPT[n][0], "the screen's point is kept"
        assert trial.record is not None and [p.throughput for p in trial.record.points] == [SCRIPT[n][0]]
        assert trial.counted, "a pruned trial counts against the budget"
    assert summary.recommendation is not None and summary.recommendation.config.params["instance_count"] == 3
    assert all(r.params["instance_count"] not in pruned for r in summary.results + summary.pareto)
    shown = result_text(summary.study.trials[trials[min(pruned)].number], cfg)
    assert shown.startswith("[yellow]PRUNED[/] ") and "FAIL" not in shown, "the progress line tells it from a failure"
    # the bo sampler learns from them as from trials that ran
    learned = {t.number for t in _finished(summary.study)}
    assert {trials[n].number for n in pruned} <= learned


def test_a_pruned_config_is_not_measured_again(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, constraints={"latency_p99_ms": {"max": 10}})
    pool = ScriptedPool(SCRIPT)
    ScriptedRunner(cfg, pool).run()
    study = Store(cfg.storage).load_study(cfg.study)
    first = next(t for t in study.trials if t.state == TrialState.PRUNED)
    study.enqueue_trial(first.params, skip_if_exists=False)

    again = ScriptedPool(SCRIPT)
    summary = ScriptedRunner(cfg, again).run(n_trials=len(study.trials) + 1)

    assert again.submitted == [], "told from the pruned trial, not measured"
    last = read_study(summary.study).trials[-1]
    assert last.state == TrialState.PRUNED and last.reused_from == first.number
    assert last.pruned_reason == first.user_attrs["pruned_reason"]
    copied = summary.stored.trials[-1].record
    assert copied is not None and len(copied.points) == 1, "the screen's point, copied with the verdict"
    # p99 = 1000 / throughput: 25 ms against a 10 ms budget
    assert "ms in the screening window" in (last.pruned_reason or "") and "the 10 ms budget" in (last.pruned_reason or "")

    shown = CliRunner().invoke(app, ["show", cfg.study, "--storage", cfg.storage], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.stdout
    assert "trials not measured in full" in shown.stdout and f"PRUNED │ instances={last.params['instance_count']}" in shown.stdout
    assert last.pruned_reason in shown.stdout, "the reason in full"
    listed = CliRunner().invoke(app, ["studies", "--storage", cfg.storage], env={"COLUMNS": "200"})
    assert "pruned" in listed.stdout

    from tuner.reports._html import render  # plotly: loaded only by the test that renders

    page = render(gather(summary.study, Store(cfg.storage), importances=False))
    assert f"{sum(t.state == TrialState.PRUNED for t in summary.study.trials)} pruned" in page
    assert f"<tr class='pruned' id='trial-{last.number}'>" in page
    assert "Stopped after its screening measurement: p99 " in page


def test_a_landscape_records_every_config_in_full(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, constraints={"latency_p99_ms": {"max": 10}})

    assert screen_for(recording_config(cfg), 100.0) is None


def test_with_early_stop_off_every_config_is_measured_in_full(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, load={"early_stop": {"enabled": False}})
    pool = ScriptedPool(SCRIPT)

    summary = ScriptedRunner(cfg, pool).run()

    assert pool.screens == [None] * 4
    assert all(t.state == TrialState.COMPLETE for t in summary.stored.trials)


def test_with_one_objective_a_pruned_trial_reports_its_screen_value(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, objectives=[{"metric": "throughput", "direction": "maximize"}])
    pool = ScriptedPool(SCRIPT)

    summary = ScriptedRunner(cfg, pool).run()

    pruned = [t for t in summary.study.trials if t.state == TrialState.PRUNED]
    assert pruned, "the script reaches a config far below one already measured"
    for trial in pruned:
        # what Optuna's samplers (TPE) learn from a PRUNED trial, and bo takes as its value
        assert trial.intermediate_values == {8: SCRIPT[trial.params["instance_count"]][0]}
    assert sorted(s.instance_count for s in pool.submitted) == [1, 2, 3, 4]


def test_bo_reads_a_pruned_config_as_infeasible_and_poor() -> None:
    space = SearchSpace(SpaceSettings.model_validate({"instance_count": {"low": 1, "high": 12},
                                                      "max_batch_size": 1, "dynamic_batching": False}), 2)
    sampler = ConfigBOSampler(space, seed=0, n_startup_trials=1)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def tell(instances: int, throughput: float, p99_excess: float, pruned: bool = False) -> None:
        study.enqueue_trial({"instance_count": instances})
        trial = study.ask()
        space.suggest(trial)
        trial.set_constraint("latency_p99_ms", p99_excess)
        if pruned:
            trial.report(throughput, step=8)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, throughput)

    tell(1, 100.0, -5.0)
    tell(2, 180.0, -3.0)
    tell(12, 30.0, 40.0, pruned=True)  # far over the budget at its screen
    candidates = {n: space.key_of({"instance_count": n}) for n in (3, 11)}
    rows = np.array([sampler._encode({"instance_count": n}) for n in candidates])

    scores = sampler.acquisition(study, _finished(study), rows)

    assert np.isfinite(scores).all()
    assert scores[0] > scores[1], "next to the pruned config is where the model expects no good"
    assert study.trials[2].number not in [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    assert space.key_of({"instance_count": 12}) in sampler.visited(study), "a pruned config is not proposed again"


def test_a_trial_is_judged_by_its_points_measured_to_stability(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, constraints={"latency_p99_ms": {"max": 50}})
    step = dataclasses.replace(_point(throughput=300.0, p99=20.0, concurrency=4), screened=True)
    full = _point(throughput=200.0, p99=20.0, concurrency=2)

    assert choose_point((step, full), cfg) == full, "a screened step's higher throughput is not judged"
    assert choose_point((step,), cfg) == step, "with nothing measured in full, the step is all there is"
