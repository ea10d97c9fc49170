"""Plain-language readings of a trial's numbers: where its time went and what to try next.

    stored = read_study(study, store)
    for line in explain_trial(stored.trial(3), stored.info.bounds):
        print(line.rule, line.text)

Each rule reads the point a trial was judged by (its ``metrics``), the server's window at that
concurrency (batch sizes formed), the config measured and the study's constraints:

    failed            the trial failed: Triton's (or the measurement's) reason
    constraint        a constraint failed: which one, and by how much
    bottleneck        a pipeline's step where its requests spend the most time, and each step's queue and compute
    queue             queue time dominates: more instances, or batching that empties the queue faster
    compute           compute dominates: a faster accelerator or a lower precision
    overhead          most of the latency is outside the server (client, protocol, network)
    batch_of_one      dynamic batching is on but batches stay at 1: the queue delay is too short for the load
    batches           the batches the server formed
    saturated         more concurrency only queued: throughput flat while p99 grew
    inconsistent      throughput and latency disagree (concurrency / mean latency): the window was disturbed
    loadgen_saturated the load generator used its cores up: the throughput is a floor, not the server's limit
    loadgen_share     the load generator took a good share of the CPU on the server's own machine
    contaminated      other processes used the CPU during the window
    unstable          perf_analyzer's windows never agreed
    accuracy          the variant's answers moved from the FP32 model's
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from tuner.storage import StoredTrial, point_of, read_info
from tuner.trial import LoadPoint

__all__ = [
    "Explanation",
    "bounds_of",
    "consistent",
    "expected_throughput",
    "explain",
    "explain_trial",
    "point_of",
    "step_compute_ms",
]

#: A part of the latency "dominates" when it is at least this share of the client's mean latency.
DOMINANT_SHARE = 0.5
#: Mean batch at or below this counts as "batches stay at 1".
SINGLE_BATCH = 1.1
#: Measured throughput this far off concurrency / mean latency (Little's law) is not to be trusted.
CONSISTENT_RATIO = (0.5, 1.5)
#: Other processes' CPU (percent of one core) that makes a window suspect, where the monitor did not flag it.
OTHER_CPU_PCT = 25.0
#: The load generator's share of the CPU it and the server used, on one machine, worth a word: from a
#: tenth on, a config is rated that much below what a client elsewhere would see of it.
LOADGEN_SHARE = 0.1

_NAMES = {
    "latency_p99_ms": "p99 latency",
    "latency_p95_ms": "p95 latency",
    "latency_p90_ms": "p90 latency",
    "latency_p50_ms": "p50 latency",
    "latency_avg_ms": "mean latency",
    "throughput": "throughput",
    "accuracy_drop": "accuracy drop",
    "server_queue_ms": "queue time",
    "server_cpu_pct": "server CPU",
    "gpu_memory_mb": "GPU memory",
}
_UNITS = {"throughput": " infer/s", "gpu_memory_mb": " MB"}


@dataclass(frozen=True)
class Explanation:
    """One reading of a trial's numbers.

    Attributes:
        rule: Which rule fired (see the module doc).
        text: What it says, in a sentence or two.
    """

    rule: str
    text: str


def bounds_of(study: optuna.Study) -> dict[str, dict[str, float | None]]:
    """The study's constraints as its study file gave them: ``{metric: {"min": .., "max": ..}}``."""
    return read_info(study).bounds


def explain_trial(
    trial: StoredTrial, bounds: Mapping[str, Mapping[str, float | None]] | None = None, variants: bool = True
) -> list[Explanation]:
    """The readings of one stored trial (see the module doc); ``bounds``: the study's constraints;
    ``variants``: whether the model has precision and accelerator knobs (``StudyInfo.has_variants``)."""
    if trial.state == TrialState.FAIL:
        return [_failed(str(trial.fail_reason or "no reason"))]
    if trial.state == TrialState.PRUNED:
        return [_pruned(str(trial.pruned_reason or "no reason"))]
    point = trial.point
    if point is None:  # not COMPLETE, or a trial the tuner did not measure (another tool wrote the study)
        return []
    return explain(
        point,
        spec=trial.spec,
        servers=trial.server,
        curve=trial.curve,
        metrics=trial.metrics,
        constraints=trial.constraints,
        bounds=bounds or {},
        variants=variants,
    )


