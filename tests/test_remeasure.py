"""Re-measuring after the search: its budget, the configs it loads afresh, and the progress it shows.

The study loop, the sampler, SQLite and the verdict are the real ones; the workers are a scripted
pool that answers each config with the throughput (and window spread) the test chooses, since what
is tested is where the loads go, not what a server measures.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from factories import instances_study
from rich.console import Console
from rich.progress import Progress
from scripted import Script, ScriptedPool, ScriptedRunner

from tuner.cli._display import StudyDisplay
from tuner.config import StudyConfig, parse_config
from tuner.storage import read_study
from tuner.study import RunSummary, TrialEvent
from tuner.study._remeasure import Confirming, contenders

CONFIRMING = Confirming.phase


def _cfg(tmp_path: Path, digits_onnx: Path, remeasure: dict[str, Any] | None = None, **search: Any) -> StudyConfig:
    data = instances_study("confirm", f"sqlite:///{tmp_path / 'confirm.db'}", str(digits_onnx),
                           **{"sampler": "grid", "n_trials": 4, **search})
    if remeasure is not None:
        data["load"]["remeasure"] = remeasure
    return parse_config(data, tmp_path)


def _run(cfg: StudyConfig, pool: ScriptedPool, **run: Any) -> tuple[RunSummary, list[TrialEvent]]:
    events: list[TrialEvent] = []
    summary = ScriptedRunner(cfg, pool, events.append).run(**run)
    return summary, events


def _again(summary: RunSummary) -> list[int]:
    """The instance counts of the re-measurements, in the order they ran."""
    trials = summary.stored.trials
    return [t.params["instance_count"] for t in trials if t.remeasure_of is not None and t.complete]


#: Two configs tied at the top (intervals overlap), two far below.
TIED: Script = {1: (50.0, 1.0), 2: (100.0, 4.0), 3: (101.0, 4.0), 4: (60.0, 1.0)}
#: One clear leader.
CLEAR: Script = {1: (50.0, 1.0), 2: (90.0, 1.0), 3: (100.0, 1.0), 4: (60.0, 1.0)}


def test_a_4_trial_study_runs_at_most_5_loads_by_default(tmp_path: Path, digits_onnx: Path) -> None:
    pool = ScriptedPool(TIED)
    summary, _ = _run(_cfg(tmp_path, digits_onnx), pool)

    assert len(pool.submitted) == 5
    assert summary.stored.counted() == 4, "a re-measurement does not count against n_trials"
    assert _again(summary) == [3], "the one fresh load goes to the leader"
    assert summary.recommendation is not None


def test_the_budget_goes_to_the_tied_contenders_fewest_loads_first(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, remeasure={"loads": 10, "max_loads_per_config": 3})
    pool = ScriptedPool(TIED)
    summary, _ = _run(cfg, pool)

    # 3 and 2 tie: each load goes to the one with fewer loads (of equals, the better median); the
    # configs far below get none, and each contender stops at 3 loads, though budget is left.
    assert _again(summary) == [3, 2, 3, 2]
    assert len(pool.submitted) == 4 + 4
    rec = summary.recommendation
    assert rec is not None and {len(r.loads) for r in rec.tied} == {3}


def test_a_config_with_max_loads_is_not_measured_again(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, remeasure={"loads": 10, "max_loads_per_config": 2})
    summary, events = _run(cfg, ScriptedPool(CLEAR))

    assert _again(summary) == [3]
    stored = read_study(summary.study)
    assert contenders(stored, max_loads=2) == [], "the leader has its 2 loads"
    assert [len(c.config.loads) for c in contenders(stored, max_loads=3)] == [2]
    assert [(e.phase, e.done, e.total) for e in events if e.phase == CONFIRMING] == [(CONFIRMING, 0, 1), (CONFIRMING, 1, 1)]


def test_a_load_that_widens_the_leaders_interval_brings_in_a_new_contender(
    tmp_path: Path, digits_onnx: Path
) -> None:
    # The clear leader's second load comes in 15% low: its interval now reaches config 2's, so the
    # next load goes to config 2, which until then could not change the answer.
    cfg = _cfg(tmp_path, digits_onnx, remeasure={"loads": 3, "max_loads_per_config": 3})
    summary, _ = _run(cfg, ScriptedPool(CLEAR, noise={3: (1.0, 0.85)}))

    assert _again(summary) == [3, 2, 3]
    (tmp_path / "b").mkdir()
    unchanged, _ = _run(_cfg(tmp_path / "b", digits_onnx, remeasure={"loads": 3, "max_loads_per_config": 3}),
                        ScriptedPool(CLEAR))
    assert _again(unchanged) == [3, 3]


def test_idle_workers_load_different_contenders_at_once(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, remeasure={"loads": 4, "max_loads_per_config": 3}, n_trials=4)
    pool = ScriptedPool(TIED, workers=2)
    summary, _ = _run(cfg, pool)

    assert sorted(_again(summary)) == [2, 2, 3, 3]
    confirming = pool.in_flight_together[4:]
    assert all(len(set(together)) == len(together) for together in confirming), confirming
    assert any(len(together) == 2 for together in confirming), "both workers were kept busy"


def test_the_phase_says_where_the_study_is(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, remeasure={"loads": 3, "max_loads_per_config": 3})
    _, events = _run(cfg, ScriptedPool(TIED))

    started = [(e.phase, e.done, e.total) for e in events if e.kind == "started"]
    assert started == [
        ("searching", 0, 4), ("searching", 1, 4), ("searching", 2, 4), ("searching", 3, 4),
        (CONFIRMING, 0, 3), (CONFIRMING, 1, 3), (CONFIRMING, 2, 3),
    ]
    last = events[-1]
    assert (last.kind, last.phase, last.done, last.total) == ("finished", CONFIRMING, 3, 3)


def test_without_a_trial_budget_the_phase_has_no_total(tmp_path: Path, digits_onnx: Path) -> None:
    # The grid runs out after 4 configs; a quarter of the trials run is 1 fresh load.
    pool = ScriptedPool(TIED)
    summary, events = _run(_cfg(tmp_path, digits_onnx, n_trials=None), pool)

    started = [(e.phase, e.done, e.total) for e in events if e.kind == "started"]
    assert started == [("searching", n, None) for n in range(4)] + [(CONFIRMING, 0, 1)]
    assert len(pool.submitted) == 5 and summary.stopped


def test_the_progress_bar_follows_the_phase(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, remeasure={"loads": 2})
    progress = Progress(console=Console(file=io.StringIO(), width=200))
    task = progress.add_task("starting", total=4, best="")
    screen = StudyDisplay(progress, task, cfg)
    seen = []

    def show(event: TrialEvent) -> None:
        screen.show(event)
        bar = progress.tasks[0]
        seen.append((bar.description, bar.completed, bar.total))

    ScriptedRunner(cfg, ScriptedPool(TIED), show).run()

    assert seen[0] == ("searching", 0, 4)
    assert ("searching", 4, 4) in seen
    assert seen[-1] == (CONFIRMING, 2, 2)
    assert not any("∞" in description for description, _, _ in seen)


def test_ctrl_c_while_confirming_queues_the_load_for_the_next_run(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, remeasure={"loads": 2, "max_loads_per_config": 3})
    interrupted, _ = _run(cfg, ScriptedPool(TIED, interrupt_at=4))

    assert interrupted.interrupted
    stopped = [t for t in interrupted.stored.trials if t.remeasure_of is not None]
    assert [(t.state.name, t.interrupted) for t in stopped] == [("FAIL", True), ("WAITING", False)]

    pool = ScriptedPool(TIED)
    resumed, _ = _run(cfg, pool)
    assert not resumed.interrupted
    assert sorted(_again(resumed)) == [2, 3], "the queued load ran, and the budget's other one"
    assert len(pool.submitted) == 2 and resumed.stored.counted() == 4
    done = ScriptedPool(TIED)
    _run(cfg, done)  # its budget spent: run again, it measures nothing
    assert done.submitted == []


def test_a_zero_budget_measures_nothing_again(tmp_path: Path, digits_onnx: Path) -> None:
    pool = ScriptedPool(TIED)
    summary, events = _run(_cfg(tmp_path, digits_onnx, remeasure={"loads": 0}), pool)
    assert len(pool.submitted) == 4 and _again(summary) == []
    assert not any(e.phase.startswith("confirming") for e in events)


@pytest.mark.parametrize("n_trials", [1, 3])
def test_a_study_under_4_trials_is_not_remeasured_by_default(tmp_path: Path, digits_onnx: Path, n_trials: int) -> None:
    pool = ScriptedPool(TIED)
    _run(_cfg(tmp_path, digits_onnx, n_trials=n_trials), pool)
    assert len(pool.submitted) == n_trials


WIDE = {"instance_count": [1, 2, 3, 4], "max_batch_size": [1, 2, 4, 8], "dynamic_batching": False,
        "max_queue_delay_us": 0}


def test_a_study_with_only_a_timeout_confirms_a_quarter_of_its_trials_after_it(
    tmp_path: Path, digits_onnx: Path
) -> None:
    # loads of 0.5 s in 6 s: at most 12 trials, and at least 4 even where the loop itself is slowed by a busy machine
    cfg = _cfg(tmp_path, digits_onnx, n_trials=None, timeout_s=6.0, space=WIDE)
    summary, events = _run(cfg, ScriptedPool(TIED, seconds=0.5))

    counted = summary.stored.counted()
    assert 4 <= counted < 16, "the timeout ended the search"
    assert len(_again(summary)) == counted // 4
    assert (events[-1].phase, events[-1].done, events[-1].total) == (CONFIRMING, counted // 4, counted // 4)


def test_a_timeout_before_the_trial_budget_skips_confirming(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, n_trials=16, timeout_s=1.0, space=WIDE)
    summary, events = _run(cfg, ScriptedPool(TIED, seconds=0.2))

    assert summary.stored.counted() < 16
    assert _again(summary) == [] and not any(e.phase.startswith("confirming") for e in events)
