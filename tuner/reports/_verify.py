"""Whether a study's recommendation holds: its config exported, served fresh and measured again.

    verification = verify_study(study, store, repeats=3)           # or number=7
    verification.holds, verification.line()
    record(study, verification)                                     # appended to the study's verifications

What a user would do with a recommendation, done for them: ``tuner.reports._export.export_trial`` writes the
config as a deployable model repository in a temporary folder; a fresh server of the study's launch
mode (``tuner.triton.make_server``, its model-control API restricted by a secret of its own)
serves that repository; perf_analyzer measures it with the study's load settings (the command the
export's README gives: the recommended point's concurrency, the same input data), ``repeats`` times,
each time on a fresh load of the model.

The recommendation holds unless the median of the runs is worse than the config's interval
(``tuner.study``) and worse than its stored median by more than ``TOLERANCE_PCT``: the interval of
a config measured once is its windows' spread, narrower than what a reload varies by (3-5% here).
A config that does better than stored keeps its promise; the line says by how much. Nor does it
hold where the runs' median breaks a bound of the study's constraints that they measure (a
latency, the throughput): a config recommended within a p99 budget is deployed for that budget; or
where the config's loads broke in the study a bound the runs do not measure (a variant's accuracy
drop, which a fresh load of the same variant does not change): a config named with ``--trial`` may be
one the study judged infeasible.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import math
import platform
import statistics
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from tuner.config import StudyConfig
from tuner.errors import ConfigError, StudyNotFoundError
from tuner.measure import PerfAnalyzer, Probe, UsageMonitor, measure_trusted, warm_up
from tuner.model import open_model
from tuner.reports._export import Exported, export_trial, study_config
from tuner.storage import ATTR_VERIFICATIONS, Store, StoredTrial, StudyInfo, no_trial, read_study
from tuner.study import ConfigResult, by_number, config_results, recommend
from tuner.trial import LoadPoint
from tuner.triton import cpu_model, make_server, server_version, versions, worker_gpus
from tuner.workers import cpu_cores, engine_settings, real_samples

logger = logging.getLogger(__name__)

#: How far from the stored median a verified median may lie and still hold, in percent.
TOLERANCE_PCT = 10.0
#: The most runs one verification makes.
MAX_REPEATS = 100

#: Called with a step's description as each step starts: ``export``, ``server``, ``run 1/3``, ...
Progress = Callable[[str], None]


class NoFeasibleConfigError(StudyNotFoundError):
    """The study has no feasible config to recommend, so nothing to verify."""


@dataclass(frozen=True)
class VerifyRun:
    """One run of perf_analyzer on a fresh load of the config.

    Attributes:
        throughput: Inferences per second.
        latency_p99_ms: The client's p99 latency.
        value: The study's first objective, as measured by the run.
        stable: perf_analyzer's windows agreed.
        contaminated: Other processes used more than the study's ``load.contamination_cpu_pct`` of a core
            while it ran, again when it ran once more (``load.contamination_retries``).
    """

    throughput: float
    latency_p99_ms: float
    value: float
    stable: bool = True
    contaminated: bool = False


@dataclass(frozen=True)
class Verification:
    """A recommendation measured again, and whether it held.

    Attributes:
        when: When the verification finished (UTC, ISO 8601).
        trial: The trial whose config was exported (the config's representative load).
        config_key: The config's canonical text (``StoredTrial.config_key``).
        metric: The first objective, which the verdict is on.
        maximize: Whether the first objective is maximized.
        repeats: Runs asked for.
        concurrency: The concurrency measured at (the recommended point's).
        runs: Each run's figures.
        verified_median: The median of the runs' ``value``.
        throughput_median: The median of the runs' throughput.
        latency_p99_median_ms: The median of the runs' p99.
        stored_median: The config's stored median of the first objective.
        interval: The config's stored interval (low, high).
        holds: The verified median is no worse than the interval's worse end, or than ``tolerance_pct`` off the
            stored median, and ``bounds_missed`` is empty. Where it is not and a run shared the CPU with
            other processes, the verdict is ``inconclusive``: the machine, not the config, may be to blame.
        bounds_missed: The study's bounds that the runs' medians break, as ``latency_p99_ms 10.4 > max 10``.
        tolerance_pct: The tolerance the verdict used.
        launch: The server's launch mode.
        command: The perf_analyzer command a user would run (from the export's README).
        versions: The versions of Triton (as the server says), the tuner, Python and the packages that measured.
        machine: The machine measured on.
    """

    when: str
    trial: int
    config_key: str
    metric: str
    maximize: bool
    repeats: int
    concurrency: int
    runs: tuple[VerifyRun, ...]
    verified_median: float
    stored_median: float
    interval: tuple[float, float]
    holds: bool
    throughput_median: float = 0.0
    latency_p99_median_ms: float = 0.0
    tolerance_pct: float = TOLERANCE_PCT
    launch: str = "embedded"
    command: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    bounds_missed: tuple[str, ...] = ()

    @property
    def contaminated_runs(self) -> int:
        """Runs that shared the CPU with other processes (``VerifyRun.contaminated``)."""
        return sum(1 for r in self.runs if r.contaminated)

    @property
    def inconclusive(self) -> bool:
        """It did not hold, on runs some of which shared the CPU with other processes."""
        return not self.holds and self.contaminated_runs > 0

    @property
    def verdict(self) -> str:
        if self.holds:
            return "holds"
        return "inconclusive" if self.inconclusive else "does not hold"

    @property
    def off_pct(self) -> float | None:
        """How far the verified median lies from the stored one, in percent of the stored one."""
        return (
            100.0 * (self.verified_median - self.stored_median) / abs(self.stored_median)
            if self.stored_median
            else None
        )

    def line(self) -> str:
        """``holds: 84.1 infer/s verified (3 runs, 81.9-86.0) against 83.9 stored (interval 81.3-89.6)``."""
        values = [r.value for r in self.runs]
        unit = unit_of(self.metric)
        low, high = self.interval
        text = (
            f"{self.verdict}: {self.verified_median:.4g}{unit} verified ({len(values)} run{'s' if len(values) != 1 else ''}"
            f", {min(values):.4g}-{max(values):.4g}) against {self.stored_median:.4g} stored "
            f"(interval {low:.4g}-{high:.4g})"
        )
        off = self.off_pct
        if not low <= self.verified_median <= high and off is not None:
            text += f": {abs(off):.0f}% {'above' if off > 0 else 'below'} the stored median"
        if self.metric != "latency_p99_ms" and self.latency_p99_median_ms:
            text += f"; p99 {self.latency_p99_median_ms:.4g} ms"
        if self.bounds_missed:
            text += f"; over the study's bounds: {', '.join(self.bounds_missed)}"
        if self.contaminated_runs:
            text += f"; {self.contaminated_runs} of {len(self.runs)} runs shared the CPU with other processes" + (
                ": run it again on a quiet machine" if self.inconclusive else ""
            )
        return text

    def as_dict(self) -> dict[str, Any]:
        """The JSON form stored in the study's ``verifications`` attribute."""
        data = asdict(self)
        data["interval"] = list(self.interval)
        data["runs"] = [asdict(r) for r in self.runs]
        data["verdict"] = self.verdict
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verification:
        """The verification a stored dict holds (``as_dict``'s form).

        Raises:
            KeyError, TypeError, ValueError: the dict is not one ``as_dict`` wrote.
        """
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in names}
        values["runs"] = tuple(VerifyRun(**r) for r in data["runs"])
        values["bounds_missed"] = tuple(data.get("bounds_missed") or ())
        values["interval"] = (float(data["interval"][0]), float(data["interval"][1]))
        return cls(**values)


def unit_of(metric: str) -> str:
    """The unit a metric is printed with, with its leading space."""
    if metric == "throughput":
        return " infer/s"
    return " ms" if metric.endswith("_ms") else ""


def bounds_missed(cfg: StudyConfig, points: Sequence[LoadPoint], config: ConfigResult | None = None) -> tuple[str, ...]:
    """The study's bounds on what the runs measured (``points``: a latency, the throughput) that the runs'
    median breaks, each as ``latency_p99_ms 10.4 > max 10``; and, where ``config`` is given, its bounds on
    what the runs do not measure (a variant's accuracy drop: the same variant answers alike) that the
    config's loads broke in the study, each as ``accuracy_drop 0.125 > max 0.01 (+1150%) in the study``."""
    missed = []
    for metric, bound in cfg.constraints.items():
        if not points or not _measured_by_runs(metric):
            continue  # the accuracy, the server's CPU, the GPU's memory: not what perf_analyzer measures
        median = float(statistics.median(float(getattr(p, metric)) for p in points))
        if bound.max is not None and median > bound.max:
            missed.append(f"{metric} {median:.4g} > max {bound.max:g}")
        if bound.min is not None and median < bound.min:
            missed.append(f"{metric} {median:.4g} < min {bound.min:g}")
    if config is not None:
        bounds = {m: {"min": b.min, "max": b.max} for m, b in cfg.constraints.items() if not _measured_by_runs(m)}
        missed.extend(f"{miss.text()} in the study" for miss in config.failed_constraints(bounds))
    return tuple(missed)


def _measured_by_runs(metric: str) -> bool:
    return metric == "throughput" or metric.startswith("latency_")


def holds(
    verified: float,
    stored: float,
    interval: tuple[float, float],
    maximize: bool = True,
    tolerance_pct: float = TOLERANCE_PCT,
) -> bool:
    """Whether a verified median keeps a stored one's promise (see the module doc): better always does."""
    low, high = interval
    slack = abs(stored) * tolerance_pct / 100.0
    if maximize:
        return verified >= min(low, stored - slack)
    return verified <= max(high, stored + slack)


@dataclass(frozen=True)
class Target:
    """What to verify: a config, and the load of it to export."""

    config: ConfigResult
    trial: StoredTrial


def choose_target(trials: Sequence[StoredTrial], info: StudyInfo, number: int | None = None) -> Target:
    """The recommended config (``tuner.study.recommend``), or trial ``number``'s config.

    Raises:
        StudyNotFoundError: no trial ``number``, or it measured nothing.
        NoFeasibleConfigError: no trial given and no config is feasible.
    """
    results = config_results(trials, info)
    if number is not None:
        trial = next((t for t in trials if t.number == number), None)
        if trial is None:
            raise StudyNotFoundError(no_trial(info.name, number, len(trials)))
        if trial.complete and trial.reused_from is not None:  # a copy of another trial's result: verify that load
            trial = next((t for t in trials if t.number == trial.reused_from), trial)
        config = by_number(results).get(trial.number)
        if config is None or not trial.is_load:
            raise StudyNotFoundError(f"trial {number} measured no config of its own ({trial.state.name}): name another")
        return Target(config, trial)
    recommendation = recommend(results, info)
    if recommendation is None:
        raise NoFeasibleConfigError(f"study {info.name!r} has no feasible config to verify")
    return Target(recommendation.config, recommendation.config.representative)


def verify_study(
    study: optuna.Study,
    store: Store,
    number: int | None = None,
    repeats: int = 3,
    progress: Progress | None = None,
    workdir: Path | None = None,
) -> Verification:
    """Exports the config (see ``choose_target``), serves it fresh and measures it ``repeats`` times.

    Args:
        study: The study.
        store: Its storage (the export reads the config from it).
        number: The trial whose config to verify; None: the recommendation.
        repeats: Runs of perf_analyzer, each on a fresh load.
        progress: Told each step as it starts.
        workdir: Where the export and the server live; a temporary folder, removed after, by default.

    Raises:
        ConfigError: ``repeats`` is below 1, the study file no longer validates, or its first
            objective is not a figure perf_analyzer measures.
        StudyNotFoundError: no such trial, or no feasible config (``NoFeasibleConfigError``).
        ServerStartError, ModelLoadError, MeasurementError: the server or perf_analyzer failed.
    """
    if not 1 <= repeats <= MAX_REPEATS:
        raise ConfigError(f"--repeats: between 1 and {MAX_REPEATS} runs, not {repeats}")
    stored = read_study(study, store)
    target = choose_target(stored.trials, stored.info, number)
    metric = stored.info.metric_names[0] if stored.info.metric_names else "throughput"
    if metric not in LoadPoint.__dataclass_fields__:
        raise ConfigError(f"objectives.0: {metric!r} is no figure perf_analyzer measures; it cannot be verified")
    step = progress or (lambda _: None)
    if workdir is not None:
        return _verify_in(study, store, target, metric, repeats, step, workdir)
    with tempfile.TemporaryDirectory(prefix="tuner-verify-") as tmp:
        return _verify_in(study, store, target, metric, repeats, step, Path(tmp))


def _verify_in(
    study: optuna.Study, store: Store, target: Target, metric: str, repeats: int, step: Progress, workdir: Path
) -> Verification:
    cfg = study_config(study)
    step("export")
    exported = export_trial(study, store, workdir / "repository", number=target.trial.number)
    concurrency = exported.point.concurrency
    points, triton = measure_exported(cfg, exported, concurrency, repeats, step, workdir)
    runs = tuple(
        VerifyRun(p.throughput, p.latency_p99_ms, float(getattr(p, metric)), p.stable, p.contaminated) for p in points
    )
    verified = float(statistics.median(r.value for r in runs))
    stored_median = target.config.values[0]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    missed = bounds_missed(cfg, points, target.config)
    return Verification(
        when=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        trial=target.trial.number,
        config_key=target.config.key,
        metric=metric,
        maximize=maximize,
        repeats=repeats,
        concurrency=concurrency,
        runs=runs,
        verified_median=verified,
        stored_median=stored_median,
        interval=target.config.interval,
        holds=holds(verified, stored_median, target.config.interval, maximize) and not missed,
        bounds_missed=missed,
        throughput_median=float(statistics.median(r.throughput for r in runs)),
        latency_p99_median_ms=float(statistics.median(r.latency_p99_ms for r in runs)),
        launch=cfg.server.launch,
        command=exported.command,
        versions=({"triton": triton} if triton else {}) | versions(),
        machine=machine(),
    )


def measure_exported(
    cfg: StudyConfig, exported: Exported, concurrency: int, repeats: int, step: Progress, workdir: Path
) -> tuple[list[LoadPoint], str | None]:
    """Serves ``exported`` on a fresh server of the study's launch mode and measures it ``repeats`` times.

    Returns the runs' points and the version the server reports (None where it does not say).

    Each run loads the model (after the models of its pipeline, where it has them), warms it up as
    the study's workers do, runs perf_analyzer at ``concurrency`` with the study's load settings and
    unloads the model (and its pipeline's) again.
    """
    name = exported.model_dir.name
    opened = open_model(cfg.model)
    model = opened.info
    # an ensemble's steps or the models a BLS model calls: each loaded afresh too, before the model
    steps = [step.name for step in opened.repository.steps] if opened.repository else []
    settings = engine_settings(cfg, model)
    step("server")
    server = make_server(cfg.server, workdir / "server", exported.repository, gpu=worker_gpus())
    runs = []
    with server:
        triton = server_version(server)
        url = server.grpc_url if settings.protocol == "grpc" else server.http_url
        samples = real_samples(cfg, model)
        # the samples the export wrote for its README's command: what a user measuring it again sends
        engine = PerfAnalyzer(url, workdir / "perf", settings, exported.samples, access=server.access)
        monitor = UsageMonitor(lambda: server.pid)
        probe = Probe(lambda: server.model_statistics(name), monitor)
        # where the server's processes cannot be seen (docker, remote) they would count as other processes'
        limit = cfg.load.contamination_cpu_pct if server.pid is not None else math.inf
        monitor.start()
        try:
            for i in range(repeats):
                step(f"run {i + 1}/{repeats}")
                for model_name in (*steps, name):
                    server.load(model_name)
                try:
                    warm_up(
                        server.http_url,
                        name,
                        model,
                        cfg.load.warmup_requests * concurrency,
                        concurrency,
                        server.access,
                        samples,
                        settings.input_data,
                    )
                    point = measure_trusted(
                        lambda: engine.measure(name, concurrency, probe),
                        limit,
                        cfg.load.contamination_retries,
                        f"{name} at concurrency {concurrency}",
                    ).point
                finally:
                    for model_name in (name, *steps):
                        server.unload(model_name)
                logger.info(
                    "run %d of %s: %.4g infer/s, p99 %.3g ms", i + 1, name, point.throughput, point.latency_p99_ms
                )
                runs.append(point)
        finally:
            monitor.stop()
    return runs, triton


def machine() -> dict[str, Any]:
    """The machine: its name, architecture, system and the cores this process may use."""
    return {
        "host": platform.node(),
        "arch": platform.machine(),
        "system": platform.platform(terse=True),
        "cpu_model": cpu_model(),
        "cores": cpu_cores(),
        "gpus": worker_gpus(),
    }


def record(study: optuna.Study, verification: Verification) -> None:
    """Appends the verification to the study's ``verifications`` attribute."""
    kept = study.user_attrs.get(ATTR_VERIFICATIONS)
    history = list(kept) if isinstance(kept, list) else []
    study.set_user_attr(ATTR_VERIFICATIONS, [*history, verification.as_dict()])


def stored_verifications(info: StudyInfo) -> list[Verification]:
    """The study's verifications that read back, oldest first (a malformed entry is skipped)."""
    found = []
    for data in info.verifications:
        try:
            found.append(Verification.from_dict(data))
        except (KeyError, TypeError, ValueError, IndexError):
            logger.warning("skipping a malformed verification of study %s", info.name)
    return found


def verifications_html(info: StudyInfo) -> str:
    """The study's verifications as an HTML fragment (a heading and a table), for the report.

    Empty where the study has none. Every value is escaped; the fragment has no style or script
    of its own (its classes: ``verifications``, ``holds``, ``fails``).
    """
    found = stored_verifications(info)
    if not found:
        return ""
    rows = "\n".join(_html_row(v) for v in found)
    return (
        '<section class="verifications">\n<h2>Verifications</h2>\n'
        "<p>The config exported and served on a fresh server, then measured again with perf_analyzer "
        f"(a fresh load each run). It holds unless the verified median is worse than the stored interval and "
        f"more than {TOLERANCE_PCT:g}% worse than the stored median, or the runs' medians break a bound of the "
        "study's on throughput or latency; where it did not hold on runs that shared the CPU with other "
        "processes, it is inconclusive (marked *).</p>\n"
        "<table>\n<thead><tr><th>when</th><th>trial</th><th>verdict</th><th>metric</th><th>verified median</th>"
        "<th>runs</th><th>stored median</th><th>interval</th><th>concurrency</th><th>launch</th><th>machine</th>"
        "</tr></thead>\n<tbody>\n"
        f"{rows}\n</tbody>\n</table>\n</section>"
    )


def _html_row(v: Verification) -> str:
    e = html.escape
    runs = ", ".join(f"{r.value:.4g}{'*' if r.contaminated else ''}" for r in v.runs)
    low, high = v.interval
    host = str(v.machine.get("host", ""))
    cells = (
        e(v.when),
        str(v.trial),
        f'<span class="{"holds" if v.holds else "fails"}">{e(v.verdict)}</span>'
        + "".join(f"<br>{e(missed)}" for missed in v.bounds_missed),
        e(v.metric),
        f"{v.verified_median:.4g}",
        e(runs),
        f"{v.stored_median:.4g}",
        f"{low:.4g}-{high:.4g}",
        str(v.concurrency),
        e(v.launch),
        e(host),
    )
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