def explain(
    point: LoadPoint,
    *,
    spec: Mapping[str, Any],
    servers: Mapping[str, Mapping[str, Any]] | None = None,
    curve: Sequence[LoadPoint] = (),
    metrics: Mapping[str, float] | None = None,
    constraints: Mapping[str, float] | None = None,
    bounds: Mapping[str, Mapping[str, float | None]] | None = None,
    variants: bool = True,
) -> list[Explanation]:
    """The readings of one measured point.

    Args:
        point: The point the trial was judged by.
        spec: The config measured (TrialSpec fields; trial params where the spec is not stored).
        servers: The server's window at each concurrency measured (``ServerWindow.as_dict()`` by
            concurrency as text, as the ``server`` trial attribute holds them).
        curve: Every point the trial measured.
        metrics: The trial's metrics (the point's, plus ``accuracy_drop``).
        constraints: Optuna's constraint values by metric (> 0: violated by that much).
        bounds: The study's constraint bounds by metric.
        variants: Whether the model has precision and accelerator knobs (an ONNX model's): where it
            has not, a compute-bound reading suggests none.
    """
    metrics = metrics or point.metrics()
    found = _constraint_failures(metrics, constraints or {}, bounds or {})
    if spec.get("steps"):  # a pipeline: each step has knobs of its own, so the readings are per step
        found += _bottleneck(point, spec, servers or {})
    else:
        found += _where_time_goes(point, spec, variants)
        found += _batching(point, spec, servers or {})
    found += _trust(point, curve)
    drop = float(metrics.get("accuracy_drop") or 0.0)
    if drop > 0:
        found.append(
            Explanation(
                "accuracy",
                f"Its answers differ from the FP32 model's on the validation batch: accuracy drop {drop:.3g} "
                f"({spec.get('precision', 'fp32')}).",
            )
        )
    return found


def _failed(reason: str) -> Explanation:
    hint = ""
    if "refused" in reason or "failed to load" in reason:
        hint = " Triton could not load this config; the search learns to avoid it."
    elif "variant" in reason:
        hint = (
            " This model has no such variant: the search tries no other config of that precision; leave it out"
            " of the search space."
        )
    elif "died" in reason:
        hint = " The server crashed under this config and was restarted."
    return Explanation("failed", f"Failed: {reason.strip()}{hint}")


def _pruned(reason: str) -> Explanation:
    return Explanation(
        "pruned",
        f"Stopped after its screening measurement: {reason.strip()}. Not measured further; "
        "the search counts it as measured and learns to avoid it.",
    )


def _constraint_failures(
    metrics: Mapping[str, float], constraints: Mapping[str, float], bounds: Mapping[str, Mapping[str, float | None]]
) -> list[Explanation]:
    found = []
    for metric, excess in constraints.items():
        if excess <= 0:
            continue
        name, unit = _NAMES.get(metric, metric), _UNITS.get(metric, " ms" if metric.endswith("_ms") else "")
        value = metrics.get(metric)
        bound = bounds.get(metric) or {}
        high, low = bound.get("max"), bound.get("min")
        if value is not None and high is not None and value > high:
            relative = f" ({excess / high:.0%})" if high else ""
            text = f"{name} {value:.4g}{unit} is over its limit of {high:.4g}{unit} by {excess:.3g}{unit}{relative}."
        elif value is not None and low is not None and value < low:
            relative = f" ({excess / low:.0%})" if low else ""
            text = f"{name} {value:.4g}{unit} is under its minimum of {low:.4g}{unit} by {excess:.3g}{unit}{relative}."
        else:
            text = f"{name} misses its bound by {excess:.3g}{unit}."
        found.append(Explanation("constraint", "Infeasible: " + text))
    return found


def _where_time_goes(point: LoadPoint, spec: Mapping[str, Any], variants: bool = True) -> list[Explanation]:
    latency = point.latency_avg_ms
    if latency <= 0:
        return []
    queue = point.server_queue_ms
    compute = point.server_compute_input_ms + point.server_compute_infer_ms + point.server_compute_output_ms
    outside = max(0.0, latency - queue - compute)
    instances = spec.get("instance_count", 1)
    if queue >= DOMINANT_SHARE * latency and queue >= compute:
        if not spec.get("dynamic_batching"):
            batching = "dynamic batching, so each execution takes several waiting requests"
        elif int(spec.get("max_batch_size", 1)) <= 1:
            batching = "a max batch size above 1, so the batcher can combine the waiting requests"
        else:
            batching = f"a longer batching window (queue delay now {spec.get('max_queue_delay_us', 0)} us)"
        return [
            Explanation(
                "queue",
                f"Queue time dominates: requests wait {queue:.3g} ms of their {latency:.3g} ms ({queue / latency:.0%}) "
                f"for a free instance at concurrency {point.concurrency}. More instances (now {instances}), or "
                f"{batching}, empty the queue faster.",
            )
        ]
    if compute >= DOMINANT_SHARE * latency:
        remedy = (
            f"A faster accelerator or a lower precision (now {spec.get('accelerator', 'none')}, "
            f"{spec.get('precision', 'fp32')}) shortens it"
            if variants
            else "The model's own code is where to shorten it (its backend has no accelerator or precision knobs)"
        )
        return [
            Explanation(
                "compute",
                f"Compute dominates: the model runs {compute:.3g} ms of each request's {latency:.3g} ms "
                f"({compute / latency:.0%}; queue {queue:.3g} ms). {remedy}; "
                "more instances only help while cores are idle.",
            )
        ]
    if outside >= DOMINANT_SHARE * latency:
        return [
            Explanation(
                "overhead",
                f"Most of the latency is outside the server: {outside:.3g} ms of {latency:.3g} ms ({outside / latency:.0%}) "
                f"goes to the client, the protocol and the network (send {point.client_send_ms:.3g} ms, receive "
                f"{point.client_recv_ms:.3g} ms); the server's queue and compute take {queue + compute:.3g} ms. "
                "The model is cheap at this load: batching more work per request helps more than server knobs.",
            )
        ]
    return []


