"""Judging search defaults on landscapes they were not chosen on: leave one landscape out.

    cfg = replay_config(Path("elsewhere/minilm.json"))        # the study a landscape file replays
    held_out = leave_one_out(scores, candidates=["bo", "bo-startup8"])
    held_out["digits_forest"].candidate                        # chosen on every landscape but digits_forest

A landscape file carries the study that recorded it, so one file recorded on another machine
replays as it is: ``replay_config`` keeps what defines the replayed study (the model, the space,
the objectives, the constraints, the load and worker settings) and leaves the search settings and
the load's screen and fresh loads at their defaults (a recording turns those off), which each
replay then overrides. The model file is the one the study names, or the bundled model of that
name under ``model_repository/`` where the recording machine's path does not exist here. A study
file ``NAME.yaml`` beside ``NAME.json`` takes precedence: it is how a benchmark replays a
recording under other constraints (bench/landscapes/digits_forest.yaml tightens the p99 budget
the grid was recorded with).

``trials_score`` is what a candidate default is chosen by on one landscape: the log of the
median over seeds of the configs measured until the target (a seed that never reaches it
counts as twice the budget), divided by the landscape's grid size. Lower is better; the log
makes halving the trials worth the same on every landscape, and dividing by the grid size puts
landscapes of 48 and of 300 configs on one scale. ``leave_one_out`` picks, for each landscape,
the candidate with the lowest mean score over the *other* landscapes; ties go to the candidate
listed first.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.config import StudyConfig, load_config, parse_config
from tuner.errors import ConfigError
from tuner.replay._landscape import Landscape

#: What a replay leaves at its default of the recording's ``load`` section: a recording turns them off.
_RECORDING_ONLY = ("early_stop", "remeasure")


@dataclass(frozen=True)
class HeldOutChoice:
    """The candidate chosen for a held-out landscape.

    Attributes:
        candidate: The candidate's name.
        chosen_on: The landscapes whose scores chose it (every one but the held-out one).
        score: Its mean score on those.
    """

    candidate: str
    chosen_on: tuple[str, ...]
    score: float


def replay_config(path: Path, repository: Path | None = None) -> StudyConfig:
    """The study that replays the landscape file at ``path`` (``search.replay`` set to it).

    Args:
        path: A landscape file (``tuner landscape record``); the study file ``NAME.yaml`` beside
            it, else its ``study``, says the model, space, objectives and constraints.
        repository: Where bundled models lie (``NAME/1/model.onnx``), for a model path that does not exist here.

    Raises:
        ConfigError: the file is no landscape, or its study is no valid study file.
    """
    beside = path.with_suffix(".yaml")
    if beside.is_file():
        cfg = load_config(beside)
        return cfg.model_copy(update={"search": cfg.search.model_copy(update={"replay": path.resolve()})})
    landscape = Landscape.load(path)
    if not landscape.study:
        raise ConfigError(f"{path}: the landscape carries no study and no {beside.name} is beside it")
    study = landscape.study
    model = dict(study["model"])
    if not Path(str(model["path"])).is_file() and repository is not None:
        model["path"] = str(repository / landscape.model / "1" / "model.onnx")
    load = {key: value for key, value in (study.get("load") or {}).items() if key not in _RECORDING_ONLY}
    data: dict[str, Any] = {
        "study": str(study.get("study", landscape.model)),
        "storage": "sqlite:///:memory:",
        "model": model,
        "search": {"space": study["search"]["space"], "replay": str(path.resolve())},
        "objectives": study.get("objectives"),
        "constraints": study.get("constraints") or {},
        "workers": study.get("workers"),
        "load": load,
    }
    return parse_config({k: v for k, v in data.items() if v is not None}, path.parent, source=str(path))


def trials_score(trials_to_target: Sequence[int | None], budget: int, grid_size: int) -> float:
    """The log of the median trials to target over seeds (never: twice ``budget``), per config of the grid."""
    if not trials_to_target:
        raise ValueError("no seeds to score")
    median = statistics.median(2 * budget if t is None else t for t in trials_to_target)
    return math.log(median / grid_size)


def leave_one_out(scores: Mapping[str, Mapping[str, float]], candidates: Sequence[str]) -> dict[str, HeldOutChoice]:
    """For each landscape, the candidate with the lowest mean score on the others.

    Args:
        scores: ``scores[candidate][landscape]``, lower is better (``trials_score``); every candidate
            has a score on every landscape.
        candidates: The candidates in order of preference where scores tie (the simplest first).

    Raises:
        ValueError: fewer than two landscapes (nothing would be left to choose on), or a score missing.
    """
    landscapes = sorted({name for candidate in candidates for name in scores[candidate]})
    if len(landscapes) < 2:
        raise ValueError("leave-one-out needs at least two landscapes")
    missing = [(c, name) for c in candidates for name in landscapes if name not in scores[c]]
    if missing:
        raise ValueError(f"no score for {missing[0][0]} on {missing[0][1]}")
    chosen = {}
    for held_out in landscapes:
        others = tuple(name for name in landscapes if name != held_out)
        means = {c: statistics.fmean(scores[c][name] for name in others) for c in candidates}
        best = min(candidates, key=lambda c: means[c])  # min keeps the first of equal ones
        chosen[held_out] = HeldOutChoice(best, others, means[best])
    return chosen
