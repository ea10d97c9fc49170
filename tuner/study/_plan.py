"""A study's set-up as one step: everything a run needs from the study file, read and checked once.

    plan = plan_study(cfg)                    # the pre-flight check: raises what a run would
    runner = StudyRunner(cfg, store, plan=plan)

``plan_study`` reads the model (its ONNX file, or its folder of a Triton repository, whose
launch mode and search space it checks), the replay's landscape and the data files, plans the
workers, builds the search space (checking its accelerators against the workers and the ONNX
Runtime providers of the runner's environment) and reads the studies a transfer starts from
(``search.warm_start.from``, tuner.study._transfer), before any worker or server starts, so a
bad file stops the command with its message (exit code 2) and the run that follows reads
nothing again.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuner.config import KNOB_BACKENDS, IntRange, SpaceSettings, StudyConfig
from tuner.errors import ConfigError, ModelError
from tuner.model import (
    RepositoryModel,
    StudyModel,
    check_launch_runs,
    check_reference,
    float_precision,
    open_model,
    validation_inputs,
)
from tuner.model_info import ModelInfo
from tuner.pool import WorkerPlan
from tuner.replay import Landscape, load_replay, replay_plan
from tuner.samplers import ConfigBOSampler, PipelineSpace, SearchSpace, Space, make_sampler
from tuner.storage import Store
from tuner.study._transfer import Seeds, plan_transfer
from tuner.trial import ACCURACY_METRICS, InstanceKind
from tuner.triton import runner_providers, tuned_knobs
from tuner.workers import cpu_cores, plan_workers, real_samples


@dataclass(frozen=True, eq=False)
class StudyPlan:
    """What a study runs with, derived from its study file.

    Attributes:
        model_info: The model's inputs and outputs, as read from its file or config (and ``model.inputs``).
        workers: How many workers, and the cores and GPUs of each.
        space: The search space, for the workers' cores and device.
        validation: The fixed batch every variant's outputs are checked on, by input name.
        load_samples: The samples of ``load.input_data`` by input name, or None where it names
            generated data.
        landscape: The recorded landscape a replay answers trials from; None for a live study.
        seeds: The configs of earlier studies the study starts from (``search.warm_start.from``);
            None where it names none.
        model_file: The FP32 ONNX file the workers serve; None for a repository model that is not ONNX.
        repository_model: The model's folder and own config, where the study names a repository.
        model_digest: The SHA-256 of the model's files as read (``StudyModel.digest``): a study keeps it, and
            is not continued on other files.
        notes: What the plan changed in the study file's space, and why, for the user.
    """

    model_info: ModelInfo
    workers: WorkerPlan
    space: Space
    validation: dict[str, np.ndarray]
    load_samples: dict[str, np.ndarray] | None
    landscape: Landscape | None
    seeds: Seeds | None = None
    model_file: Path | None = None
    repository_model: RepositoryModel | None = None
    model_digest: str | None = None
    notes: tuple[str, ...] = ()


def _check_cores(cfg: StudyConfig, workers: WorkerPlan) -> None:
    """Refuses CPU workers of a local Ray that ask for more cores than this machine has: each worker's
    server is pinned to cores of its own, and workers that share cores disturb each other's measurements
    (a Ray cluster has the cores of all its machines; GPU workers are not pinned).

    Raises:
        ConfigError: naming the cores asked for and the cores there are.
    """
    if cfg.workers.backend != "ray" or cfg.workers.ray_address or workers.gpus_per_worker:
        return
    cores, wanted = cpu_cores(), workers.count * workers.cpus_per_worker
    if wanted > cores:
        raise ConfigError(
            f"workers: {workers.count} worker(s) of {workers.cpus_per_worker} core(s) ask for {wanted} cores, and "
            f"this machine has {cores}; workers that share cores disturb each other's measurements (a Ray "
            "cluster, workers.ray_address, has the cores of all its machines)"
        )


def plan_study(cfg: StudyConfig, store: Store | None = None) -> StudyPlan:
    """The plan of a study, or the error a run of it would stop with.

    Args:
        cfg: The validated study file.
        store: The study's storage, where the caller has opened it; a transfer
            (``search.warm_start.from``) opens ``cfg.storage`` otherwise.

    Raises:
        ModelError: the model cannot be served (unreadable, free dimensions), or the
            validation or load data do not fit it.
        ConfigError: the replay is no landscape of this model, or the search space does not
            suit the workers or the sampler (e.g. TensorRT on CPU workers, or CUDA where the
            runner's ONNX Runtime is the OpenVINO build), or a study a transfer starts from is
            not in the storage, or a repository model's backend does not run in the study's
            launch mode or has no variants, accelerators or accuracy check to search, or the
            workers of a local Ray ask for more cores than the machine has.
    """
    model = open_model(cfg.model)
    if model.repository is not None:
        check_launch_runs(model.repository, cfg.server)
        check_repository_study(cfg, model.repository)
    info = model.info
    landscape = load_replay(cfg)
    workers = replay_plan(landscape, cfg.workers.count) if landscape is not None else plan_workers(cfg.workers)
    if landscape is None:
        _check_cores(cfg, workers)
    # A replay starts no server, and a model that is not ONNX no runner: no ONNX Runtime of this
    # environment runs their trials.
    runs_onnx = landscape is None and model.onnx_file is not None
    steps = model.repository.steps if model.repository is not None else ()
    serves_onnx = runs_onnx or (landscape is None and any(step.is_onnx for step in steps))
    providers = runner_providers(cfg.server, cfg.workers.ray_address is None) if serves_onnx else None
    notes = []
    if runs_onnx:
        _check_first_dimensions(info)
    if runs_onnx and not info.batch_dim_free and _batches(cfg.search.space):
        cfg = cfg.model_copy(update={"search": cfg.search.model_copy(update={"space": _unbatched(cfg.search.space)})})
        fixed = ", ".join(f"{t.name} {list(t.shape)}" for t in info.unbatched)
        notes.append(
            f"batching is off the search: a tensor of the model has a fixed first dimension or none ({fixed}), "
            "so the runner runs one request at a time (max_batch_size 1, no dynamic batcher)"
        )
    if info.unserved:
        notes.append(unserved_note(info.unserved))
    if info.shaped_by_data:
        shaped = ", ".join(f"{t.name} {list(t.shape)}" for t in info.inputs if t.name in info.shaped_by_data)
        notes.append(
            f"shapes from the samples of model.validation_data: {shaped}; the study serves and measures them so"
        )
    if runs_onnx and model.onnx_file is not None and float_precision(model.onnx_file) == "fp16":
        notes.append(
            f"{model.onnx_file.name} holds its floats at FP16: precision fp32 is the file as it is, served at FP16, "
            "and there is no fp16 variant to build"
        )
    space = build_space(cfg, workers, providers, model)
    # Built here only for its errors: each run makes its own, as the sampler holds the run's random state.
    sampler = make_sampler(cfg.search.sampler, cfg.search.seed, space, cfg.search.n_startup_trials)
    if isinstance(sampler, ConfigBOSampler) and sampler.waited_delays_last and (note := waited_note(space)):
        notes.append(note)
    # the accuracy check compares ONNX variants with the FP32 file; a replay answers it from its landscape
    validation: dict[str, np.ndarray] = {}
    if runs_onnx:
        validation = validation_inputs(cfg.model.name, info, cfg.model.validation_data, cfg.model.validation_samples)
        assert model.onnx_file is not None
        check_reference(model.onnx_file, validation, made_up=cfg.model.validation_data is None)
    seeds = plan_transfer(cfg, space, store)
    return StudyPlan(
        info,
        workers,
        space,
        validation,
        real_samples(cfg, info),
        landscape,
        seeds,
        model_file=model.onnx_file,
        repository_model=model.repository,
        model_digest=model.digest(),
        notes=tuple(notes),
    )


def _check_first_dimensions(info: ModelInfo) -> None:
    """An ONNX model's first dimension is served as its batch: free, or fixed at one request of 1.

    Raises:
        ModelError: an input has no dimension, or a first dimension fixed at another size (a model that
            takes one image [3, H, W] without a batch axis, or an export made with a batch of 4).
    """
    for tensor in info.inputs:
        if not tensor.shape or tensor.shape[0] not in (-1, 1):
            raise ModelError(
                f"input {tensor.name!r} has shape {list(tensor.shape)}: the tuner serves an ONNX model's first "
                "dimension as the batch, free or 1; export the model with a batch axis in front (dynamic, as "
                "torch.onnx.export's dynamic_axes makes it, or 1)"
            )


def waited_note(space: Space) -> str | None:
    """What a study says of the max batch sizes its load never fills (``SearchSpace.unfilled_batch_sizes``),
    where their queue delay is searched, each composing model's in a pipeline; None where there are none."""
    parts = space.parts if isinstance(space, PipelineSpace) else {"": space} if isinstance(space, SearchSpace) else {}
    unfilled = {name: part for name, part in parts.items() if part.unfilled_batch_sizes}
    if not unfilled:
        return None
    sizes = "; ".join(
        f"{name + ' ' if name else ''}max_batch_size {', '.join(map(str, part.unfilled_batch_sizes))}"
        for name, part in unfilled.items()
    )
    lowest = {part.lowest_delay for part in unfilled.values()}
    above = f"{lowest.pop()} us" if len(lowest) == 1 else "each model's lowest"
    return (
        f"the load keeps at most {next(iter(unfilled.values())).most_in_flight} requests in flight, which never fill "
        f"a batch of {sizes}: the batcher holds each such batch for its whole queue delay, so the bo sampler "
        f"measures their delays above {above} only once no other config is left"
    )


def unserved_note(unserved: tuple[tuple[str, str], ...]) -> str:
    """What a study says of the model's outputs Triton cannot return (``ModelInfo.unserved``)."""
    names = ", ".join(f"{name} ({kind})" for name, kind in unserved)
    note = f"not served, as the tuner serves tensors of numbers and booleans only: {names}; the study serves and checks the other outputs"
    if any(kind.startswith("seq(map(") for _, kind in unserved):
        note += (
            " (a classifier converted by skl2onnx with options={'zipmap': False} gives its probabilities as a tensor)"
        )
    return note


def _batches(space: SpaceSettings) -> bool:
    """True where the space may ask for batches: a max batch size above 1, or the dynamic batcher."""
    return set(_values(space.max_batch_size)) != {1} or True in _values(space.dynamic_batching)


def _unbatched(space: SpaceSettings) -> SpaceSettings:
    """``space`` with one request at a time: what an ONNX model whose first dimension is fixed can run."""
    return space.model_copy(update={"max_batch_size": 1, "dynamic_batching": False, "max_queue_delay_us": 0})


def build_space(
    cfg: StudyConfig, workers: WorkerPlan, providers: Collection[str] | None = None, model: StudyModel | None = None
) -> Space:
    """The study file's search space for workers of this many cores, on CPU or GPU, whose runner has these
    ONNX Runtime providers (None: not known here).

    A repository model's own config gives the default config (the first trial): the study tunes
    it from where its user left it. An ensemble's space is its composing models' spaces together
    (``PipelineSpace``), each from ``search.space.for_model`` and its own config.
    """
    kind = InstanceKind.GPU if workers.on_gpu else InstanceKind.CPU
    load = cfg.load
    in_flight = load.concurrency_search.max if load.concurrency == "auto" else max(load.concurrency)
    repository = model.repository if model is not None else None
    if repository is not None and repository.steps:
        caller = None if repository.is_ensemble else repository.name  # a BLS model's knobs are searched too
        parts = {
            step.name: SearchSpace(
                cfg.search.space.for_model(step.name, step.backend),
                workers.cpus_per_worker,
                kind,
                providers if step.is_onnx else None,
                tuned_knobs(step.config),
                in_flight,
            )
            for step in ((repository,) if caller else ()) + repository.steps
        }
        return PipelineSpace(parts, repository.config.max_batch_size, caller)
    defaults = tuned_knobs(repository.config) if repository is not None else {}
    return SearchSpace(cfg.search.space, workers.cpus_per_worker, kind, providers, defaults, in_flight)


def check_repository_study(cfg: StudyConfig, model: RepositoryModel) -> None:
    """Raises ConfigError where the study asks of a repository model what it cannot give.

    Every model: a batching dimension (``max_batch_size`` above 0, as the tuner tunes it), and
    no sequence batcher where dynamic batching is searched (Triton has one scheduler). A model
    that is not ONNX: no precision variants, no ONNX Runtime accelerators or threads, and no
    accuracy metric or validation data (the accuracy check compares ONNX variants with the
    FP32 file; a model that is not ONNX runs the same code in every trial). An ensemble: each
    composing model as one model under its space (``search.space.models`` naming only them),
    no precision variants (the accuracy check compares one ONNX model's answers) and no
    accuracy check.
    """
    space = cfg.search.space
    if not model.steps:
        if space.models:
            raise ConfigError(
                f"search.space.models: model {model.name!r} is no ensemble and calls no models (model.composing); "
                "give its knobs in search.space itself"
            )
        _check_model(cfg, model, space, "search.space")
        return
    tuned = ([] if model.is_ensemble else [model]) + list(model.steps)
    what = f"ensemble {model.name!r}" if model.is_ensemble else f"model {model.name!r} with the models it calls"
    unknown = sorted(set(space.models) - {m.name for m in tuned})
    if unknown:
        raise ConfigError(
            f"search.space.models.{unknown[0]}: {what} runs no model {unknown[0]!r}; it runs "
            f"{', '.join(m.name for m in tuned)}"
        )
    _check_no_accuracy(cfg, what)
    for step in tuned:
        where = f"search.space.models.{step.name}"
        step_space = space.for_model(step.name, step.backend)
        asked = [p for p in _values(step_space.precision) if p != "fp32"]
        if asked:
            raise ConfigError(
                f"{where}.precision: precision variants of an ensemble's composing models are not searched (the "
                f"accuracy check compares one ONNX model's answers with its FP32 file); asked: {asked}"
            )
        _check_model(cfg, step, step_space, where)


def _check_model(cfg: StudyConfig, model: RepositoryModel, space: SpaceSettings, field: str) -> None:
    """``check_repository_study`` for one model (not an ensemble) searched over ``space`` (at ``field``)."""
    config = model.config
    where = f"model {model.name!r} ({model.backend} backend)"
    if config.max_batch_size <= 0:
        raise ConfigError(
            f"model.name: {where} has max_batch_size 0 (its inputs have no batch dimension); the tuner tunes "
            "batching models: give its config.pbtxt a max_batch_size above 0"
        )
    if config.HasField("sequence_batching") and space.dynamic_batching is not False:
        raise ConfigError(
            f"{field}.dynamic_batching: {where} uses the sequence batcher, which dynamic batching would "
            "replace: set dynamic_batching: false"
        )
    asked = {
        "precision": [p for p in _values(space.precision) if p != "fp32"],
        "accelerator": [a for a in _values(space.accelerator) if a != "none"],
        "cpu_threads": _values(space.cpu_threads) if space.cpu_threads is not None else [],
        "performance_hint": _values(space.performance_hint) if space.performance_hint is not None else [],
    }
    for knob, values in asked.items():
        backends = KNOB_BACKENDS[knob]
        if values and model.backend not in backends:
            what = {
                "precision": "precision variants are built from ONNX models only, and",
                "accelerator": "it is an ONNX Runtime setting, and",
                "performance_hint": "it is a setting of the OpenVINO backend alone:",
            }.get(knob, f"it is a setting of the {', '.join(backends[:-1])} and {backends[-1]} backends:")
            raise ConfigError(f"{field}.{knob}: {what} {where} has none (asked: {values})")
    if not model.is_onnx:
        _check_no_accuracy(cfg, where)


def _check_no_accuracy(cfg: StudyConfig, where: str) -> None:
    metrics = [o.metric for o in cfg.objectives] + list(cfg.constraints)
    if any(m in ACCURACY_METRICS for m in metrics) or cfg.model.validation_data is not None:
        raise ConfigError(
            f"model: {where} has no accuracy check: it compares precision variants with an ONNX model's FP32 "
            "answers; leave accuracy_drop and model.validation_data out"
        )


def _values(value: Any) -> list[Any]:
    """The values a knob of the study file names: its choices, a range's ends, or its one value."""
    if isinstance(value, list):
        return value
    if isinstance(value, IntRange):
        return [value.low, value.high]
    return [value]