def _bottleneck(
    point: LoadPoint, spec: Mapping[str, Any], servers: Mapping[str, Mapping[str, Any]]
) -> list[Explanation]:
    """The pipeline's step whose requests spend the most time in the server, and what would shorten it."""
    steps: Mapping[str, Mapping[str, Any]] = (servers.get(str(point.concurrency)) or {}).get("steps") or {}
    spent = {name: float(w["queue_ms"]) + step_compute_ms(w) for name, w in steps.items() if w.get("requests")}
    total = sum(spent.values())
    if total <= 0:
        return []
    slowest = max(spent, key=lambda name: spent[name])
    window, knobs = steps[slowest], dict(spec.get("steps") or []).get(slowest, {})
    queue, compute = float(window["queue_ms"]), step_compute_ms(window)
    if queue >= compute:
        remedy = (
            f"Its requests wait for a free instance: more {slowest} instances (now {knobs.get('instance_count', 1)})"
            + ("" if knobs.get("dynamic_batching") else ", or dynamic batching for it,")
            + " empty its queue faster while cores are idle."
        )
    else:
        accelerator = knobs.get("accelerator", "none")
        remedy = (
            f"Its compute is the cost: a faster accelerator for it (now {accelerator}) or its own code shortens it; "
            "more instances only help while cores are idle."
        )
    each = "; ".join(
        f"{name} {float(w['queue_ms']):.3g} ms queued + {step_compute_ms(w):.3g} ms compute "
        f"(mean batch {float(w.get('mean_batch') or 0):.2f})"
        for name, w in steps.items()
    )
    return [
        Explanation(
            "bottleneck",
            f"{slowest} holds the pipeline back: its requests spend {spent[slowest]:.3g} ms in it "
            f"({queue:.3g} ms queued, {compute:.3g} ms compute), {spent[slowest] / total:.0%} of their {total:.3g} ms "
            f"in the steps at concurrency {point.concurrency}. {remedy} Per step: {each}.",
        )
    ]


def step_compute_ms(window: Mapping[str, Any]) -> float:
    """A server window's compute per request: input, infer and output."""
    return sum(float(window.get(f"compute_{part}_ms") or 0.0) for part in ("input", "infer", "output"))


def _batching(point: LoadPoint, spec: Mapping[str, Any], servers: Mapping[str, Mapping[str, Any]]) -> list[Explanation]:
    """Batches formed at the judged point, or batches that stayed at 1 under load (there or at another concurrency)."""
    max_batch = int(spec.get("max_batch_size", 1))
    judged = servers.get(str(point.concurrency))
    if spec.get("dynamic_batching") and max_batch > 1:
        # The judged point first, then the others by concurrency.
        ordered = sorted(servers.items(), key=lambda item: (int(item[0]) != point.concurrency, int(item[0])))
        for concurrency, window in ordered:
            if (
                int(concurrency) > 1
                and window.get("executions")
                and float(window.get("mean_batch") or 0) <= SINGLE_BATCH
            ):
                return [_single_batches(window, int(concurrency), max_batch, int(spec.get("max_queue_delay_us", 0)))]
    if judged and judged.get("executions") and float(judged.get("mean_batch") or 0) > SINGLE_BATCH:
        return [
            Explanation(
                "batches",
                f"The server formed batches: {judged['requests']} requests ran in {judged['executions']} executions "
                f"(mean batch {float(judged['mean_batch']):.2f} of at most {max_batch}) at concurrency {point.concurrency}.",
            )
        ]
    return []


