"""`tuner verify` without a server: the verdict, what is verified, what is stored, and bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tuner.errors import ConfigError, StudyNotFoundError
from tuner.reports import choose_target, record, stored_verifications, verify_study
from tuner.reports._verify import NoFeasibleConfigError, Verification, VerifyRun, holds, verifications_html
from tuner.storage import Store, StoredTrial, StudyInfo, read_study
from tuner.study import config_results

INFO = StudyInfo(name="s", directions=("maximize", "minimize"), metric_names=("throughput", "latency_p99_ms"),
                 study_file={"constraints": {"latency_p99_ms": {"max": 50.0}}})


def load(number: int, throughput: float, p99: float = 10.0, **spec: object) -> StoredTrial:
    spec = {"instance_count": 1, "cpu_threads": 1, "precision": "fp32", "dynamic_batching": False,
            "max_batch_size": 8, "max_queue_delay_us": 0} | spec
    return StoredTrial(
        number=number, trial_id=100 + number, state=TrialState.COMPLETE, params=dict(spec),
        values=(throughput, p99), constraints={"latency_p99_ms": p99 - 50.0},
        metrics={"throughput": throughput, "latency_p99_ms": p99}, spec_key=json.dumps(spec, sort_keys=True),
    )


def verification(values: list[float], stored: float = 83.9, interval: tuple[float, float] = (81.3, 89.6),
                 **changes: object) -> Verification:
    runs = tuple(VerifyRun(v, 12.0, v) for v in values)
    median = sorted(values)[len(values) // 2]
    fields: dict = {
        "when": "2026-01-02T03:04:05+00:00", "trial": 4, "config_key": '{"instance_count": 2}', "metric": "throughput",
        "maximize": True, "repeats": len(values), "concurrency": 8, "runs": runs, "verified_median": median,
        "stored_median": stored, "interval": interval, "holds": holds(median, stored, interval),
        "machine": {"host": "node-1", "cores": 2}, "versions": {"tuner": "0.1.0"},
    }
    return Verification(**(fields | changes))


@pytest.mark.parametrize(
    ("verified", "expected"),
    [
        (85.0, True),  # within the interval
        (81.3, True),  # on its edge
        (76.0, True),  # below the interval, within 10% of the median
        (92.0, True),  # above the interval
        (140.0, True),  # far above: better than promised
        (75.0, False),  # 10.6% below, outside the interval
    ],
)
def test_a_verified_throughput_holds_unless_worse_than_the_interval_and_ten_percent(
    verified: float, expected: bool
) -> None:
    assert holds(verified, 83.9, (81.3, 89.6)) is expected


@pytest.mark.parametrize(("verified", "expected"), [(9.0, True), (5.0, True), (10.9, True), (11.2, False)])
def test_a_verified_latency_holds_unless_higher_than_the_interval_and_ten_percent(
    verified: float, expected: bool
) -> None:
    assert holds(verified, 10.0, (9.5, 10.5), maximize=False) is expected


def test_a_wide_interval_holds_beyond_ten_percent() -> None:
    assert holds(60.0, 83.9, (55.0, 95.0))
    assert not holds(60.0, 83.9, (70.0, 95.0))


def test_the_line_says_whether_it_holds_and_against_what() -> None:
    held = verification([81.9, 84.1, 86.0])
    assert held.line() == "holds: 84.1 infer/s verified (3 runs, 81.9-86) against 83.9 stored (interval 81.3-89.6)"
    failed = verification([60.0, 61.2, 58.0])
    assert not failed.holds
    assert failed.line() == (
        "does not hold: 60 infer/s verified (3 runs, 58-61.2) against 83.9 stored (interval 81.3-89.6): "
        "28% below the stored median"
    )
    latency = verification([9.0], stored=10.0, interval=(9.5, 10.5), metric="latency_p99_ms", maximize=False)
    assert latency.line().startswith("holds: 9 ms verified (1 run, 9-9) against 10 stored")
    faster = verification([101.0, 99.0, 104.0])
    assert faster.holds
    assert faster.line().endswith("(interval 81.3-89.6): 20% above the stored median")


def test_a_miss_on_runs_that_shared_the_cpu_is_inconclusive() -> None:
    busy = (VerifyRun(60.0, 12.0, 60.0, contaminated=True), VerifyRun(61.0, 12.0, 61.0), VerifyRun(59.0, 12.0, 59.0))
    missed = verification([60.0, 61.0, 59.0], runs=busy)
    assert not missed.holds and missed.inconclusive and missed.verdict == "inconclusive"
    assert missed.line() == ("inconclusive: 60 infer/s verified (3 runs, 59-61) against 83.9 stored (interval "
                             "81.3-89.6): 28% below the stored median; 1 of 3 runs shared the CPU with "
                             "other processes: run it again on a quiet machine")
    assert Verification.from_dict(missed.as_dict()) == missed and missed.as_dict()["verdict"] == "inconclusive"
    held = verification([85.0, 86.0, 84.0], runs=tuple(VerifyRun(v, 12.0, v, contaminated=True) for v in (85, 86, 84)))
    assert held.holds and held.verdict == "holds" and held.line().endswith("3 of 3 runs shared the CPU with other processes")
    quiet = verification([60.0, 61.0, 59.0])
    assert quiet.verdict == "does not hold" and "shared the CPU" not in quiet.line()
    old = quiet.as_dict()  # stored before runs said whether they shared the CPU
    for run in old["runs"]:
        del run["contaminated"]
    assert Verification.from_dict(old).verdict == "does not hold"


def test_runs_whose_median_breaks_a_bound_of_the_study_do_not_hold(digits_onnx: Path) -> None:
    from tuner.config import parse_config
    from tuner.reports._verify import bounds_missed
    from tuner.trial import LoadPoint

    constraints = {"latency_p99_ms": {"max": 10}, "throughput": {"min": 50}, "accuracy_drop": {"max": 0.01}}
    cfg = parse_config({"study": "s", "model": {"name": "d", "path": str(digits_onnx)}, "constraints": constraints},
                       Path("."))
    runs = [LoadPoint(8, t, p, p, p, p, p) for t, p in ((60.0, 9.0), (55.0, 10.6), (40.0, 10.4))]

    assert bounds_missed(cfg, runs) == ("latency_p99_ms 10.4 > max 10",)
    assert bounds_missed(cfg, runs[:1]) == ()
    # The accuracy is not measured again: a variant's loads that broke its bound in the study break it still.
    int8 = [dataclasses.replace(load(n, 90.0, precision="int8"), metrics={"accuracy_drop": drop})
            for n, drop in ((0, 0.125), (1, 0.13))]
    config = config_results(int8)[0]
    assert bounds_missed(cfg, runs[:1], config) == ("accuracy_drop 0.1275 > max 0.01 (+1175%) in the study",)
    held = config_results([dataclasses.replace(load(2, 90.0), metrics={"accuracy_drop": 0.0})])[0]
    assert bounds_missed(cfg, runs[:1], held) == ()
    over = verification([81.9, 84.1, 86.0], latency_p99_median_ms=10.4, bounds_missed=("latency_p99_ms 10.4 > max 10",),
                        holds=False)
    assert over.line() == ("does not hold: 84.1 infer/s verified (3 runs, 81.9-86) against 83.9 stored (interval "
                           "81.3-89.6); p99 10.4 ms; over the study's bounds: latency_p99_ms 10.4 > max 10")
    assert Verification.from_dict(over.as_dict()) == over


def test_the_recommendation_is_the_config_verified_at_its_median_load() -> None:
    trials = [load(0, 80.0), load(1, 100.0, instance_count=2), load(2, 96.0, instance_count=2),
              load(3, 104.0, instance_count=2)]
    target = choose_target(trials, INFO)
    assert target.trial.number == 1  # the load at the median of 96, 100, 104
    assert len(target.config.loads) == 3 and target.config.values[0] == 100.0
    assert target.config.interval == (96.0, 104.0)


def test_a_trial_named_is_verified_with_its_config() -> None:
    trials = [load(0, 80.0), load(1, 100.0, instance_count=2), load(2, 82.0)]
    target = choose_target(trials, INFO, number=2)
    assert target.trial.number == 2 and target.config.values[0] == 81.0
    assert [t.number for t in target.config.loads] == [0, 2]


def test_a_trial_that_copied_a_result_is_verified_with_the_load_it_copied() -> None:
    copy = StoredTrial(**{**load(2, 100.0, instance_count=2).__dict__, "reused_from": 1})
    target = choose_target([load(0, 80.0), load(1, 100.0, instance_count=2), copy], INFO, number=2)
    assert target.trial.number == 1 and [t.number for t in target.config.loads] == [1]


def test_nothing_to_verify_is_refused() -> None:
    failed = StoredTrial(number=1, trial_id=101, state=TrialState.FAIL, params={})
    with pytest.raises(StudyNotFoundError, match=r"no trial 7 \(its trials are 0-1\)$"):
        choose_target([load(0, 80.0), failed], INFO, number=7)
    with pytest.raises(StudyNotFoundError, match="trial 1 measured no config"):
        choose_target([load(0, 80.0), failed], INFO, number=1)
    with pytest.raises(NoFeasibleConfigError, match="no feasible config"):
        choose_target([load(0, 80.0, p99=70.0)], INFO)


@pytest.fixture()
def study(tmp_path: Path) -> tuple[optuna.Study, Store]:
    store = Store(f"sqlite:///{tmp_path / 'tuner.db'}")
    study = optuna.create_study(study_name="s", storage=store.optuna, directions=["maximize", "minimize"])
    study.set_metric_names(["throughput", "latency_p99_ms"])
    yield study, store
    store.close()


def test_each_verification_is_appended_to_the_study_and_reads_back(study: tuple[optuna.Study, Store]) -> None:
    opened, store = study
    first, second = verification([81.9, 84.1, 86.0]), verification([60.0, 61.2, 58.0])
    record(opened, first)
    record(opened, second)
    info = read_study(opened, store).info
    assert [v["verdict"] for v in info.verifications] == ["holds", "does not hold"]
    assert info.verifications[0]["runs"][1] == {"throughput": 84.1, "latency_p99_ms": 12.0, "value": 84.1,
                                                 "stable": True, "contaminated": False}
    assert stored_verifications(info) == [first, second]


def test_a_malformed_stored_verification_is_skipped(study: tuple[optuna.Study, Store]) -> None:
    opened, store = study
    opened.set_user_attr("verifications", [{"when": "x"}, verification([84.0]).as_dict()])
    assert [v.verified_median for v in stored_verifications(read_study(opened, store).info)] == [84.0]


def test_verifications_render_as_an_escaped_html_fragment(study: tuple[optuna.Study, Store]) -> None:
    opened, store = study
    assert verifications_html(read_study(opened, store).info) == ""
    record(opened, verification([81.9, 84.1, 86.0], machine={"host": "<b>node</b>"}))
    record(opened, verification([60.0, 61.2, 58.0], bounds_missed=("latency_p99_ms 12 > max 11",)))
    fragment = verifications_html(read_study(opened, store).info)
    assert fragment.startswith('<section class="verifications">') and fragment.endswith("</section>")
    assert fragment.count("<tr><td>") == 2
    assert "does not hold</span><br>latency_p99_ms 12 &gt; max 11" in fragment
    assert '<span class="holds">holds</span>' in fragment and '<span class="fails">does not hold</span>' in fragment
    assert "&lt;b&gt;node&lt;/b&gt;" in fragment and "<b>" not in fragment
    assert "81.3-89.6" in fragment and "81.9, 84.1, 86" in fragment


def test_a_study_without_a_feasible_config_is_refused_before_anything_starts(
    study: tuple[optuna.Study, Store], tmp_path: Path
) -> None:
    opened, store = study
    opened.tell(opened.ask(), state=TrialState.FAIL)
    with pytest.raises(NoFeasibleConfigError):
        verify_study(opened, store, workdir=tmp_path / "work")
    assert not (tmp_path / "work").exists()
    with pytest.raises(ConfigError, match="between 1 and 100 runs"):
        verify_study(opened, store, repeats=0)


def test_bad_input_to_the_command_is_exit_2(study: tuple[optuna.Study, Store], tmp_path: Path, tuner_main) -> None:
    opened, _ = study
    opened.tell(opened.ask(), state=TrialState.FAIL)
    storage = f"sqlite:///{tmp_path / 'tuner.db'}"
    # each refusal's text is tested in-process (choose_target); here, that the command turns them into exit 2
    cases = {
        ("nosuch",): "no study",
        ("s",): "no feasible config",
        ("s", "--trial", "-1"): "no trial -1",
    }
    for args, needle in cases.items():
        result = tuner_main("verify", *args, "--storage", storage, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("error: ") and needle in result.stderr, (args, result.stderr)
    result = tuner_main("verify", "s", "--repeats", "0", "--storage", storage, cwd=tmp_path)
    assert result.returncode == 2 and "--repeats" in result.stderr


@pytest.mark.parametrize(
    ("shared_memory", "args"), [("none", None), ("system", "--shared-memory system --output-shared-memory-size 40 ")]
)
def test_the_command_to_measure_again_passes_the_tensors_as_the_study_did(
    tmp_path: Path, digits_onnx: Path, shared_memory: str, args: str | None
) -> None:
    from tuner.config import parse_config
    from tuner.model import open_model
    from tuner.reports._export import perf_analyzer_command
    from tuner.workers import engine_settings

    cfg = parse_config(
        {
            "study": "s",
            "model": {"name": "digits_forest", "path": str(digits_onnx)},
            "load": {"shared_memory": shared_memory},
        },
        tmp_path,
    )
    command = perf_analyzer_command(cfg, engine_settings(cfg, open_model(cfg.model).info), "digits_forest", 4)
    assert command.startswith("perf_analyzer -m digits_forest ")
    assert (args in command) if args else ("--shared-memory" not in command)
