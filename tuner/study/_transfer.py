"""Transfer between studies: a new study starts from the best configs of earlier ones.

    seeds = plan_transfer(cfg, space)                     # in plan_study; None without a transfer
    initial_params(sampler, space, seeds=seeds.params)    # the default config, then these

``search.warm_start: {from: [studies]}`` names studies in the same storage: the same model on
another machine, the model's previous version, another model on the same hardware. Each study's
configs are ranked as that study judges them (``ranked``: feasible first, then by its own first
objective); the studies' values are not compared with each other (another machine, another
model), so the lists are merged by rank: every study's best, then every study's second best, in
the order ``from`` names them, feasible configs before infeasible ones. Each config is moved into
the new space (``SearchSpace.params_from``), and the first ``configs`` distinct ones that are not
the default config are the seeds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tuner.config import StudyConfig, Transfer
from tuner.errors import ConfigError, StudyNotFoundError
from tuner.samplers import WARM_STARTED, Space
from tuner.storage import Store, read_study
from tuner.study._verdict import config_results, ranked

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Seeds:
    """The configs a study starts from, taken from earlier studies.

    Attributes:
        studies: The studies named in ``search.warm_start.from``, in that order.
        params: Trial params of the new space, best first, distinct, the default config left out.
        unmeasured: The studies that had no measured config to give.
    """

    studies: tuple[str, ...]
    params: tuple[dict[str, Any], ...]
    unmeasured: tuple[str, ...] = ()


def plan_transfer(cfg: StudyConfig, space: Space, store: Store | None = None) -> Seeds | None:
    """The configs of earlier studies the study starts from, or None where ``search.warm_start`` names none.

    Args:
        cfg: The validated study file.
        space: The study's search space, the configs are moved into.
        store: The study's storage, where the caller has opened it; else ``cfg.storage`` is opened
            (a SQLite file must exist already) and closed again.

    Raises:
        ConfigError: the sampler takes no warm start, or a named study is not in the storage (or
            is the study itself).
    """
    transfer = cfg.search.warm_start
    if not isinstance(transfer, Transfer):
        return None
    if cfg.search.sampler not in WARM_STARTED:
        raise ConfigError(
            f"search.warm_start.from: the {cfg.search.sampler} sampler starts from no configs but the default; "
            f"use {', '.join(WARM_STARTED)}"
        )
    if store is not None:
        return transfer_seeds(transfer, cfg.study, space, store)
    try:
        opened = Store(cfg.storage, must_exist=True)
    except StudyNotFoundError as exc:  # no database yet: no study to start from
        raise ConfigError(f"search.warm_start.from: {exc}") from None
    try:
        return transfer_seeds(transfer, cfg.study, space, opened)
    finally:
        opened.close()


def transfer_seeds(transfer: Transfer, study: str, space: Space, store: Store) -> Seeds:
    """The seeds of ``transfer`` for the study ``study`` searching ``space``.

    A named study with no measured config gives none, with a warning.

    Raises:
        ConfigError: a named study is not in the storage, or is the study itself.
    """
    if study in transfer.from_:
        raise ConfigError(f"search.warm_start.from: names this study ({study!r}); name earlier studies")
    candidates: list[tuple[bool, int, int, dict[str, Any]]] = []
    unmeasured: list[str] = []
    for index, name in enumerate(transfer.from_):
        try:
            stored = read_study(store.load_study(name), store)
        except StudyNotFoundError as exc:
            raise ConfigError(f"search.warm_start.from: {exc}") from None
        results = ranked(config_results(stored.trials, stored.info), stored.info)
        if not results:
            logger.warning("search.warm_start.from: study %r has no measured config to start from", name)
            unmeasured.append(name)
        candidates += [(not r.feasible, rank, index, r.first.spec) for rank, r in enumerate(results)]
    candidates.sort(key=lambda c: c[:3])
    seen = {space.key_of(space.default_params())}
    params: list[dict[str, Any]] = []
    for *_, spec in candidates:
        mapped = space.params_from(spec)
        key = space.key_of(mapped)
        if key not in seen:
            seen.add(key)
            params.append(mapped)
        if len(params) == transfer.configs:
            break
    return Seeds(tuple(transfer.from_), tuple(params), tuple(unmeasured))