def _single_batches(window: Mapping[str, Any], concurrency: int, max_batch: int, delay_us: int) -> Explanation:
    alone = int((window.get("batch_sizes") or {}).get("1", 0))
    return Explanation(
        "batch_of_one",
        f"Batches stay at 1: dynamic batching is on (max batch {max_batch}), yet at concurrency {concurrency} "
        f"{alone} of {window['executions']} executions ran a single request (mean batch "
        f"{float(window['mean_batch']):.2f}). The queue delay of {delay_us} us is too short for this load to "
        "gather requests; a longer delay lets batches form, or turn batching off and save the delay.",
    )


def expected_throughput(point: LoadPoint) -> float:
    """What ``concurrency`` requests always in flight at the mean latency serve per second (Little's law)."""
    return point.concurrency * 1000.0 / point.latency_avg_ms if point.latency_avg_ms > 0 else 0.0


def consistent(point: LoadPoint) -> bool:
    """Whether the point's throughput agrees with its concurrency and mean latency."""
    expected = expected_throughput(point)
    if expected <= 0 or point.throughput <= 0:
        return False
    low, high = CONSISTENT_RATIO
    return low <= point.throughput / expected <= high


def _saturation(curve: Sequence[LoadPoint]) -> list[Explanation]:
    # a screened step of the concurrency search is read too: the rule's margins are wider than its noise
    points = sorted((p for p in curve if (p.stable or p.screened) and consistent(p)), key=lambda p: p.concurrency)
    for low, high in itertools.pairwise(points):
        gain = high.throughput / low.throughput - 1
        growth = high.latency_p99_ms / low.latency_p99_ms - 1
        if gain < 0.1 and growth > 0.5:
            return [
                Explanation(
                    "saturated",
                    f"Saturated from concurrency {low.concurrency}: at {high.concurrency} throughput changed only "
                    f"{gain:+.0%} ({low.throughput:.4g} -> {high.throughput:.4g} infer/s) while p99 grew {growth:+.0%} "
                    f"({low.latency_p99_ms:.3g} -> {high.latency_p99_ms:.3g} ms); more load only queues.",
                )
            ]
    return []


def _trust(point: LoadPoint, curve: Sequence[LoadPoint]) -> list[Explanation]:
    found = _saturation(curve)
    off = [p for p in (curve or [point]) if p.latency_avg_ms > 0 and not consistent(p)]
    if off:
        found.append(
            Explanation(
                "inconsistent",
                "Throughput and latency disagree at "
                + "; ".join(
                    f"concurrency {p.concurrency} ({p.throughput:.4g} infer/s measured, "
                    f"{expected_throughput(p):.4g} expected from a {p.latency_avg_ms:.3g} ms mean latency)"
                    for p in off
                )
                + ": the load generator stalled or the window was disturbed; do not trust those points.",
            )
        )
    if point.loadgen_saturated:
        found.append(
            Explanation(
                "loadgen_saturated",
                f"The load generator used its cores up ({point.loadgen_cpu_pct:.0f}% CPU): {point.throughput:.4g} "
                "infer/s is a floor, not the server's limit. Give perf_analyzer more cores or another machine.",
            )
        )
    elif point.server_cpu_pct > 0 and point.loadgen_cpu_pct >= LOADGEN_SHARE * (
        point.server_cpu_pct + point.loadgen_cpu_pct
    ):  # the server's CPU is seen: the load generator ran on its machine
        share = point.loadgen_cpu_pct / (point.server_cpu_pct + point.loadgen_cpu_pct)
        found.append(
            Explanation(
                "loadgen_share",
                f"The load generator ran beside the server and took {share:.0%} of the CPU the two used "
                f"({point.loadgen_cpu_pct:.0f}% against the server's {point.server_cpu_pct:.0f}%): where the "
                "cores are all busy, the throughput is up to that much below what a client on another machine would see. "
                "Tensors sent through shared memory (load.shared_memory: system) cost the load generator less.",
            )
        )
    if point.contaminated or point.other_cpu_pct >= OTHER_CPU_PCT:
        found.append(
            Explanation(
                "contaminated",
                f"Other processes used {point.other_cpu_pct:.0f}% CPU during the measurement: the numbers may be "
                "lower than this config can do. Measure it again on a quiet machine.",
            )
        )
    if not point.stable:
        # The windows kept are three more, taken as they came after the run that never agreed: theirs may not show it.
        spread = f", whose throughputs spread {point.throughput_spread_pct:.0f}%" if point.throughput_spread_pct else ""
        found.append(
            Explanation(
                "unstable",
                "perf_analyzer's windows never agreed within the stability percentage, on throughput or on latency "
                f"(it checks both); the numbers are of three more windows taken as they came{spread}. They are "
                "noisy: a longer measurement window or a quieter machine makes them trustworthy.",
            )
        )
    return found
