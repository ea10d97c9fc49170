"""A trial of a study as a deployable Triton model repository.

    exported = export_trial(study, store, Path("deploy"), number=7)    # or max_p99_ms=20, or neither
    # neither: the recommendation (tuner.study.recommend), as its representative load (nearest its median)
    # deploy/<model>/config.pbtxt, deploy/<model>/1/model.onnx (the trial's variant),
    # deploy/<model>/1/model.py (where the config runs the python-backend runner), deploy/README.md

A study of a repository model (``model.repository``) exports that model's folder as its user
keeps it (every other file and version folder), with the trial's config.pbtxt (the model's own
config with the tuned knobs set) and, for an ONNX model, the trial's variant in its version folder.
An ensemble (or a BLS model) exports its folder and every composing model's, each with the config the trial ran.

The model variant is rebuilt from the study file the study stored (its model path, precision
and validation batch), so the study's work folder is not needed; a built variant is cached in
``<work_dir>/<study>/variants`` like the workers' own.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna

from tuner.config import StudyConfig, parse_config
from tuner.errors import ConfigError, StudyNotFoundError
from tuner.measure import EngineSettings, request_samples, shared_memory_args, write_input_json
from tuner.model import (
    RepositoryModel,
    StudyModel,
    build_variant,
    install_model_file,
    open_model,
    validation_inputs,
)
from tuner.reports import _report as report
from tuner.reports._explain import Explanation, explain_trial
from tuner.storage import (
    Store,
    StoredStudy,
    StoredTrial,
    StudyInfo,
    TrialRecord,
    no_trial,
    read_info,
    read_study,
    redact_url,
)
from tuner.study import ConfigResult, Recommendation, by_number, config_results, recommend
from tuner.trial import LoadPoint, TrialSpec
from tuner.triton import RUNNER_BACKEND, RUNNER_SOURCE, parse_pbtxt
from tuner.workers import engine_settings, real_samples

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exported:
    """What ``export_trial`` wrote.

    Attributes:
        repository: The model repository folder.
        model_dir: Its model's folder.
        trial: The trial exported.
        point: The measured point the export stands for.
        files: Every file written.
        command: The perf_analyzer command line that measures it again, as the README gives it.
        config: The trial's config over every load of it, where the trial is one of them.
        samples: The study's load samples as perf_analyzer's JSON, which the command sends; None where the
            study sent generated data.
    """

    repository: Path
    model_dir: Path
    trial: int
    point: LoadPoint
    files: tuple[Path, ...]
    command: str
    config: ConfigResult | None = None
    samples: Path | None = None


def study_config(study: optuna.Study | StudyInfo) -> StudyConfig:
    """The study file the study last ran with, validated again.

    Raises:
        ConfigError: the study stored no study file, or it no longer validates (e.g. the model moved).
    """
    info = study if isinstance(study, StudyInfo) else read_info(study)
    if not info.study_file:
        raise ConfigError(f"study {info.name!r} stored no study file: it was not run by `tuner optimize`")
    # The stored URL has its password masked; nothing here opens it.
    return parse_config(info.study_file, Path.cwd(), source=f"the study file stored in study {info.name!r}")


@dataclass(frozen=True)
class Choice:
    """The trial to export and what it stands for.

    Attributes:
        trial: The trial (its record read).
        point: The measured point the export stands for.
        config: Its config's result over every load, where the trial is a load of one.
        recommendation: The recommendation, where the trial is its representative.
    """

    trial: StoredTrial
    point: LoadPoint
    config: ConfigResult | None = None
    recommendation: Recommendation | None = None


def choose(stored: StoredStudy, number: int | None = None, max_p99_ms: float | None = None) -> Choice:
    """The trial to export and the point it is exported for.

    ``number``: that trial, at the point it was judged by. ``max_p99_ms``: the config and concurrency
    with the highest median throughput over its loads whose median p99 is within the limit
    (``report.Curves``), at that median point. Neither: the recommended config's
    representative load (tuner.study.recommend), at the point it was judged by.

    Raises:
        StudyNotFoundError: no such trial, no trial within the limit, or no feasible config.
    """
    results = config_results(stored.trials, stored.info)
    configs = by_number(results)
    rec = None
    if number is not None:
        trial = stored.trial(number)
        if trial is None:
            raise StudyNotFoundError(no_trial(stored.name, number, len(stored.trials)))
        if not trial.complete:
            raise StudyNotFoundError(f"trial {number} is {trial.state.name}: only a measured config can be exported")
    elif max_p99_ms is not None:
        found = report.Curves(results, stored.info.bounds).best(max_p99_ms=max_p99_ms)
        if found is None:
            raise StudyNotFoundError(
                f"no config of study {stored.name!r} has p99 <= {max_p99_ms:g} ms at any concurrency "
                "by the median of its loads"
            )
        return Choice(found.trial, found.point, found.config)
    else:
        rec = recommend(results, stored.info)
        if rec is None:
            raise StudyNotFoundError(f"study {stored.name!r} has no feasible config to recommend; name a trial")
        trial = rec.config.representative
    if trial.record is None:
        raise StudyNotFoundError(f"trial {trial.number} has no stored config")
    judged = trial.point
    at_judged = next((p for p in trial.record.points if judged and p.concurrency == judged.concurrency), None)
    return Choice(trial, at_judged or trial.record.points[0], configs.get(trial.number), rec)


def export_trial(
    study: optuna.Study,
    store: Store,
    out_dir: Path,
    number: int | None = None,
    max_p99_ms: float | None = None,
) -> Exported:
    """Writes the chosen trial's config as a model repository in ``out_dir`` (see the module doc).

    Raises:
        ConfigError: the study file no longer validates, the model's files changed since the study measured
            them, or ``out_dir`` already holds the model.
        StudyNotFoundError: no trial to export (see ``choose``).
        ModelError: the model cannot be read again, or the variant cannot be built.
    """
    stored = read_study(study, store)
    cfg = study_config(stored.info)
    choice = choose(stored, number, max_p99_ms)
    trial, record = choice.trial, choice.trial.record
    assert record is not None  # choose refuses a trial without its rows
    spec = TrialSpec.from_json(record.spec)
    config = parse_pbtxt(record.config_pbtxt)
    model_dir = out_dir / config.name
    if model_dir.exists():
        raise ConfigError(f"{model_dir} already exists: export into a folder without it, or remove it first")
    model = open_model(cfg.model)
    stored.info.check_model(
        model.digest(),
        "an export would serve them under measurements of other files; put the files back as they were, "
        "or run a study on them",
    )
    if model.repository is not None and model.repository.steps:
        files = _write_pipeline(model.repository, out_dir, record)
    else:
        folder = model.repository.folder if model.repository is not None else None
        files = _write_model(folder, model_dir, record.config_pbtxt)
    if model.onnx_file is not None:
        version = model_dir / (model.repository.version if model.repository else "1")
        variant = version / (model.onnx_file.name if model.repository else "model.onnx")
        _copy_variant(cfg, model, spec.precision, variant)
        variant.chmod(0o644)  # the server may run as another user (NVIDIA's image does)
        files += [variant] if variant not in files else []
        if config.backend == RUNNER_BACKEND:
            shutil.copy2(RUNNER_SOURCE, version / "model.py")
            files.append(version / "model.py")
    settings = engine_settings(cfg, model.info)
    samples_file = None
    if samples := real_samples(cfg, model.info):  # the study's own samples, as perf_analyzer's JSON: the command's
        samples_file = write_input_json(
            out_dir / SAMPLES_FILE, request_samples(model.info, settings.input_data, samples)
        )
        files.append(samples_file)
    readme = out_dir / "README.md"
    explanations = explain_trial(trial, stored.info.bounds, stored.info.has_variants)
    command = perf_analyzer_command(cfg, settings, model_dir.name, choice.point.concurrency)
    readme.write_text(readme_text(cfg, stored.name, choice, explanations, command))
    files.append(readme)
    logger.info("exported trial %d of %s to %s", trial.number, stored.name, out_dir)
    return Exported(out_dir, model_dir, trial.number, choice.point, tuple(files), command, choice.config, samples_file)


def _write_model(folder: Path | None, model_dir: Path, config_pbtxt: str) -> list[Path]:
    """Lays out a model's folder with the trial's config: a repository model's own files (``folder``) as
    they are, or an empty version folder for an ONNX file. Returns the files written, the config first."""
    if folder is None:
        (model_dir / "1").mkdir(parents=True)
    else:
        shutil.copytree(folder, model_dir)
    config = model_dir / "config.pbtxt"
    config.write_text(config_pbtxt)
    return [config, *sorted(p for p in model_dir.rglob("*") if p.is_file() and p != config)]


def _write_pipeline(pipeline: RepositoryModel, out_dir: Path, record: TrialRecord) -> list[Path]:
    """Lays out an ensemble's folder (or a BLS model's) and each composing model's, each with the config
    the trial ran (and the runner beside an ONNX file where its config runs it). Returns the files
    written, the pipeline's own config first.

    Raises:
        ConfigError: ``out_dir`` already holds one of the models.
        StudyNotFoundError: the trial stored no config of a composing model.
    """
    missing = [step.name for step in pipeline.steps if step.name not in record.step_configs]
    if missing:
        raise StudyNotFoundError(f"the trial stored no config of {', '.join(missing)}: it cannot be exported")
    taken = [out_dir / step.name for step in pipeline.steps if (out_dir / step.name).exists()]
    if taken:
        raise ConfigError(f"{taken[0]} already exists: export into a folder without it, or remove it first")
    model_dir = out_dir / pipeline.name
    files = _write_model(pipeline.folder, model_dir, record.config_pbtxt)
    (model_dir / pipeline.version).mkdir(exist_ok=True)  # Triton wants a version folder, even an empty one
    for step in pipeline.steps:
        config = record.step_configs[step.name]
        files += _write_model(step.folder, out_dir / step.name, config)
        if _runs_runner(config):
            runner = out_dir / step.name / step.version / "model.py"
            shutil.copy2(RUNNER_SOURCE, runner)
            files += [runner] if runner not in files else []
    for path in files:
        path.chmod(path.stat().st_mode | 0o644)  # the server may run as another user (NVIDIA's image does)
    return files


def _copy_variant(cfg: StudyConfig, model: StudyModel, precision: str, target: Path) -> None:
    """Builds (or takes from the cache) the variant of ``precision`` and copies it to ``target``."""
    assert model.onnx_file is not None  # only ONNX models have variants
    calibration = None
    if precision == "int8":  # static INT8 is calibrated on the study's validation batch: the same one
        info = model.info
        calibration = validation_inputs(cfg.model.name, info, cfg.model.validation_data, cfg.model.validation_samples)
    cache = cfg.work_dir / cfg.study / "variants"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        install_model_file(build_variant(model.onnx_file, precision, cache, calibration), target)
    except PermissionError:
        with tempfile.TemporaryDirectory() as tmp:
            install_model_file(build_variant(model.onnx_file, precision, Path(tmp), calibration), target)


#: The study's load samples in an export, as perf_analyzer's ``--input-data`` JSON.
SAMPLES_FILE = "samples.json"


def perf_analyzer_command(cfg: StudyConfig, settings: EngineSettings, model: str, concurrency: int) -> str:
    """The perf_analyzer command line that measures ``model`` as the study did, on a local server;
    ``settings``: the study's workers' (``tuner.workers.engine_settings``)."""
    port = 8001 if settings.protocol == "grpc" else 8000
    # real samples: perf_analyzer takes them as its JSON (see tuner.measure), which the export writes beside it
    data = SAMPLES_FILE if isinstance(cfg.load.input_data, Path) else settings.input_data
    memory_args = "".join(f"{arg} " for arg in shared_memory_args(settings.shared_memory, settings.output_bytes))
    return (
        f"perf_analyzer -m {model} -u 127.0.0.1:{port} -i {settings.protocol} "
        f"--concurrency-range {concurrency}:{concurrency} --input-data {data} "
        f"--measurement-interval {settings.window_ms} --stability-percentage {settings.stability_percentage:g} "
        f"--max-trials {settings.max_windows} {memory_args}--verbose-csv -f perf.csv"
    )


def readme_text(
    cfg: StudyConfig,
    study_name: str,
    choice: Choice,
    explanations: list[Explanation],
    command: str,
) -> str:
    """The README of an exported repository: what was measured, and how to measure it again
    (``command``: ``perf_analyzer_command``'s)."""
    name = cfg.model.name
    trial, point = choice.trial, choice.point
    record = trial.record
    assert record is not None
    spec = json.dumps(record.spec, sort_keys=True)
    rows = "\n".join(
        f"| {p.concurrency} | {p.throughput:.4g} | {p.latency_p50_ms:.3g} | {p.latency_p99_ms:.3g} | "
        f"{p.server_queue_ms:.3g} | {p.server_compute_infer_ms:.3g} | {'yes' if p.stable else 'no'} |"
        for p in trial.curve
    )
    readings = "\n".join(f"- {e.text}" for e in explanations) or "- (none)"
    accuracy = trial.accuracy or {}
    accuracy_line = (
        f"Accuracy against the FP32 model on {accuracy.get('samples')} validation samples: "
        f"drop {accuracy.get('accuracy_drop', 0):.4g}.\n"
        if accuracy
        else ""
    )
    runner = (
        "The config runs the ONNX file through Triton's python backend (`1/model.py`, ONNX Runtime): the server's "
        "python environment needs `numpy` and `onnxruntime` (the `onnxruntime-openvino` build for OpenVINO).\n"
        if any(_runs_runner(c) for c in (record.config_pbtxt, *record.step_configs.values()))
        else ""
    )
    if record.step_configs:
        runner += (
            f"`{name}` runs {', '.join(record.step_configs)}, each with the config the trial ran: the server loads "
            "an ensemble's composing models with it; load the models a BLS model calls first (`--load-model` for "
            "each).\n"
        )
    return f"""# {name}: trial {trial.number} of study {study_name}

Exported by `tuner export` from the study stored in `{redact_url(cfg.storage)}`.

Config: `{spec}`

{_verdict_text(choice)}Measured at concurrency {point.concurrency} (the point this export stands for): **{point.throughput:.4g} infer/s**,
p50 {point.latency_p50_ms:.3g} ms, p90 {point.latency_p90_ms:.3g} ms, p95 {point.latency_p95_ms:.3g} ms,
p99 {point.latency_p99_ms:.3g} ms; per request: queue {point.server_queue_ms:.3g} ms, compute input
{point.server_compute_input_ms:.3g} ms, infer {point.server_compute_infer_ms:.3g} ms, output
{point.server_compute_output_ms:.3g} ms.
{accuracy_line}
Every concurrency measured:

| concurrency | infer/s | p50 ms | p99 ms | queue ms | infer ms | stable |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

What the numbers say:

{readings}

## Serve it

On the machine that ran the study, the embedded Triton server it measured with serves this folder (until Ctrl-C):

```bash
tuner serve .
```

Elsewhere, a Triton server with the python backend (NVIDIA's `tritonserver` container, say) serves it from this
folder. {runner}
```bash
tritonserver --model-repository="$PWD" --model-control-mode=explicit --load-model={name}
```

## Measure it again

With the server above running, this is the measurement the tuner made (its settings from the study file),
run in this folder:

```bash
{command}
```

On the machine that ran the study, `tuner verify {study_name} --trial {trial.number}` serves this trial on a fresh
server of the study's launch mode and measures it again with the tuner's own server and perf_analyzer.
"""


def _runs_runner(config_pbtxt: str) -> bool:
    """True where the config runs an ONNX file through the tuner's python-backend runner (not a python model)."""
    config = parse_pbtxt(config_pbtxt)
    return config.backend == RUNNER_BACKEND and "onnx_file" in config.parameters


def _verdict_text(choice: Choice) -> str:
    """Why this trial: the recommendation's reason and its config's loads, where it stands for one."""
    lines = []
    if choice.recommendation is not None:
        lines.append(f"Recommended: {choice.recommendation.reason}.")
    config = choice.config
    if config is not None and len(config.loads) > 1:
        low, high = config.interval
        numbers = ", ".join(str(t.number) for t in config.loads)
        nearest = config.representative.number
        which = "this one" if nearest == choice.trial.number else f"trial {nearest}"
        lines.append(
            f"The config was measured {len(config.loads)} times (trials {numbers}): median "
            f"{config.values[0]:.4g} of the first objective, interval {low:.4g}-{high:.4g}; the load nearest "
            f"the median is {which}."
        )
    return "\n".join(lines) + "\n\n" if lines else ""
