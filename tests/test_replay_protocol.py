"""Choosing search defaults by leave-one-landscape-out, and replaying a landscape file on its own."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tuner.config import load_config
from tuner.errors import ConfigError
from tuner.pool import WorkerPlan
from tuner.replay import Landscape, leave_one_out, replay_config, trials_score
from tuner.study._plan import build_space

LANDSCAPES = Path(__file__).resolve().parents[1] / "bench" / "landscapes"


def test_a_default_is_chosen_only_on_the_other_landscapes() -> None:
    # "a" wins on x and y by a little, "b" on z by a lot: z's choice may only look at x and y.
    scores = {
        "a": {"x": -2.0, "y": -2.0, "z": -1.0},
        "b": {"x": -1.9, "y": -1.9, "z": -3.0},
    }
    chosen = leave_one_out(scores, ["a", "b"])
    assert chosen["z"].candidate == "a" and chosen["z"].chosen_on == ("x", "y")
    assert chosen["z"].score == pytest.approx(-2.0)
    assert chosen["x"].candidate == "b"  # mean over y and z: a -1.5, b -2.45
    assert chosen["y"].candidate == "b"


def test_equal_scores_go_to_the_candidate_listed_first() -> None:
    scores = {"simple": {"x": -1.0, "y": -1.0}, "fancy": {"x": -1.0, "y": -1.0}}
    assert {c.candidate for c in leave_one_out(scores, ["simple", "fancy"]).values()} == {"simple"}
    assert {c.candidate for c in leave_one_out(scores, ["fancy", "simple"]).values()} == {"fancy"}


def test_leave_one_out_needs_two_landscapes_and_every_score() -> None:
    with pytest.raises(ValueError, match="two landscapes"):
        leave_one_out({"a": {"x": 0.0}}, ["a"])
    with pytest.raises(ValueError, match="no score for b on y"):
        leave_one_out({"a": {"x": 0.0, "y": 0.0}, "b": {"x": 0.0}}, ["a", "b"])


def test_the_score_is_the_log_median_per_config_with_never_as_twice_the_budget() -> None:
    assert trials_score([4, 6, 5], budget=40, grid_size=48) == pytest.approx(math.log(5 / 48))
    assert trials_score([None, None, 5], budget=40, grid_size=48) == pytest.approx(math.log(80 / 48))
    # the same trials on a grid ten times larger score better
    assert trials_score([10], 40, 480) < trials_score([10], 40, 48)


def test_a_landscape_file_alone_replays_the_study_it_was_recorded_with(tmp_path: Path) -> None:
    shutil.copy(LANDSCAPES / "text_detection.json", tmp_path / "elsewhere.json")
    data = json.loads((tmp_path / "elsewhere.json").read_text())
    data["study"]["model"]["path"] = "/nowhere/model.onnx"  # the recording machine's path
    data["study"]["search"]["sampler"] = "grid"
    (tmp_path / "elsewhere.json").write_text(json.dumps(data))
    cfg = replay_config(tmp_path / "elsewhere.json", LANDSCAPES.parents[1] / "model_repository")
    assert cfg.model.path == LANDSCAPES.parents[1] / "model_repository" / "text_detection" / "1" / "model.onnx"
    assert cfg.search.replay == (tmp_path / "elsewhere.json").resolve()
    assert cfg.search.sampler == "bo" and cfg.search.warm_start is True  # defaults, not the recording's grid
    assert cfg.load.early_stop.enabled  # the recording turned it off, a replay keeps the default
    assert cfg.constraints["latency_p99_ms"].max == data["study"]["constraints"]["latency_p99_ms"]["max"]


def test_the_study_file_beside_a_landscape_takes_precedence() -> None:
    cfg = replay_config(LANDSCAPES / "digits_forest.json")
    assert cfg.constraints["latency_p99_ms"].max == 4  # the benchmark's budget, not the recording's 20 ms


def test_a_landscape_without_a_study_needs_one_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "bare.json"
    data = json.loads((LANDSCAPES / "digits_forest.json").read_text()) | {"study": {}}
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="no bare.yaml is beside it"):
        replay_config(path)


@pytest.mark.parametrize(
    ("name", "configs"),
    [("minilm", 112), ("text_detection_precision", 120), ("digits_forest_tight", 144), ("text_recognition_loose", 102)],
)
def test_the_landscapes_to_record_are_valid_studies_of_100_to_300_configs(name: str, configs: int) -> None:
    cfg = load_config(LANDSCAPES / f"{name}.yaml")
    assert len(build_space(cfg, WorkerPlan(1, 2, 0.0)).combinations()) == configs
    assert cfg.model.path.is_file() or name == "minilm"  # minilm is prepared with the transformer extra


@pytest.mark.parametrize("name", ["tabular_mlp", "sequence_lstm", "tabular_knn"])
def test_a_held_out_landscapes_tight_budget_follows_its_rule(name: str) -> None:
    # The tight replay is the same recording under the 25th percentile of its configs' p99, rounded down
    # to two significant digits; nothing else differs from the loose study file.
    assert (LANDSCAPES / f"{name}_tight.json").resolve() == (LANDSCAPES / f"{name}.json").resolve()
    landscape = Landscape.load(LANDSCAPES / f"{name}.json")
    assert landscape.machine["cpu_model"] and {"triton", "onnxruntime-openvino", "tritonclient"} <= set(
        landscape.machine["versions"]
    )
    p99 = [p.latency_p99_ms for o in landscape.outcomes.values() if not o.failed for p in o.points]
    quartile = float(np.percentile(p99, 25))
    scale = 10.0 ** (1 - math.floor(math.log10(quartile)))
    loose = yaml.safe_load((LANDSCAPES / f"{name}.yaml").read_text())
    tight = yaml.safe_load((LANDSCAPES / f"{name}_tight.yaml").read_text())
    assert tight["constraints"]["latency_p99_ms"]["max"] == math.floor(quartile * scale) / scale
    assert loose["constraints"]["latency_p99_ms"]["max"] > max(p99)  # the loose budget: no config misses it
    same = ("model", "search", "objectives", "load")
    assert {k: tight[k] for k in same} == {k: loose[k] for k in same}


def _bench_search():  # type: ignore[no-untyped-def]
    import importlib
    import sys

    sys.path.insert(0, str(LANDSCAPES.parent))
    try:
        return importlib.import_module("search")
    finally:
        sys.path.remove(str(LANDSCAPES.parent))


@pytest.mark.parametrize(("configs", "near_best"), [(40, 1), (40, 6), (144, 6), (12, 11)])
def test_a_shuffled_grid_s_median_is_that_of_every_order(configs: int, near_best: int) -> None:
    # the default config first, then the others in a random order: by trial t, t - 1 of the others are
    # measured, and every set of them is as likely
    def reached_by(t: int) -> float:
        return 1 - math.comb(configs - 1 - near_best, t - 1) / math.comb(configs - 1, t - 1)

    median = _bench_search().shuffled_median(configs, near_best)

    assert reached_by(median) >= 0.5 > reached_by(median - 1)


def test_the_replay_reference_counts_the_configs_of_the_study_s_space() -> None:
    # digits_forest was recorded with a queue delay per config at max batch 1 too: 48 readings, 40 configs
    search = _bench_search()
    path = LANDSCAPES / "digits_forest.json"
    landscape = Landscape.load(path)

    ref = search.reference(replay_config(path), landscape)

    assert len(landscape.outcomes) == 48
    assert (ref.configs, ref.near_best, ref.shuffled) == (40, 1, 21)
