"""Recorded landscapes: every config of a grid measured once, and a pool that replays them.

A landscape file (JSON) holds what a grid study measured on the real server, one entry per
config, with the study's model, space, load settings and worker plan:

    {"format": "triton-tuner-landscape/1", "model": "text_detection", "study": {...},
     "worker_plan": {"count": 1, "cpus_per_worker": 2, "gpus_per_worker": 0.0}, "machine": {...},
     "entries": [{"spec": {...}, "params": {...}, "points": [...], "accuracy": {...},
                  "server": {...}, "error": null, "timings_s": {...}, "config_pbtxt": "..."}]}

``ReplayPool`` answers a study's trials from such a file instead of a Triton server, so the
study loop, the storage and every report run unchanged: a search strategy is compared with
another on exactly the same measurements, in seconds. A config the file lacks comes back as
a FAIL trial saying so. ``tuner.study`` writes the files.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.config import StudyConfig
from tuner.errors import ConfigError
from tuner.pool import Finished, WorkerPlan, WorkerStatus
from tuner.trial import LoadPoint, Screen, TrialOutcome, TrialSpec, screened

if TYPE_CHECKING:
    from typing_extensions import Self

logger = logging.getLogger(__name__)

FORMAT = "triton-tuner-landscape/1"


@dataclass
class Landscape:
    """The measured outcome of every config of a grid.

    Attributes:
        model: The model's name in Triton.
        study: The recording study's file (space, load settings, objectives, constraints).
        worker_plan: The workers it was measured on; a replay uses the same cores per worker,
            so that derived knobs (threads per instance) give the same configs.
        outcomes: By TrialSpec key, what measuring that config gave.
        params: By TrialSpec key, the trial params of that config.
        machine: Where it was recorded (for the reader).
    """

    model: str
    study: dict[str, Any]
    worker_plan: WorkerPlan
    outcomes: dict[str, TrialOutcome] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    def add(self, outcome: TrialOutcome, params: dict[str, Any]) -> None:
        """Adds a config's outcome; a successful measurement is kept over a failed one."""
        key = outcome.spec.key()
        kept = self.outcomes.get(key)
        if kept is None or kept.failed or not outcome.failed:
            self.outcomes[key] = outcome
            self.params[key] = dict(params)

    def answer(self, spec: TrialSpec) -> TrialOutcome:
        """The recorded outcome of ``spec``, or a failed one where the landscape lacks it."""
        outcome = self.outcomes.get(spec.key())
        if outcome is None:
            return TrialOutcome(spec=spec, config_pbtxt="", error="config not in the recorded landscape")
        return outcome

    def to_json(self) -> dict[str, Any]:
        entries = []
        for key, outcome in self.outcomes.items():
            entries.append(
                {
                    "spec": json.loads(key),
                    "params": self.params.get(key, {}),
                    "points": [p.as_dict() for p in outcome.points],
                    "accuracy": outcome.accuracy,
                    "server": outcome.server,
                    "error": outcome.error,
                    "timings_s": outcome.timings_s,
                    "config_pbtxt": outcome.config_pbtxt,
                }
            )
        return {
            "format": FORMAT,
            "model": self.model,
            "study": self.study,
            "worker_plan": {
                "count": self.worker_plan.count,
                "cpus_per_worker": self.worker_plan.cpus_per_worker,
                "gpus_per_worker": self.worker_plan.gpus_per_worker,
            },
            "machine": self.machine,
            "entries": entries,
        }

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def from_json(cls, data: Any, source: str = "landscape") -> Landscape:
        """Raises ConfigError naming ``source`` where the data is not a landscape."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f'{source}: not a landscape file (expected "format": "{FORMAT}")')
        try:
            plan = data["worker_plan"]
            landscape = cls(
                model=str(data["model"]),
                study=dict(data.get("study") or {}),
                worker_plan=WorkerPlan(
                    int(plan["count"]), int(plan["cpus_per_worker"]), float(plan["gpus_per_worker"])
                ),
                machine=dict(data.get("machine") or {}),
            )
            for entry in data["entries"]:
                spec = TrialSpec.from_json(entry["spec"])
                outcome = TrialOutcome(
                    spec=spec,
                    config_pbtxt=entry.get("config_pbtxt", ""),
                    points=tuple(LoadPoint(**p) for p in entry.get("points", [])),
                    error=entry.get("error"),
                    timings_s=dict(entry.get("timings_s") or {}),
                    accuracy=entry.get("accuracy"),
                    server=dict(entry.get("server") or {}),
                )
                landscape.add(outcome, entry.get("params", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: malformed landscape file: {exc!r}") from None
        return landscape

    @classmethod
    def load(cls, path: Path, source: str | None = None) -> Landscape:
        """Reads a landscape file.

        Raises:
            ConfigError: the file cannot be read or is not a landscape (named by ``source``).
        """
        source = source or str(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read {path}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: {path} is not JSON: {exc}") from None
        return cls.from_json(data, source)


class ReplayPool:
    """A pool whose workers answer trials from a landscape instead of measuring them.

    Follows the contract of ``tuner.pool.Pool``. Trials are answered in the order submitted,
    ``workers`` at a time, so a replayed study asks and tells as a live one with that many
    workers would. A trial submitted with a screen is judged by it on its recorded point at the
    screen's concurrency, and pruned to that point where a live worker's screen would have stopped it.

    Args:
        landscape: The recorded outcomes.
        workers: How many trials may be in flight at once.
    """

    def __init__(self, landscape: Landscape, workers: int = 1) -> None:
        self.landscape = landscape
        self.status = [WorkerStatus(index=i, node="replay") for i in range(max(1, workers))]
        self._queued: deque[tuple[int, TrialSpec, Screen | None]] = deque()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def idle(self) -> int:
        return len(self.status) - len(self._queued)

    def submit(self, ticket: int, spec: TrialSpec, screen: Screen | None = None) -> None:
        slot = next(s for s in self.status if s.ticket is None)
        slot.ticket = ticket
        self._queued.append((ticket, spec, screen))

    def collect(self, timeout_s: float) -> list[Finished]:
        del timeout_s  # answers are at hand
        if not self._queued:
            return []
        ticket, spec, screen = self._queued.popleft()
        slot = next(s for s in self.status if s.ticket == ticket)
        outcome = self.landscape.answer(spec)
        if outcome.spec != spec:  # same key, e.g. another queue delay with batching off
            outcome = TrialOutcome(
                spec,
                outcome.config_pbtxt,
                outcome.points,
                outcome.error,
                outcome.timings_s,
                outcome.accuracy,
                outcome.server,
            )
        outcome = screened(outcome, screen)  # the recorded curve's first point stands in for the screen's
        slot.ticket = None
        slot.done += 1
        slot.failed += int(outcome.failed)
        return [Finished(ticket, spec, outcome, slot.index)]

    def close(self) -> None:
        self._queued.clear()


def load_replay(cfg: StudyConfig) -> Landscape | None:
    """The landscape the study file replays (``search.replay``), or None for a live study.

    Raises:
        ConfigError: naming ``search.replay``, where the file is not a landscape of the study's model.
    """
    if cfg.search.replay is None:
        return None
    landscape = Landscape.load(cfg.search.replay, source="search.replay")
    if landscape.model != cfg.model.name:
        raise ConfigError(
            f"search.replay: {cfg.search.replay} was recorded for model {landscape.model!r}, "
            f"and this study tunes {cfg.model.name!r}"
        )
    return landscape


def replay_plan(landscape: Landscape, workers: int | None) -> WorkerPlan:
    """The recording's worker plan, with ``workers`` trials in flight where given."""
    plan = landscape.worker_plan
    return WorkerPlan(workers or plan.count, plan.cpus_per_worker, plan.gpus_per_worker)
