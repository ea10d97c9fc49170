"""A study's set-up as one step: everything a run needs from the study file, read and checked once.

    plan = plan_study(cfg)                    # the pre-flight check: raises what a run would
    runner = StudyRunner(cfg, store, plan=plan)

``plan_study`` reads the model file, the replay's landscape and the data files, plans the
workers, builds the search space (checking its accelerators against the workers and the ONNX
Runtime providers of the runner's environment) and reads the studies a transfer starts from
(``search.warm_start.from``, tuner.study._transfer), before any worker or server starts, so a
bad file stops the command with its message (exit code 2) and the run that follows reads
nothing again.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from tuner.config import StudyConfig
from tuner.model import validation_inputs
from tuner.model_info import ModelInfo, TensorInfo, read_model_info
from tuner.pool import WorkerPlan
from tuner.replay import Landscape, load_replay, replay_plan
from tuner.samplers import SearchSpace, make_sampler
from tuner.storage import Store
from tuner.study._transfer import Seeds, plan_transfer
from tuner.trial import InstanceKind
from tuner.triton import runner_providers
from tuner.workers import plan_workers, real_samples


@dataclass(frozen=True, eq=False)
class StudyPlan:
    """What a study runs with, derived from its study file.

    Attributes:
        model_info: The model's inputs and outputs, as read from its file (and ``model.inputs``).
        workers: How many workers, and the cores and GPUs of each.
        space: The search space, for the workers' cores and device.
        validation: The fixed batch every variant's outputs are checked on, by input name.
        load_samples: The samples of ``load.input_data`` by input name, or None where it names
            generated data.
        landscape: The recorded landscape a replay answers trials from; None for a live study.
        seeds: The configs of earlier studies the study starts from (``search.warm_start.from``);
            None where it names none.
    """

    model_info: ModelInfo
    workers: WorkerPlan
    space: SearchSpace
    validation: dict[str, np.ndarray]
    load_samples: dict[str, np.ndarray] | None
    landscape: Landscape | None
    seeds: Seeds | None = None


def plan_study(cfg: StudyConfig, store: Store | None = None) -> StudyPlan:
    """The plan of a study, or the error a run of it would stop with.

    Args:
        cfg: The validated study file.
        store: The study's storage, where the caller has opened it; a transfer
            (``search.warm_start.from``) opens ``cfg.storage`` otherwise.

    Raises:
        ModelError: the model file cannot be served (unreadable, free dimensions), or the
            validation or load data do not fit it.
        ConfigError: the replay is no landscape of this model, or the search space does not
            suit the workers or the sampler (e.g. TensorRT on CPU workers, or CUDA where the
            runner's ONNX Runtime is the OpenVINO build), or a study a transfer starts from is
            not in the storage.
    """
    inputs = [TensorInfo(t.name, t.dtype, tuple(t.shape)) for t in cfg.model.inputs]
    info = read_model_info(cfg.model.path, inputs)
    landscape = load_replay(cfg)
    workers = replay_plan(landscape, cfg.workers.count) if landscape is not None else plan_workers(cfg.workers)
    # A replay starts no server, so no ONNX Runtime of this environment runs its trials.
    providers = None if landscape is not None else runner_providers(cfg.server, cfg.workers.ray_address is None)
    space = build_space(cfg, workers, providers)
    # Built here only for its errors: each run makes its own, as the sampler holds the run's random state.
    make_sampler(cfg.search.sampler, cfg.search.seed, space, cfg.search.n_startup_trials)
    # a replay answers every trial from its landscape, accuracy included: it checks no variant
    validation = (
        validation_inputs(cfg.model.name, info, cfg.model.validation_data, cfg.model.validation_samples)
        if landscape is None
        else {}
    )
    seeds = plan_transfer(cfg, space, store)
    return StudyPlan(info, workers, space, validation, real_samples(cfg, info), landscape, seeds)


def build_space(cfg: StudyConfig, workers: WorkerPlan, providers: Collection[str] | None = None) -> SearchSpace:
    """The study file's search space for workers of this many cores, on CPU or GPU, whose runner has these
    ONNX Runtime providers (None: not known here)."""
    kind = InstanceKind.GPU if workers.on_gpu else InstanceKind.CPU
    return SearchSpace(cfg.search.space, workers.cpus_per_worker, kind, providers)
